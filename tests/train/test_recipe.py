"""The default recipe learns: on a synthetic study whose subjects each give several samples, a
model trained with the defaults (only the sizes made small) predicts held-out subjects clearly
better than the training median does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.io import load_files
from aam_core.plan import TargetSpec
from aam_core.predict import Predictor
from aam_core.train.local_plan import plan_local
from aam_core.train.prepare import read_split_tsv
from aam_core.train.run import run_train

EPOCHS = 10  # the only change to the recipe besides the data's size: a fast test


def test_default_recipe_beats_the_median_on_held_out_subjects(tmp_path: Path) -> None:
    spec = SyntheticSpec(
        n_samples=240, n_asvs=150, asvs_per_sample=25, samples_per_subject=4, seed=5
    )
    study = generate(spec)
    inputs = load_files({**write_study(study, tmp_path / "data")})
    run = plan_local(
        "train",
        {"group_column": "subject", "epochs": EPOCHS, "baseline": False},
        inputs,
        target=TargetSpec("age", "regression"),
        device="cpu",
    )
    # preset auto on a CPU; an eighth of the 192 train samples per batch; ASV identities
    assert (run.config.preset, run.config.batch_size, run.config.asv_vocabulary) == (
        "tiny",
        24,
        True,
    )
    result = run_train(inputs, run, tmp_path / "run", device="cpu")

    split = read_split_tsv(tmp_path / "run" / "split.tsv")
    subject = study.metadata["subject"]
    held_out = set(subject[split["validation"]])
    assert held_out and held_out.isdisjoint(subject[split["train"]])  # whole subjects held out

    ids = list(inputs.table.sample_ids)
    rows = np.array([ids.index(s) for s in split["validation"]])
    checkpoint = result.best_checkpoint or result.last_checkpoint
    predicted = Predictor.from_path(checkpoint).predict(
        inputs.table.subset_samples(rows), inputs.sequences
    )
    values = {s.sample_id: s.prediction[0] for s in predicted.samples}
    truth = study.metadata["age"]
    model_mae = np.mean([abs(values[s] - truth[s]) for s in split["validation"]])
    median = float(np.median(truth[split["train"]]))
    median_mae = np.mean([abs(median - truth[s]) for s in split["validation"]])
    assert model_mae < 0.7 * median_mae, (model_mae, median_mae)
