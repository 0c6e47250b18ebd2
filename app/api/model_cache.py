"""Loaded models kept in memory between prediction requests: an LRU cache bounded by a memory
budget (parameters and buffers), safe to use from the request thread pool. An entry is a
checkpoint at one precision: ``(checkpoint SHA-256, "fp32" | "fp64")``."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from aam_core.predict import Predictor

Key = tuple[str, str]  # (checkpoint SHA-256, precision)


class ModelCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._models: OrderedDict[Key, tuple[Predictor, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Key, threading.Lock] = {}
        self.loads = 0  # checkpoint loads so far (a warm request adds none)

    def get(self, key: Key, load: Callable[[], Predictor]) -> Predictor:
        """The model for ``key``, loading it at most once even when many requests ask at the
        same time."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key][0]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key][0]
            predictor = load()
            size = predictor.memory_bytes()
            with self._lock:
                self.loads += 1
                self._loading.pop(key, None)
                if size <= self.budget_bytes:  # a model bigger than the budget is served uncached
                    self._models[key] = (predictor, size)
                    while self.total_bytes > self.budget_bytes:
                        self._models.popitem(last=False)
            return predictor

    def evict(self, sha256: str) -> None:
        """Drop a checkpoint at every precision."""
        with self._lock:
            for key in [k for k in self._models if k[0] == sha256]:
                del self._models[key]

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, sha256: object) -> bool:
        """Whether a checkpoint is loaded, at any precision."""
        return any(k[0] == sha256 for k in self._models)
