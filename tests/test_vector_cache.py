"""The ASV vector cache: what it returns equals what the encoder returns, keys ignore trailing
padding, one sequence twice in a batch takes one row, and eviction is least recently used."""

from __future__ import annotations

from collections.abc import Callable

import torch

from aam_core.vector_cache import AsvVectorCache


def encoder(calls: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A stand-in for the nucleotide encoder: each row's vector is a function of its tokens
    alone (sum and length of the non-padding tokens), and every call is counted."""

    def encode(tokens: torch.Tensor) -> torch.Tensor:
        calls.append(tokens.shape[0])
        real = (tokens > 0).to(torch.float32)  # [U, L]
        return torch.stack([(tokens * real).sum(1), real.sum(1)], dim=1).to(torch.float32)

    return encode


def rows(*sequences: list[int], length: int) -> torch.Tensor:
    """Token rows padded with 0 to ``length``."""
    return torch.tensor([s + [0] * (length - len(s)) for s in sequences], dtype=torch.int64)


def test_cached_vectors_equal_the_encoders_and_padding_does_not_change_keys() -> None:
    calls: list[int] = []
    encode = encoder(calls)
    cache = AsvVectorCache(100)
    first = rows([1, 2, 3], [4, 4], [1, 2, 3, 4], length=4)
    assert torch.equal(cache.vectors(first, encode), encode(first))
    assert calls == [3, 3] and (cache.hits, cache.misses, len(cache)) == (0, 3, 3)
    # the same ASVs in a batch whose longest ASV is longer, with a new one and a duplicate
    second = rows([4, 4], [2, 2, 2, 2, 2, 2], [1, 2, 3], [2, 2, 2, 2, 2, 2], length=6)
    got = cache.vectors(second, encode)
    assert torch.equal(got, encode(second))
    assert calls[2] == 2  # only the new sequence (twice in the batch) was encoded
    assert (cache.hits, cache.misses, len(cache)) == (2, 5, 4)  # one row for the twin


def test_eviction_is_least_recently_used_and_a_batch_larger_than_the_cache_works() -> None:
    calls: list[int] = []
    encode = encoder(calls)
    cache = AsvVectorCache(3)
    cache.vectors(rows([1], [2], [3], length=1), encode)
    cache.vectors(rows([1], length=1), encode)  # [1] is now the most recently used
    cache.vectors(rows([4], length=1), encode)  # evicts [2], the least recently used
    calls.clear()
    again = rows([1], [3], [4], [2], length=1)
    assert torch.equal(cache.vectors(again, encode), encode(again))
    assert calls[0] == 1 and len(cache) == 3  # only [2] was missing
    big = rows([5], [6], [7], [8], [9], length=1)
    assert torch.equal(cache.vectors(big, encode), encode(big))
    calls.clear()
    cache.vectors(rows([7], [8], [9], length=1), encode)
    assert calls == []  # the last three of the batch stayed
