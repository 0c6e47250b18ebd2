"""The cross-validation engine at tiny sizes, with the baselines alone (AAM's own path runs in
tests/bench/test_quality.py and tests/worker/test_cross_validate.py): the folds' coverage and
grouping, finished folds kept and reused by fingerprint, a stop request, progress, the
refusals, and the job's prediction layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aam_core.crossval import models
from aam_core.crossval.engine import Options, Progress, check, cross_validate
from aam_core.crossval.models import AamOptions
from aam_core.crossval.run import oof_table
from aam_core.crossval.study import Study, load_study
from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.errors import ConfigError
from aam_core.train.callbacks import Callback

BASELINES = ("forest", "linear", "constant", "depth")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    spec = SyntheticSpec(n_samples=40, n_asvs=50, asvs_per_sample=10, seed=5)
    directory = tmp_path_factory.mktemp("study")
    write_study(generate(spec), directory)
    return load_study(directory, "age", "regression", "subject")


@pytest.fixture(autouse=True)
def small_forests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.TREES, "cpu", (10, 20))


def options(**changes: Any) -> Options:
    base = {"folds": 3, "models": BASELINES, "aam": AamOptions({"rarefaction_depth": 1000})}
    return Options(**{**base, **changes})


def test_every_sample_once_per_repeat_and_never_beside_its_subject(
    study: Study, tmp_path: Path
) -> None:
    result = cross_validate(study, options(repeats=2, first_seed=3), tmp_path)
    assert result.summary is not None and not result.stopped
    frame = result.predictions
    subjects = dict(zip(study.sample_ids, study.groups, strict=True))
    for model in BASELINES:
        for seed in (3, 4):
            rows = frame[(frame["model"] == model) & (frame["seed"] == seed)]
            assert sorted(rows["sample_id"]) == sorted(study.sample_ids)  # once each
    for fold in result.folds:
        train = {subjects[s] for s in study.sample_ids[fold.train]}
        test = {subjects[s] for s in study.sample_ids[fold.test]}
        assert not train & test
        assert set(fold.kept) <= set(fold.train)
    table = oof_table(frame, first_seed=3)
    assert list(table.columns) == [
        "sample_id",
        "repeat",
        "fold",
        "model",
        "true",
        "prediction",
        "group",
    ]
    assert sorted(set(table["repeat"])) == [1, 2]


def test_finished_folds_are_kept_and_a_rerun_does_only_the_rest(
    study: Study, tmp_path: Path
) -> None:
    first = cross_validate(study, options(), tmp_path)
    files = sorted((tmp_path / "folds").glob("*.json"))
    assert [f.name for f in files] == [f"seed0-fold{k}.json" for k in (1, 2, 3)]
    files[1].unlink()  # as if the run had died in fold 2
    times = {f.name: f.stat().st_mtime_ns for f in (files[0], files[2])}
    calls: list[int] = []
    original = models.fit_constant

    def counting(study: Study, fold: Any) -> Any:
        calls.append(fold.index)
        return original(study, fold)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "fit_constant", counting)
        again = cross_validate(study, options(), tmp_path)
    assert calls == [2] and again.reused == 2
    assert {f: (tmp_path / "folds" / f).stat().st_mtime_ns for f in times} == times
    # the same figures (the rerun fold's own seconds aside; a forest's parallel sums may
    # differ in the last bit)
    assert_close(timeless(again.records), timeless(first.records))
    assert_close(timeless(again.summary), timeless(first.summary))
    # other settings: another fingerprint, nothing reused
    other = cross_validate(study, options(models=("constant", "depth")), tmp_path)
    assert other.reused == 0


def timeless(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def assert_close(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            assert_close(a[key], b[key])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_close(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-12, nan_ok=True)
    else:
        assert a == b


class StopAfterFolds(Callback):
    def __init__(self, out: Path, folds: int) -> None:
        self.out, self.folds = out, folds

    def should_stop(self) -> bool:
        return len(list((self.out / "folds").glob("*.json"))) >= self.folds


def test_a_stop_request_ends_the_run_between_steps_and_keeps_finished_folds(
    study: Study, tmp_path: Path
) -> None:
    stopped = cross_validate(study, options(), tmp_path, callback=StopAfterFolds(tmp_path, 1))
    assert stopped.stopped and stopped.summary is None
    assert [f.name for f in (tmp_path / "folds").glob("*.json")] == ["seed0-fold1.json"]
    finished = cross_validate(study, options(), tmp_path)
    assert finished.reused == 1 and finished.summary is not None


def test_progress_counts_folds_and_starts_from_the_estimate(study: Study, tmp_path: Path) -> None:
    seen: list[Progress] = []
    cross_validate(study, options(), tmp_path, progress=seen.append, estimate=60.0)
    assert seen[0].fraction == 0.0 and seen[0].eta_seconds == 60.0  # before any progress
    assert [p.done for p in seen] == [0, 1, 1, 2, 2, 3]  # each fold's start and end
    assert seen[-1].fraction == 1.0 and seen[-1].eta_seconds == 0.0
    assert np.all(np.diff([p.fraction for p in seen]) >= 0)
    assert seen[1].label == "seed 0 fold 1" and seen[1].total == 3


def test_what_cannot_run_is_refused_before_any_work(study: Study) -> None:
    with pytest.raises(
        ConfigError,
        match=r"11 folds need at least 11 subjects \(subject\); the "
        r"usable samples \(with a target value and enough reads\) have 10",
    ):
        check(study, options(folds=11))
    with pytest.raises(ConfigError, match="cv.folds must be 2 to 20, got 1"):
        check(study, options(folds=1))
    with pytest.raises(ConfigError, match="models must name some of forest, linear"):
        check(study, options(models=("forest", "rf")))
