from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from aam_core.data.rarefy import (
    choose_depth,
    rarefy,
    rarefy_by_content,
    sample_rng,
    subsample_row,
)
from aam_core.data.selection import sequence_ranks
from aam_core.data.synthetic import SyntheticStudy
from aam_core.io.types import FeatureTable


def _table(depths: list[int]) -> FeatureTable:
    counts = np.zeros((len(depths), 3), dtype=np.int64)
    for i, d in enumerate(depths):
        counts[i] = [d // 2, d - d // 2 - d // 4, d // 4]
    return FeatureTable(
        tuple(f"s{i}" for i in range(len(depths))),
        ("AC", "GT", "CA"),
        sp.csr_matrix(counts),
    )


def test_explicit_depth_always_wins() -> None:
    assert choose_depth(np.array([10, 20, 30]), 25).depth == 25
    with pytest.raises(ValueError, match="rarefaction depth must be >= 1, got 0"):
        choose_depth(np.array([10]), 0)


def test_default_depth_kept_when_it_drops_at_most_ten_percent() -> None:
    depths = np.array([4999] + [6000] * 9)  # drops exactly 1 of 10
    choice = choose_depth(depths)
    assert choice.depth == 5000 and choice.note is None


def test_default_lowered_to_the_depth_that_keeps_ninety_percent() -> None:
    depths = np.array([100, 900, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 6000, 7000, 8000])
    # 9 of 12 samples are below 5000; 10% of 12 = 1.2 -> sorted index 1 -> 900 keeps 11 of 12
    choice = choose_depth(depths)
    assert choice.depth == 900
    assert (depths >= choice.depth).sum() / depths.size >= 0.9
    assert (depths >= choice.depth + 1).sum() / depths.size < 0.9  # the largest such depth
    assert choice.note == (
        "default depth 5000 would drop 9 of 12 samples; rarefied to 900 instead "
        "(the largest depth that keeps 90% of samples)"
    )


def test_rarefied_samples_have_the_depth_and_dropped_samples_are_listed() -> None:
    table = _table([1000, 40, 700, 999, 10])
    result = rarefy(table, 500, seed=3)
    assert result.dropped == ("s1", "s4")
    assert result.table.sample_ids == ("s0", "s2", "s3")
    assert result.kept_rows.tolist() == [0, 2, 3]
    np.testing.assert_array_equal(result.table.depths(), [500, 500, 500])
    # subsampling never creates reads a sample did not have
    original = table.counts.toarray()[[0, 2, 3]]
    assert (result.table.counts.toarray() <= original).all()


def test_rarefaction_is_reproducible_by_seed(study: SyntheticStudy) -> None:
    a = rarefy(study.table, 2000, seed=5).table.counts
    b = rarefy(study.table, 2000, seed=5).table.counts
    c = rarefy(study.table, 2000, seed=6).table.counts
    assert (a != b).nnz == 0
    assert (a != c).nnz > 0
    # a new epoch is a new draw, reproducible too
    e1 = rarefy(study.table, 2000, seed=5, epoch=1).table.counts
    assert (e1 != a).nnz > 0
    assert (e1 != rarefy(study.table, 2000, seed=5, epoch=1).table.counts).nnz == 0


@pytest.mark.parametrize("seed", [0, 5, 2**32 - 1, 2**32, 2**70 + 3])
@pytest.mark.parametrize("epoch", [0, 1, 2**32 - 1, 2**33])
def test_sample_rng_is_default_rng_of_seed_epoch_and_row(seed: int, epoch: int) -> None:
    for row in (0, 1, 2**32 - 1, 2**32):
        expected = np.random.default_rng([seed, epoch, row])
        ours = sample_rng(seed, row, epoch)
        assert ours.bit_generator.state == expected.bit_generator.state
        assert ours.integers(0, 2**62, 4).tolist() == expected.integers(0, 2**62, 4).tolist()
    with pytest.raises(ValueError, match="negative"):
        sample_rng(-1, 0)


def test_rarefy_draws_each_row_with_its_sample_rng(study: SyntheticStudy) -> None:
    result = rarefy(study.table, 2000, seed=9, epoch=4)
    csr = study.table.counts
    for position in (0, 1, 57, result.kept_rows.size - 1):
        row = int(result.kept_rows[position])
        lo, hi = csr.indptr[row], csr.indptr[row + 1]
        expected = np.zeros(study.table.n_features, dtype=np.int64)
        expected[csr.indices[lo:hi]] = subsample_row(csr.data[lo:hi], 2000, sample_rng(9, row, 4))
        np.testing.assert_array_equal(result.table.counts[position].toarray()[0], expected)


def test_rarefaction_is_unbiased() -> None:
    # Without replacement, the expected reads of a feature are depth * count / total.
    table = _table([1000])
    draws = np.vstack([rarefy(table, 100, seed=s).table.counts.toarray()[0] for s in range(400)])
    expected = 100 * table.counts.toarray()[0] / 1000
    np.testing.assert_allclose(draws.mean(axis=0), expected, atol=1.0)


def test_samples_of_a_billion_reads_and_more_are_rarefied_without_bias() -> None:
    # numpy's hypergeometric draw stops below 10^9 reads; a table may hold up to 10^12 a sample.
    table = _table([4 * 10**11])  # counts 2e11, 1e11, 1e11
    draws = np.vstack([rarefy(table, 100, seed=s).table.counts.toarray()[0] for s in range(400)])
    assert (draws.sum(axis=1) == 100).all()
    np.testing.assert_allclose(draws.mean(axis=0), [50, 25, 25], atol=1.5)
    again = rarefy(table, 100, seed=3).table.counts.toarray()[0]
    np.testing.assert_array_equal(again, draws[3])
    # a feature of 2 reads among 10^12 keeps at most 2 of them, however deep the draw
    few = subsample_row(np.array([10**12 - 2, 2]), 10**6, np.random.default_rng(0))
    assert few.sum() == 10**6 and few[1] <= 2


SAMPLE = {"TTGACA": 40, "ACGTAA": 25, "GGCATT": 25, "CATGCA": 9, "AAGTCC": 1}
DRAW_SCRIPT = """
import numpy as np
from aam_core.data.rarefy import rarefy_by_content
from aam_core.data.selection import sequence_ranks
seqs = {seqs!r}
counts = np.array({counts!r})
f, c = rarefy_by_content(np.arange(len(seqs)), counts, 50, sequences=seqs,
                         ranks=sequence_ranks(seqs), seed=7, draw=1)
print([[seqs[j] for j in f], c.tolist()])
"""


def _draw(
    sequences: list[str], counts: list[int], *, seed: int = 7, draw: int = 1
) -> list[list[str] | list[int]]:
    """The sample drawn to 50 reads: [sequences with reads, their reads]."""
    ranks = sequence_ranks(sequences)
    f, c = rarefy_by_content(
        np.arange(len(sequences)), np.array(counts), 50, sequences=sequences, ranks=ranks,
        seed=seed, draw=draw,
    )  # fmt: skip
    return [[sequences[j] for j in f], c.tolist()]


def test_prediction_rarefaction_follows_the_content_not_the_order_or_company() -> None:
    seqs, counts = list(SAMPLE), list(SAMPLE.values())
    drawn = _draw(seqs, counts)
    names, reads = [str(s) for s in drawn[0]], [int(c) for c in drawn[1]]
    assert sum(reads) == 50 and names == sorted(names)
    assert all(c <= SAMPLE[s] for s, c in zip(names, reads, strict=True))
    # features listed in reverse, and among features of other samples (reads 0 here)
    assert _draw(seqs[::-1], counts[::-1]) == drawn
    others = ["CCCCCC", *seqs[:2], "GGGGGG", *seqs[2:]]
    f, c = rarefy_by_content(
        np.array([1, 2, 4, 5, 6]), np.array(counts), 50, sequences=others,
        ranks=sequence_ranks(others), seed=7, draw=1,
    )  # fmt: skip
    assert [[others[j] for j in f], c.tolist()] == drawn
    # another seed, pass or content is another draw
    assert _draw(seqs, counts, seed=8) != drawn
    assert _draw(seqs, counts, draw=2) != drawn
    assert _draw(seqs, [*counts[:-1], 2]) != drawn


def test_prediction_rarefaction_seed_is_stable_across_processes() -> None:
    # Python's str hash is salted per process; the seed must not be.
    seqs, counts = list(SAMPLE), list(SAMPLE.values())
    script = DRAW_SCRIPT.format(seqs=seqs, counts=counts)
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == str(_draw(seqs, counts))
