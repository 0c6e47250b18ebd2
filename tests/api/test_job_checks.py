"""POST /jobs refuses, with a 422 naming the field, every spec that could not run, and stores
and sends nothing; the specs next to each refusal that can run are accepted (202)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aam_core.model import AAMConfig
from aam_core.plan.config import setting_fields
from app.main import create_app
from app.settings import Settings
from app.store import Job, create_model
from tests.api.conftest import (
    ADMIN,
    ALICE,
    BOB,
    KEYS,
    AddDataset,
    AddModel,
    RecordingDispatcher,
    services_of,
)

COLUMNS = "'age', 'site', 'subject', 'visits', 'batch', 'bmi'"


@dataclass(frozen=True)
class World:
    """Alice's datasets and models (bob has one dataset and one regressor of his own)."""

    ids: dict[str, str]

    def fill(self, value: Any) -> Any:
        """Put the ids into a body or a message: ``"{ds}"`` -> the dataset's id."""
        if isinstance(value, str):
            for name, identifier in self.ids.items():
                value = value.replace(f"{{{name}}}", identifier)
            return value
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value


@pytest.fixture(scope="module")
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, dispatcher: RecordingDispatcher
) -> Iterator[TestClient]:
    """One app for the module: a refused spec stores nothing, so the cases do not interfere."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("checks"), api_keys=KEYS)
    with TestClient(create_app(settings, dispatcher=dispatcher)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def world(client: TestClient, add_dataset: AddDataset, add_model: AddModel) -> World:
    ids = {
        "ds": add_dataset(client, "alice"),
        "no_tree": add_dataset(client, "alice", ("table", "metadata")),
        "dm_only": add_dataset(client, "alice", ("table", "metadata", "distance_matrix")),
        "no_meta": add_dataset(client, "alice", ("table", "tree")),
        "bob_ds": add_dataset(client, "bob"),
        "encoder": add_model(client, "alice", "encoder"),
        "regressor": add_model(client, "alice", "regressor"),
        "bob_model": add_model(client, "bob", "regressor"),
    }
    return World(ids)


def job_count(client: TestClient) -> int:
    with services_of(client).sessions() as session:
        return session.query(Job).count()


def submit(client: TestClient, body: dict[str, Any], headers: dict[str, str] = ALICE) -> Any:
    return client.post("/jobs", json=body, headers=headers)


PRETRAIN = {"kind": "pretrain", "dataset_id": "{ds}"}
AGE = {"column": "age", "task": "regression"}


def train(**changes: Any) -> dict[str, Any]:
    return {"kind": "train", "dataset_id": "{ds}", "target": AGE, **changes}


def cross_validate(**changes: Any) -> dict[str, Any]:
    return {"kind": "cross_validate", "dataset_id": "{ds}", "target": AGE, **changes}


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    # shape and types (pydantic, before anything is read)
    ("unknown key", {**PRETRAIN, "config": {"epoch": 3}},
     "config.epoch: Extra inputs are not permitted"),
    ("unknown loss", {**PRETRAIN, "config": {"loss_weights": {"unifrc": 1}}},
     "config.loss_weights.unifrc: Extra inputs are not permitted"),
    ("unknown top-level key", {**PRETRAIN, "epochs": 3},
     "epochs: Extra inputs are not permitted"),
    ("zero epochs", {**PRETRAIN, "config": {"epochs": 0}},
     "config.epochs: Input should be greater than or equal to 1"),
    ("lr above 1", {**PRETRAIN, "config": {"lr": 2}},
     "config.lr: Input should be less than or equal to 1"),
    ("negative weight", {**PRETRAIN, "config": {"loss_weights": {"unifrac": -1}}},
     "config.loss_weights.unifrac: Input should be greater than or equal to 0"),
    ("batch of one", {**PRETRAIN, "config": {"batch_size": 1}},
     "config.batch_size: Input should be greater than or equal to 2"),
    ("unknown precision", {**PRETRAIN, "config": {"precision": "fp16"}},
     "config.precision: Input should be 'auto', 'fp32', 'bf16' or 'fp64'"),
    ("unknown kind", {"kind": "finetune", "dataset_id": "{ds}"},
     "kind: Input should be 'pretrain', 'train', 'predict' or 'cross_validate'"),
    # an inconsistent spec (aam_core.plan.check_request, then plan_run)
    ("train without target", {"kind": "train", "dataset_id": "{ds}"},
     "target: a train job needs a target: {'column': ..., 'task': ...}"),
    ("pretrain with target", {**PRETRAIN, "target": AGE},
     "target: a pretrain job takes no target"),
    ("predict without model", {"kind": "predict", "dataset_id": "{ds}"},
     "model_id: a predict job needs model_id (the model to apply)"),
    ("freeze without base", train(freeze_base=True),
     "freeze_base: freeze_base needs a pretrained encoder to start from"),
    ("model kind for a pretrain job", {**PRETRAIN, "model": "ensemble"},
     "model: model is for train jobs; a pretrain job takes none"),
    ("unknown model kind", train(model="forest"),
     "model: Input should be 'aam', 'ensemble' or 'auto'"),
    # what the spec names
    ("missing dataset", {**PRETRAIN, "dataset_id": "ds_0000000000000000"},
     "dataset_id: dataset 'ds_0000000000000000' does not exist"),
    ("bob's dataset", {**PRETRAIN, "dataset_id": "{bob_ds}"},
     "dataset_id: dataset '{bob_ds}' does not exist"),
    ("missing base", train(base_model_id="mdl_0000000000000000"),
     "base_model_id: model 'mdl_0000000000000000' does not exist"),
    ("bob's base", train(base_model_id="{bob_model}"),
     "base_model_id: model '{bob_model}' does not exist"),
    ("bob's model", {"kind": "predict", "dataset_id": "{ds}", "model_id": "{bob_model}"},
     "model_id: model '{bob_model}' does not exist"),
    ("predict with an encoder", {"kind": "predict", "dataset_id": "{ds}", "model_id": "{encoder}"},
     "model_id: model '{encoder}' is an encoder (from pretraining) and predicts no target; a "
     "predict job applies a regressor or classifier (train one with a train job and "
     "base_model_id, or ask POST /predict for output 'embedding')"),
    # keys that do not apply to the kind
    ("predict with epochs",
     {"kind": "predict", "dataset_id": "{ds}", "model_id": "{regressor}", "config": {"epochs": 2}},
     "config.epochs: does not apply to a predict job; it takes only precision, seed and "
     "passes (everything else comes from the model)"),
    ("predict with a batch size",
     {"kind": "predict", "dataset_id": "{ds}", "model_id": "{regressor}",
      "config": {"batch_size": 8}},
     "config.batch_size: does not apply to a predict job; it takes only precision, seed and "
     "passes (everything else comes from the model)"),
    ("predict in bf16",
     {"kind": "predict", "dataset_id": "{ds}", "model_id": "{regressor}",
      "config": {"precision": "bf16"}},
     "config.precision: bf16 is a training precision; prediction runs in fp32 (within 1e-5 "
     "relative) or fp64 (exact)"),
    ("pretrain in fp64", {**PRETRAIN, "config": {"precision": "fp64"}},
     "config.precision: fp64 is prediction's exact mode; training runs in auto, fp32 or bf16"),
    ("pretrain with passes", {**PRETRAIN, "config": {"passes": 3}},
     "config.passes: is for predict jobs (rarefaction passes per sample)"),
    ("pretrain with class weights", {**PRETRAIN, "config": {"class_weights": "balanced"}},
     "config.class_weights: is for train jobs; a pretrain job has no target"),
    # the target column
    ("missing target column", train(target={"column": "height", "task": "regression"}),
     f"target.column: 'height' is not a metadata column of dataset '{{ds}}' (columns: {COLUMNS})"),
    ("no metadata", train(dataset_id="{no_meta}"),
     "target.column: dataset '{no_meta}' has no metadata; target column 'age' needs a "
     "metadata file"),
    ("regression on labels", train(target={"column": "site", "task": "regression"}),
     "target.column: 'site' is categorical; regression needs a numeric column (use task "
     "'classification' for labels)"),
    ("classification on a measurement", train(target={"column": "age", "task": "classification"}),
     "target.column: 'age' is numeric with 24 distinct values; classification needs labels: a "
     "categorical column, or integer codes with at most 50 distinct values (use task "
     "'regression' for a measurement)"),
    ("regression on an empty column", train(target={"column": "bmi", "task": "regression"}),
     "target.column: 'bmi' has no value for any of the 24 samples"),
    ("regression on a constant", train(target={"column": "batch", "task": "regression"}),
     "target.column: 'batch' has fewer than 2 distinct values"),
    ("classification on a constant", train(target={"column": "batch", "task": "classification"}),
     "target.column: 'batch' has 1 class(es); classification needs at least 2"),
    ("missing group column", train(config={"group_column": "donor"}),
     f"config.group_column: 'donor' is not a metadata column of dataset '{{ds}}' "
     f"(columns: {COLUMNS})"),
    # phylogeny
    ("pretrain without tree", {**PRETRAIN, "dataset_id": "{no_tree}"},
     "dataset_id: dataset '{no_tree}' has no phylogenetic tree or UniFrac distance matrix; the "
     "UniFrac loss (loss_weights.unifrac = 1) needs one: upload the dataset with a tree (or a "
     "distance matrix), or set config.loss_weights.unifrac to 0"),
    ("faith pd without tree",
     {**PRETRAIN, "dataset_id": "{dm_only}", "config": {"loss_weights": {"faith_pd": 0.5}}},
     "dataset_id: dataset '{dm_only}' has no phylogenetic tree; the Faith PD loss "
     "(loss_weights.faith_pd = 0.5) needs one: upload the dataset with a tree, or set "
     "config.loss_weights.faith_pd to 0"),
    ("train with unifrac, no tree",
     train(dataset_id="{no_tree}", config={"loss_weights": {"target": 1, "unifrac": 0.1}}),
     "dataset_id: dataset '{no_tree}' has no phylogenetic tree or UniFrac distance matrix; the "
     "UniFrac loss (loss_weights.unifrac = 0.1) needs one: upload the dataset with a tree (or a "
     "distance matrix), or set config.loss_weights.unifrac to 0"),
    # the run configuration aam_core would build
    ("heads do not divide", {**PRETRAIN, "config": {"embedding_dim": 30, "heads": 4}},
     "config.heads: embedding_dim (30) must be divisible by heads (4)"),
    ("no loss at all", {**PRETRAIN, "config": {"loss_weights": {"unifrac": 0}}},
     "config: at least one loss weight must be > 0"),
    ("target loss in pretraining", {**PRETRAIN, "config": {"loss_weights": {"target": 1}}},
     "config: loss_weights.target and loss_weights.count need a target head (a regressor or "
     "classifier); the pretraining model has none"),
    ("architecture differs from base",
     train(base_model_id="{encoder}", config={"embedding_dim": 64, "layers": 1}),
     "config.embedding_dim: architecture settings differ from the pretrained encoder: "
     "embedding_dim=64 "
     "(encoder has 32)"),
    ("preprocessing differs from base",
     train(base_model_id="{encoder}", config={"max_bp": 120}),
     "config.max_bp: preprocessing differs from base model '{encoder}': max_bp=120 (model has "
     "150); a "
     "fine-tuned model reads ASVs as its base was trained to (leave these unset)"),
    ("depth above every sample", {**PRETRAIN, "config": {"rarefaction_depth": 5000}},
     "config.rarefaction_depth: 5000 reads is deeper than every sample of dataset '{ds}' (the "
     "deepest has 1862): rarefaction would drop them all"),
    ("sequences longer than max_bp", {**PRETRAIN, "config": {"max_bp": 120}},
     "config.max_bp: dataset '{ds}' has sequences of up to 150 bp, longer than max_bp=120: set "
     "max_bp to at least 150, or truncate: true"),
    ("more GPUs than batches", {**PRETRAIN, "config": {"gpus": 2, "batch_size": 16}},
     "config.gpus: 2 GPUs x batch_size 16 = 32 samples per step, but dataset '{ds}' has at most "
     "19 training samples (24 samples, validation_fraction 0.2); every GPU needs a full batch: "
     "ask for fewer GPUs"),
    ("gpus above the contract's bound", {**PRETRAIN, "config": {"gpus": 65}},
     "config.gpus: Input should be less than or equal to 64"),
    # cross-validation
    ("cross-validation without target", {"kind": "cross_validate", "dataset_id": "{ds}"},
     "target: a cross_validate job needs a target: {'column': ..., 'task': ...}"),
    ("cv on a train job", train(cv={"folds": 3}),
     "cv: cv and refit are for cross_validate jobs"),
    ("refit on a train job", train(refit=True),
     "cv: cv and refit are for cross_validate jobs"),
    ("one fold", cross_validate(cv={"folds": 1}),
     "cv.folds: Input should be greater than or equal to 2"),
    ("more folds than subjects", cross_validate(cv={"folds": 7, "group_column": "subject"}),
     "cv.folds: 7 folds need at least 7 values of 'subject'; dataset '{ds}' has 6"),
    ("an unknown model", cross_validate(cv={"models": ["aam", "rf"]}),
     "cv.models: choose among aam, forest, linear, constant, depth, each once; got "
     "['aam', 'rf']"),
    ("a missing group column", cross_validate(cv={"group_column": "donor"}),
     f"cv.group_column: 'donor' is not a metadata column of dataset '{{ds}}' "
     f"(columns: {COLUMNS})"),
    ("the groups set in config", cross_validate(config={"group_column": "subject"}),
     "config.group_column: is set by the cross-validation (cv.group_column names the groups; "
     "every model chooses on one inner split of 20% of them): leave it out"),
    ("model auto", cross_validate(model="auto"),
     "model: 'auto' chooses on the validation split what a cross-validation compares fold by "
     "fold: choose 'aam' or 'ensemble'"),
    ("pretraining per fold without a tree",
     cross_validate(dataset_id="{no_tree}", cv={"pretrain": True}),
     "dataset_id: dataset '{no_tree}' has no phylogenetic tree or UniFrac distance matrix; the "
     "UniFrac loss (loss_weights.unifrac = 1) needs one: upload the dataset with a tree (or a "
     "distance matrix), or set config.loss_weights.unifrac to 0"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "detail"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_spec_that_cannot_run_is_refused(
    client: TestClient,
    dispatcher: RecordingDispatcher,
    world: World,
    body: dict[str, Any],
    detail: str,
) -> None:
    jobs_before, sent_before = job_count(client), len(dispatcher.sent)
    response = submit(client, world.fill(body))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == world.fill(detail)
    # nothing was stored or sent
    assert (job_count(client), len(dispatcher.sent)) == (jobs_before, sent_before)


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("pretrain", PRETRAIN),
    ("pretrain on a distance matrix", {**PRETRAIN, "dataset_id": "{dm_only}"}),
    ("pretrain without UniFrac, no tree",
     {**PRETRAIN, "dataset_id": "{no_tree}", "config": {"loss_weights": {"nucleotide": 1}}}),
    ("classification on labels", train(target={"column": "site", "task": "classification"})),
    ("classification on integer codes",
     train(target={"column": "visits", "task": "classification"})),
    ("grouped split", train(config={"group_column": "subject"})),
    ("never stop early (as aam train --patience 0)", train(config={"patience": 0})),
    ("an ensemble of AAM and a random forest", train(model="ensemble")),
    ("the better of AAM, the forest and their blend", train(model="auto")),
    ("fine-tune an encoder, frozen", train(base_model_id="{encoder}", freeze_base=True)),
    ("fine-tune with matching architecture",
     train(base_model_id="{regressor}", config={"embedding_dim": 32, "max_bp": 150})),
    ("truncated sequences", {**PRETRAIN, "config": {"max_bp": 120, "truncate": True}}),
    ("two GPUs, a full batch each", {**PRETRAIN, "config": {"gpus": 2, "batch_size": 8}}),
    ("predict", {"kind": "predict", "dataset_id": "{ds}", "model_id": "{regressor}",
                 "config": {"passes": 3, "seed": 1}}),
    ("cross-validate by subject",
     cross_validate(cv={"folds": 3, "group_column": "subject", "models": ["aam", "forest"]})),
    ("cross-validate the ensemble, then refit", cross_validate(model="ensemble", refit=True)),
    ("cross-validate a classifier, pretrained per fold",
     cross_validate(target={"column": "site", "task": "classification"},
                    cv={"pretrain": True, "repeats": 2}, config={"seed": 4})),
]  # fmt: skip


@pytest.mark.parametrize("body", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_a_spec_that_can_run_is_queued(
    client: TestClient, dispatcher: RecordingDispatcher, world: World, body: dict[str, Any]
) -> None:
    response = submit(client, world.fill(body))
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "queued"
    assert dispatcher.sent[-1] == (job["id"], body["kind"])


def test_a_base_model_whose_architecture_no_longer_loads(client: TestClient, world: World) -> None:
    services = services_of(client)
    digest = services.storage.put_bytes(b"not read: the stored config is checked first")
    with services.sessions() as session:
        broken = create_model(
            session, owner="alice", name="old import", kind="encoder",
            config={"model": {"sample": {"dim": 32, "heads": 3}}}, metrics={},
            n_parameters=1, checkpoint_sha256=digest, source="import",
        )  # fmt: skip
        session.commit()
    response = submit(client, world.fill(train(base_model_id=broken.id)))
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"base_model_id: model '{broken.id}' (encoder) has no loadable encoder architecture "
        "(sample.dim (32) must be divisible by sample.heads (3)); import its checkpoint again"
    )


def test_a_base_model_trained_deeper_than_every_sample(client: TestClient, world: World) -> None:
    services = services_of(client)
    digest = services.storage.put_bytes(b"the checkpoint is not read at submission")
    preprocessing = {"max_bp": 150, "token_limit": 256, "truncate": False,
                     "rarefaction_depth": 5000}  # fmt: skip
    with services.sessions() as session:
        deep = create_model(
            session, owner="alice", name="deep", kind="encoder",
            config={"model": AAMConfig.tiny().to_dict(), "preprocessing": preprocessing},
            metrics={}, n_parameters=1, checkpoint_sha256=digest, source="import",
        )  # fmt: skip
        session.commit()
    response = submit(client, world.fill(train(base_model_id=deep.id)))
    assert response.status_code == 422
    assert response.json()["detail"] == world.fill(
        f"base_model_id: model '{deep.id}' was trained at 5000 reads, deeper than every sample "
        "of dataset '{ds}' (the deepest has 1862): rarefaction would drop them all; set "
        "config.rarefaction_depth"
    )
    # an explicit depth the samples have wins over the base model's
    body = train(base_model_id=deep.id, config={"rarefaction_depth": 500})
    assert submit(client, world.fill(body)).status_code == 202


def test_a_model_whose_checkpoint_left_storage(client: TestClient, world: World) -> None:
    digest = "ab" * 32  # a row whose blob storage does not hold
    with services_of(client).sessions() as session:
        model = create_model(
            session, owner="alice", name="lost", kind="regressor", config={}, metrics={},
            n_parameters=1, checkpoint_sha256=digest, source="import",
        )  # fmt: skip
        session.commit()
    body = {"kind": "predict", "dataset_id": "{ds}", "model_id": model.id}
    response = submit(client, world.fill(body))
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"model_id: the checkpoint file of model '{model.id}' (abababababab...) is missing "
        "from artifact storage; import the model again"
    )


def test_admin_may_use_anyone_s_dataset_and_model(client: TestClient, world: World) -> None:
    body = {"kind": "predict", "dataset_id": "{bob_ds}", "model_id": "{regressor}"}
    response = submit(client, world.fill(body), ADMIN)
    assert response.status_code == 202, response.text
    # the job is the admin's; bob, whose dataset it reads, does not see it
    assert client.get(f"/jobs/{response.json()['id']}", headers=BOB).status_code == 404


def test_a_refusal_locates_its_field(client: TestClient, world: World) -> None:
    body = {**PRETRAIN, "config": {"embedding_dim": 30, "heads": 4}}
    problem = submit(client, world.fill(body)).json()
    assert problem["type"] == "/problems/invalid-config"
    assert problem["errors"] == [
        {
            "loc": ["body", "config", "heads"],
            "msg": "embedding_dim (30) must be divisible by heads (4)",
        }
    ]


def test_openapi_shows_every_run_setting_with_its_default_and_bounds(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["JobConfig"]
    fields = schema["properties"]
    assert set(fields) == {f.name for f in setting_fields()}
    assert schema["additionalProperties"] is False
    lr = fields["lr"]
    assert lr["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
    assert "default" not in lr  # unset: the preset's, as its description says
    assert "(default 1e-4; tiny 1e-3, and 3e-3 in pretraining)" in lr["description"]
    assert fields["preset"]["default"] == "auto"
    assert (fields["patience"]["default"], fields["patience"]["anyOf"][0]["minimum"]) == (10, 0)
    assert fields["patience"]["description"] == (
        "Epochs without improvement before stopping (0 = never). Jobs: pretrain, train, "
        "cross_validate."
    )
    # the job kinds each setting applies to, from its runs (the planner refuses it elsewhere)
    assert fields["passes"]["jobs"] == ["predict"]
    assert fields["class_weights"]["jobs"] == ["train", "cross_validate"]
    assert fields["group_column"]["jobs"] == ["pretrain", "train"]  # cv.group_column instead
    assert fields["seed"]["jobs"] == ["pretrain", "train", "cross_validate", "predict"]
