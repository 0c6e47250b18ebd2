"""A cache of ASV vectors for prediction.

In eval mode the nucleotide encoder maps one ASV's tokens to one vector, whatever else is in
the batch (padding invariance is tested), so a loaded model can keep the vectors of the ASVs
it has seen and run only the sample encoder for them. Labs predict new samples of the same
study or region, whose ASVs mostly recur; a warm request then skips most of the cost.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from aam_core.data.tokens import PAD

DEFAULT_CAPACITY = 65_536  # ASVs; at D = 128 in float64 (prediction's precision) that is 64 MiB


class AsvVectorCache:
    """LRU of nucleotide-encoder vectors keyed by an ASV's tokens; safe across threads."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._vectors: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._vectors)

    def vectors(
        self, tokens: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Vectors ``[U, D]`` of ``tokens [U, L]``: cached rows from the cache, the others
        from ``encode`` (called once, on the missing rows only) and then cached."""
        rows = tokens.cpu().numpy()
        # the key ignores trailing padding: L depends on the batch's longest ASV
        keys = [row[: int(np.count_nonzero(row != PAD))].astype(np.uint8).tobytes() for row in rows]
        found: dict[int, torch.Tensor] = {}
        with self._lock:
            for i, key in enumerate(keys):
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                    found[i] = vector
        missing = [i for i in range(len(keys)) if i not in found]
        if missing:
            index = torch.tensor(missing, device=tokens.device)
            computed = encode(tokens[index]).detach()  # [M, D]
            found.update(zip(missing, computed, strict=True))
        with self._lock:
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
            for i in missing:
                self._vectors[keys[i]] = found[i]
                self._vectors.move_to_end(keys[i])
            while len(self._vectors) > self.capacity:
                self._vectors.popitem(last=False)
        return torch.stack([found[i] for i in range(len(keys))])  # [U, D]
