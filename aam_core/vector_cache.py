"""A cache of ASV vectors for prediction.

In eval mode the nucleotide encoder maps one ASV's tokens to one vector, whatever else is in
the batch (padding invariance is tested; in float32 within prediction's tolerance), so a loaded
model can keep the vectors of the ASVs it has seen and run only the sample encoder for them.
Labs predict new samples of the same study or region, whose ASVs mostly recur; a warm request
then skips most of the cost.

The vectors live in one tensor (rows handed out least recently used first), so a batch's
vectors are gathered by one indexing operation, and an ASV's key is its token row as bytes,
read from the batch's token matrix in one step.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

DEFAULT_CAPACITY = 65_536  # ASVs; at D = 128 in float32 that is 32 MiB
_FIRST_ROWS = 4_096  # the store grows by doubling up to the capacity


class AsvVectorCache:
    """LRU of nucleotide-encoder vectors keyed by an ASV's tokens; safe across threads."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._rows: OrderedDict[bytes, int] = OrderedDict()  # key -> row of _store, LRU first
        self._store: torch.Tensor | None = None  # [rows, D]
        self._free: list[int] = []  # rows of _store that hold no key
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def vectors(
        self, tokens: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Vectors ``[U, D]`` of ``tokens [U, L]`` (distinct rows): cached rows from the cache,
        the others from ``encode`` (called once, on the missing rows only) and then cached."""
        # Padding is 0 and no nucleotide code is: numpy's fixed-width bytes drop trailing zeros,
        # so a key does not depend on L (the batch's longest ASV).
        rows = np.ascontiguousarray(tokens.cpu().numpy().astype(np.uint8))  # [U, L]
        keys: list[bytes] = rows.view(f"S{rows.shape[1]}").ravel().tolist()
        out: torch.Tensor | None = None
        with self._lock:
            where = [self._rows.get(key) for key in keys]
            found = [i for i, row in enumerate(where) if row is not None]
            missing = [i for i, row in enumerate(where) if row is None]
            self.hits += len(found)
            self.misses += len(missing)
            for i in found:
                self._rows.move_to_end(keys[i])
            if found:
                assert self._store is not None
                index = torch.tensor([where[i] for i in found], device=self._store.device)
                gathered = self._store.index_select(0, index)  # [F, D], copied under the lock
                out = gathered.new_empty(len(keys), gathered.shape[1])
                out[torch.tensor(found, device=out.device)] = gathered
        if missing:
            computed = encode(tokens[torch.tensor(missing, device=tokens.device)]).detach()
            if out is None:
                out = computed.new_empty(len(keys), computed.shape[1])
            out[torch.tensor(missing, device=out.device)] = computed
            with self._lock:
                self._insert([keys[i] for i in missing], computed)
        assert out is not None
        return out  # [U, D]

    def _insert(self, keys: list[bytes], vectors: torch.Tensor) -> None:
        """Store ``vectors [M, D]`` under ``keys`` (the lock held), evicting the least recently
        used when full. A key already stored (by another thread meanwhile, or twice in
        ``keys``: one sequence under two feature IDs) keeps one row."""
        fresh: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._rows:
                fresh[key] = i
        chosen = list(fresh.items())[-self.capacity :]  # more than the cache holds: the last
        if not chosen:
            return
        store = self._grow(len(self._rows) + len(chosen), vectors)
        rows = []
        for key, _ in chosen:
            row = self._free.pop() if self._free else self._rows.popitem(last=False)[1]
            self._rows[key] = row
            rows.append(row)
        source = torch.tensor([i for _, i in chosen], device=vectors.device)
        store.index_copy_(0, torch.tensor(rows, device=store.device), vectors[source])

    def _grow(self, wanted: int, like: torch.Tensor) -> torch.Tensor:
        """The store, with at least ``min(wanted, capacity)`` rows (new rows go to the free
        list)."""
        store = self._store
        size = 0 if store is None else store.shape[0]
        target = min(wanted, self.capacity)
        if store is not None and size >= target:
            return store
        new_size = max(size, min(_FIRST_ROWS, self.capacity))
        while new_size < target:
            new_size = min(2 * new_size, self.capacity)
        bigger = like.new_zeros(new_size, like.shape[1])
        if store is not None:
            bigger[:size] = store
        self._free.extend(range(new_size - 1, size - 1, -1))  # popped lowest row first
        self._store = bigger
        return bigger
