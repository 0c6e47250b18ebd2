"""A prediction is a function of the sample's counts and the model alone: one sample gives the
same number alone or inside other tables, with the samples or the features listed in reverse,
when it is deeper than the training depth (rarefied at prediction) and with K rarefaction
passes, through the library, ``aam predict``, both forms of ``POST /predict`` and a predict job
run by a real worker process. "The same" is the contract of aam_core.predict: within
``RELATIVE_TOLERANCE`` of the larger of the value and the target's scale at the default
float32, and bit for bit (``==``) in the exact mode (``precision="fp64"``).

The two probes make the rules matter: both have ASVs with equal counts (ranked by sequence, not
file order); ``deep`` has 5,200 reads against a training depth of 1,000 (rarefied with a seed
from its content, not its row); ``shallow`` has 20 ASVs against a token limit of 16, so the
tie-break at its 10-read ASVs decides which ASVs the model reads at all.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aam_core.cli import app as aam
from aam_core.io import Inputs, read_table
from aam_core.io.types import FeatureTable
from aam_core.plan import TargetSpec
from aam_core.predict import Predictor
from aam_core.train.run import run_train
from app.contracts import JobState
from app.main import create_app
from app.registration import register_checkpoint
from app.settings import Settings
from tests.conftest import train_plan, within_contract
from tests.worker.helpers import Store, running

DEPTH = 1000  # training rarefaction depth; the study's samples have 3,000-12,000 reads
TOKEN_LIMIT = 16
PROBES = ("deep", "shallow")
Counts = dict[str, int]


@dataclass(frozen=True)
class Case:
    checkpoint: Path
    probes: dict[str, Counts]  # probe ID -> counts by sequence
    company_a: list[tuple[str, Counts]]  # other samples of the study
    company_b: list[tuple[str, Counts]]
    tables: dict[str, FeatureTable]  # each holds both probes, except "alone <probe>"
    files: dict[str, Path]  # the same tables as BIOM files
    alone: dict[int, dict[str, float]]  # passes -> probe -> prediction alone (the reference)
    exact: dict[int, dict[str, float]]  # the same in the exact mode
    scale: float  # the target's standard deviation in training (the model's Standardizer)


def make_table(samples: list[tuple[str, Counts]], features: list[str]) -> FeatureTable:
    column = {f: j for j, f in enumerate(features)}
    counts = np.zeros((len(samples), len(features)), dtype=np.int64)
    for i, (_, sample) in enumerate(samples):
        for sequence, count in sample.items():
            counts[i, column[sequence]] = count
    ids = tuple(name for name, _ in samples)
    return FeatureTable(ids, tuple(features), sp.csr_matrix(counts), source="test")


def write_biom(table: FeatureTable, path: Path) -> Path:
    """A BIOM 2.1 file listing features in ``table``'s order (checked on reading back)."""
    from biom import Table
    from biom.util import biom_open

    biom = Table(
        table.counts.T.toarray().astype(np.float64),
        observation_ids=list(table.feature_ids),
        sample_ids=list(table.sample_ids),
    )
    with biom_open(str(path), "w") as handle:
        biom.to_hdf5(handle, generated_by="tests/test_determinism.py")
    assert read_table(path).feature_ids == table.feature_ids
    return path


def of_probes(values: Mapping[str, float]) -> dict[str, float]:
    return {p: values[p] for p in PROBES if p in values}


def predicted(
    predictor: Predictor, table: FeatureTable, passes: int = 1, batch_size: int = 64
) -> dict[str, float]:
    result = predictor.predict(table, table.feature_ids, passes=passes, batch_size=batch_size)
    return of_probes({s.sample_id: s.prediction[0] for s in result.samples if s.prediction})


def assert_same(
    case: Case, got: Mapping[str, float], passes: int = 1, precision: str = "fp32"
) -> None:
    """The probes' values equal their values alone: within the contract at fp32, bit for bit
    in the exact mode."""
    if precision == "fp64":
        assert dict(got) == case.exact[passes]
        return
    want = case.alone[passes]
    assert got.keys() == want.keys()
    for probe, value in want.items():
        assert within_contract(got[probe], value, case.scale), (probe, got[probe], value)


@pytest.fixture(scope="module", params=["aam", "ensemble"])
def case(
    study_inputs: Inputs, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Case:
    """A regressor, and an ensemble (AAM blended with a random forest that reads the same
    rarefied reads): every rule holds for both."""
    out = tmp_path_factory.mktemp("determinism")
    plan = train_plan(
        study_inputs, TargetSpec("age", "regression"), epochs=1, rarefaction_depth=DEPTH,
        token_limit=TOKEN_LIMIT,
    )  # fmt: skip
    plan = dataclasses.replace(plan, model_kind=request.param)
    result = run_train(study_inputs, plan, out / "run")
    assert result.best_checkpoint is not None
    study = study_inputs.table

    def sample(row: int) -> tuple[str, Counts]:
        return study.sample_ids[row], study.row_counts(row)

    everything = list(study.feature_ids)
    probes = {
        "deep": dict(zip(everything[:20], [600] * 4 + [300] * 6 + [100] * 10, strict=True)),
        "shallow": dict(zip(everything[20:40], [80] * 5 + [40] * 5 + [10] * 10, strict=True)),
    }
    assert sum(probes["deep"].values()) == 5200 and sum(probes["shallow"].values()) == 700
    company_a = [sample(r) for r in range(2, 10)]
    company_b = [sample(r) for r in range(40, 70)]  # more samples: other padding, other ASVs
    deep, shallow = ("deep", probes["deep"]), ("shallow", probes["shallow"])
    in_a = [*company_a[:4], deep, *company_a[4:], shallow]
    in_b = [shallow, *company_b, deep]
    tables = {
        "alone deep": make_table([deep], sorted(probes["deep"])),
        "alone shallow": make_table([shallow], list(probes["shallow"])),
        "A": make_table(in_a, everything),
        "A, samples reversed": make_table(in_a[::-1], everything),
        "A, features reversed": make_table(in_a, everything[::-1]),
        "B": make_table(in_b, everything),
        "B, both reversed": make_table(in_b[::-1], everything[::-1]),
    }
    files = {name: write_biom(t, out / f"{i}.biom") for i, (name, t) in enumerate(tables.items())}
    references = {}
    for precision in ("fp32", "fp64"):
        predictor = Predictor.from_path(result.best_checkpoint, precision=precision)
        references[precision] = {
            k: {**predicted(predictor, tables["alone deep"], k),
                **predicted(predictor, tables["alone shallow"], k)}
            for k in (1, 3)
        }  # fmt: skip
    scale = float(predictor.model.target_norm.std[0])
    return Case(result.best_checkpoint, probes, company_a, company_b, tables, files,
                references["fp32"], references["fp64"], scale)  # fmt: skip


def test_the_probes_exercise_ties_truncation_and_rarefaction(case: Case) -> None:
    predictor = Predictor.from_path(case.checkpoint)
    table = case.tables["A"]
    result = {s.sample_id: s for s in predictor.predict(table, table.feature_ids).samples}
    shallow, deep = result["shallow"], result["deep"]
    assert (shallow.n_features, shallow.n_features_used) == (20, TOKEN_LIMIT)
    assert shallow.fraction_reads_used == pytest.approx(660 / 700)  # 6 of the ten 10s are read
    alone = case.tables["alone deep"]
    (rarefied,) = predictor.samples(alone, alone.feature_ids)
    assert rarefied.counts.sum() == DEPTH and deep.n_features == len(rarefied.features)
    many = {s.sample_id: s for s in predictor.predict(table, table.feature_ids, passes=3).samples}
    assert many["shallow"].prediction_std == [0.0]  # not rarefied: every pass is the same
    assert many["deep"].prediction_std is not None and many["deep"].prediction_std[0] > 0


@pytest.mark.parametrize("precision", ["fp32", "fp64"])
@pytest.mark.parametrize("passes", [1, 3])
def test_library_prediction_ignores_company_and_order(
    case: Case, passes: int, precision: str
) -> None:
    predictor = Predictor.from_path(case.checkpoint, precision=precision)
    for name, table in case.tables.items():
        if not name.startswith("alone"):
            assert_same(case, predicted(predictor, table, passes), passes, precision)
    # batches of another size regroup the samples; a warm vector cache holds vectors computed
    # in other batches (in the exact mode, each ASV's alone)
    cached = Predictor.from_path(case.checkpoint, vector_cache=10_000, precision=precision)
    for name in ("B", "A, features reversed", "A"):
        table = case.tables[name]
        assert_same(case, predicted(predictor, table, passes, batch_size=5), passes, precision)
        assert_same(case, predicted(cached, table, passes), passes, precision)
    assert cached.vector_cache is not None and cached.vector_cache.hits > 0


def test_every_sample_gives_its_own_number_alone(case: Case, study_inputs: Inputs) -> None:
    # Padding, batch size and batch mates change how kernels block their sums: in float32 that
    # moves a sample's value in its last bits, within the contract; the exact mode not at all.
    table = study_inputs.table.subset_samples(np.arange(40))
    for precision in ("fp32", "fp64"):
        predictor = Predictor.from_path(case.checkpoint, precision=precision)
        together = predictor.predict(table, table.feature_ids, batch_size=16).samples
        for row, want in enumerate(together):
            alone = table.subset_samples(np.array([row]))
            (got,) = predictor.predict(alone, alone.feature_ids).samples
            assert got.prediction is not None and want.prediction is not None
            a, b = got.prediction[0], want.prediction[0]
            assert a == b if precision == "fp64" else within_contract(a, b, case.scale), (row, a, b)


def aam_predict(
    checkpoint: Path, table: Path, out: Path, passes: int, precision: str
) -> dict[str, float]:
    args = ["predict", "--checkpoint", checkpoint, "--table", table, "--out", out,
            "--passes", passes, "--precision", precision]  # fmt: skip
    result = CliRunner().invoke(aam, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, sep="\t", index_col="sample_id")
    return of_probes(frame["prediction"].to_dict())


@pytest.mark.parametrize("precision", ["fp32", "fp64"])
def test_aam_predict_gives_the_number_of_the_sample_alone(
    case: Case, tmp_path: Path, precision: str
) -> None:
    out = tmp_path / "o.tsv"
    for passes in (1, 3):
        got: dict[str, float] = {}
        for probe in PROBES:
            alone = case.files[f"alone {probe}"]
            got |= aam_predict(case.checkpoint, alone, out, passes, precision)
        assert_same(case, got, passes, precision)
        for name in ("A", "A, features reversed", "B, both reversed"):
            got = aam_predict(case.checkpoint, case.files[name], out, passes, precision)
            assert_same(case, got, passes, precision)


@pytest.fixture(scope="module")
def api(case: Case, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """The app, open on loopback (no keys), with the model imported through POST /models."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("api") / "data")
    with TestClient(create_app(settings)) as client:
        upload = {"checkpoint": ("age.pt", case.checkpoint.read_bytes())}
        answer = client.post("/models", files=upload)
        assert answer.status_code == 201, answer.text
        yield client, answer.json()["id"]


def served(answer: object, precision: str = "fp32") -> dict[str, float]:
    from httpx import Response

    assert isinstance(answer, Response) and answer.status_code == 200, getattr(answer, "text", "")
    assert answer.json()["precision"] == precision
    return of_probes({p["sample_id"]: p["prediction"] for p in answer.json()["predictions"]})


@pytest.mark.parametrize("precision", ["fp32", "fp64"])
def test_post_predict_json_gives_the_number_of_the_sample_alone(
    case: Case, api: tuple[TestClient, str], precision: str
) -> None:
    client, model_id = api

    def request(samples: list[tuple[str, Counts]]) -> dict[str, float]:
        body = {"model_id": model_id, "samples": [{"id": n, "counts": c} for n, c in samples]}
        if precision != "fp32":
            body["precision"] = precision
        return served(client.post("/predict", json=body), precision)

    got = {**request([("deep", case.probes["deep"])]),
           **request([("shallow", case.probes["shallow"])])}  # fmt: skip
    assert_same(case, got, 1, precision)
    # among others; samples and each sample's counts listed in reverse
    mixed = [*case.company_a, ("deep", case.probes["deep"]), ("shallow", case.probes["shallow"])]
    assert_same(case, request(mixed), 1, precision)
    reversed_ = [(name, dict(reversed(counts.items()))) for name, counts in mixed[::-1]]
    assert_same(case, request([*case.company_b[:5], *reversed_]), 1, precision)


def test_post_predict_table_gives_the_number_of_the_sample_alone(
    case: Case, api: tuple[TestClient, str]
) -> None:
    client, model_id = api

    def upload(name: str, precision: str = "fp32") -> dict[str, float]:
        files = {"table": ("table.biom", case.files[name].read_bytes())}
        form = {"model_id": model_id, "precision": precision}
        return served(client.post("/predict", data=form, files=files), precision)

    assert_same(case, {**upload("alone deep"), **upload("alone shallow")})
    for name in ("A", "A, samples reversed", "A, features reversed", "B, both reversed"):
        assert_same(case, upload(name))
    exact = {**upload("alone deep", "fp64"), **upload("alone shallow", "fp64")}
    assert_same(case, exact, 1, "fp64")
    assert_same(case, upload("B, both reversed", "fp64"), 1, "fp64")


def test_predict_job_gives_the_number_of_the_sample_alone(case: Case, tmp_path: Path) -> None:
    with Store.open(tmp_path / "data") as store:
        with store.sessions() as session:
            model = register_checkpoint(
                session, store.storage, case.checkpoint, owner="alice", name="age",
                source="import",
            )  # fmt: skip
            session.commit()
            model_id = model.id
        runs = (("A, features reversed", 1, "fp32"), ("B", 3, "fp32"), ("B", 3, "fp64"))
        jobs = []
        with running("worker", store.env(), tmp_path / "worker.log"):
            for name, passes, precision in runs:
                dataset = store.add_dataset({"table": case.files[name]})
                config = {"passes": passes, "precision": precision}
                jobs.append(store.add_job("predict", dataset, model_id=model_id, config=config))
            done = [store.wait(job, JobState.succeeded, timeout=120) for job in jobs]
        for (_, passes, precision), job in zip(runs, done, strict=True):
            text = store.storage.path(job.outputs["predictions"]).read_text()
            frame = pd.read_csv(io.StringIO(text), sep="\t", index_col="sample_id")
            assert_same(case, of_probes(frame["prediction"].to_dict()), passes, precision)
            assert job.report["precision"] == precision


def test_an_asv_under_two_ids_reads_the_same_in_any_company_and_order(case: Case) -> None:
    # One sequence under two IDs (two spellings of its case, as a JSON request may hold):
    # the two entries tie on count and sequence, and are the same input in either order.
    predictor = Predictor.from_path(case.checkpoint)
    twin = next(iter(case.probes["shallow"]))
    sample = {**case.probes["shallow"], twin: 10, twin.lower(): 10}
    alone = make_table([("twin", sample)], list(sample))
    want = predictor.predict(alone, alone.feature_ids).samples[0]
    features = [twin.lower(), *case.tables["A"].feature_ids]
    crowd = make_table([*case.company_a, ("twin", sample)], features)
    for table in (crowd, make_table([("twin", sample), *case.company_a], features[::-1])):
        result = predictor.predict(table, table.feature_ids)
        got = next(s for s in result.samples if s.sample_id == "twin")
        assert got.n_features == 21 and got.prediction is not None and want.prediction
        assert within_contract(got.prediction[0], want.prediction[0], case.scale)


def test_a_model_round_trips_through_download_and_import(
    case: Case, api: tuple[TestClient, str]
) -> None:
    client, model_id = api
    body = client.get(f"/models/{model_id}/checkpoint").content
    assert body == case.checkpoint.read_bytes()
    again = client.post("/models", files={"checkpoint": ("again.pt", body)})
    assert again.status_code == 201, again.text
    record = again.json()
    assert record["kind"] == "regressor"
    samples = [{"id": p, "counts": case.probes[p]} for p in PROBES]
    answer = client.post("/predict", json={"model_id": record["id"], "samples": samples})
    assert_same(case, served(answer))
    forest = Predictor.from_path(case.checkpoint).checkpoint.forest
    if forest is None:
        assert "ensemble" not in record["config"]
        assert all(p.get("components") is None for p in answer.json()["predictions"])
        return
    assert record["config"]["ensemble"]["weight"] == forest.weight
    assert record["metrics"]["ensemble"]["choice"] == "ensemble"
    for p in answer.json()["predictions"]:  # the prediction is the blend of its parts
        parts = p["components"]
        blend = forest.weight * parts["aam"][0] + (1 - forest.weight) * parts["forest"][0]
        assert abs(p["prediction"] - blend) <= 1e-9
