from __future__ import annotations

import numpy as np
import pytest

from aam_core.errors import ConfigError
from aam_core.train.loop import lr_factor
from aam_core.train.prepare import split_rows


def test_random_split_is_seeded_and_sized() -> None:
    a = split_rows(100, validation_fraction=0.2, seed=1)
    b = split_rows(100, validation_fraction=0.2, seed=1)
    c = split_rows(100, validation_fraction=0.2, seed=2)
    assert np.array_equal(a.validation, b.validation) and not np.array_equal(
        a.validation, c.validation
    )
    assert a.validation.size == 20 and a.train.size == 80
    assert np.intersect1d(a.train, a.validation).size == 0


def test_stratified_split_keeps_class_shares() -> None:
    labels = np.array([0] * 80 + [1] * 20)
    split = split_rows(100, validation_fraction=0.25, seed=0, labels=labels)
    assert (labels[split.validation] == 1).sum() == 5  # 20% of the validation, like the whole


@pytest.mark.parametrize("with_labels", [False, True])
def test_no_group_spans_train_and_validation(with_labels: bool) -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 4)  # 30 subjects sampled 4 times each
    labels = np.repeat(rng.integers(0, 2, 30), 4) if with_labels else None
    split = split_rows(120, validation_fraction=0.2, seed=3, labels=labels, groups=groups)
    assert not set(groups[split.train]) & set(groups[split.validation])
    assert 0.1 <= split.validation.size / 120 <= 0.35


def test_split_errors() -> None:
    with pytest.raises(ValueError, match=r"validation_fraction must be in \(0, 1\), got 1.5"):
        split_rows(10, validation_fraction=1.5)
    with pytest.raises(
        ConfigError, match=r"the group column has 1 group\(s\) among the usable samples; a split"
    ):
        split_rows(10, groups=np.zeros(10))


def test_warmup_reaches_the_peak_on_small_data_and_cosine_never_hits_zero_early() -> None:
    # 10 optimiser steps in all, 30% warmup: the peak is reached at step 3 (index 2)
    factors = [lr_factor(s, 10, 0.3, 0.01) for s in range(10)]
    assert factors[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert all(f > 0 for f in factors) and factors[-1] < factors[3]
    # a long run: at step 1000 of 5000 the rate is far from 0 (the port hit 0 at 1000 steps)
    assert lr_factor(1000, 5000, 0.05, 0.01) > 0.8
    assert lr_factor(4999, 5000, 0.05, 0.01) == pytest.approx(0.01, abs=1e-3)
    # cosine shape: halfway through the decay the factor is halfway between peak and floor
    assert lr_factor(550, 1050, 50 / 1050, 0.0) == pytest.approx(0.5, abs=1e-3)
