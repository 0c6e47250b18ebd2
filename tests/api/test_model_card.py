"""``GET /models/{id}/card`` on the real app: the card of the stored checkpoint, Markdown by
default and JSON on request, 404 for a model that is not the caller's, and the same card after
the checkpoint is downloaded and imported into another service."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aam_core.checkpoint import load_checkpoint
from aam_core.io import Inputs, file_hashes
from aam_core.model_card import card_markdown, model_card
from aam_core.plan import TargetSpec
from aam_core.train.run import run_train
from app.api.card_schemas import ModelCard
from app.main import create_app
from tests.api.conftest import ADMIN, ALICE, BOB, MakeSettings, RecordingDispatcher
from tests.conftest import train_plan

MARKDOWN = "text/markdown; charset=utf-8"


@pytest.fixture(scope="module")
def trained(
    study_inputs: Inputs, study_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The best checkpoint of a tiny age regressor (seed 5)."""
    plan = train_plan(
        study_inputs, TargetSpec("age", "regression"), epochs=1, token_limit=12, seed=5
    )
    out = tmp_path_factory.mktemp("card-api") / "age"
    result = run_train(study_inputs, plan, out, dataset_sha256=file_hashes(study_files))
    assert result.best_checkpoint is not None
    return result.best_checkpoint


def imported(client: TestClient, path: Path, headers: dict[str, str] = ALICE) -> str:
    files = {"checkpoint": (path.name, path.read_bytes())}
    response = client.post("/models", headers=headers, files=files)
    assert response.status_code == 201, response.text
    model_id: str = response.json()["id"]
    return model_id


def expected_card(path: Path) -> dict[str, Any]:
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return model_card(load_checkpoint(path), checkpoint_sha256=sha256)


def test_markdown_by_default_json_on_request(client: TestClient, trained: Path) -> None:
    model_id = imported(client, trained)
    url = f"/models/{model_id}/card"
    card = expected_card(trained)
    assert card["metrics"]["model"] == load_checkpoint(trained).metrics["best"]["validation"]
    assert card["training"]["seed"] == 5

    def answer(accept: str | None, **params: str) -> tuple[str, Any]:
        headers = ALICE if accept is None else {**ALICE, "Accept": accept}
        response = client.get(url, headers=headers, params=params)
        assert response.status_code == 200, response.text
        assert response.headers["vary"] == "Accept"
        kind = response.headers["content-type"]
        return kind, response.json() if kind == "application/json" else response.text

    markdown = (MARKDOWN, card_markdown(card))
    as_json = ("application/json", card)
    assert answer(None) == markdown  # the contract's default (docs/api.md, Models)
    assert answer("*/*") == markdown
    assert answer("text/markdown") == markdown
    assert answer("application/json") == as_json
    assert answer("text/html,application/xhtml+xml,*/*;q=0.8") == markdown  # a browser
    assert answer("application/json;q=0.5, text/markdown") == markdown
    assert answer("text/markdown;q=0.2, application/json") == as_json
    assert answer("application/*") == as_json
    assert answer("application/json", format="markdown") == markdown
    assert answer("text/markdown", format="json") == as_json
    response = client.get(url, headers=ALICE)
    assert response.headers["content-disposition"] == f'inline; filename="{model_id}_card.md"'
    assert "| seed | 5 |" in response.text
    bad = client.get(url, headers=ALICE, params={"format": "xml"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["detail"] == "query.format: Input should be 'markdown' or 'json'"


def test_the_model_row_carries_the_depth_baseline_and_verdict(
    client: TestClient, trained: Path
) -> None:
    """The run's depth-only model and its verdict reach GET /models/{id} from the checkpoint."""
    metrics = load_checkpoint(trained).metrics
    body = client.get(f"/models/{imported(client, trained)}", headers=ALICE).json()
    depth = metrics["baselines"]["depth"]
    assert body["metrics"]["baselines"]["depth"] == depth
    assert set(depth["validation"]) == {"mae", "rmse", "r2", "pearson_r"}
    verdict = body["metrics"]["depth_confound"]
    assert verdict == metrics["depth_confound"]
    assert verdict["depth"] == depth["validation"]["r2"] and verdict["confounded"] is False
    assert verdict["model"] == metrics["best"]["validation"]["r2"]


def test_another_owner_s_or_an_unknown_model_is_a_404_problem(
    client: TestClient, trained: Path
) -> None:
    model_id = imported(client, trained, headers=BOB)
    for headers, model in ((ALICE, model_id), (ALICE, "mdl_0000000000000000")):
        response = client.get(f"/models/{model}/card", headers=headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert (problem["status"], problem["detail"]) == (404, f"model {model!r} does not exist")
    assert client.get(f"/models/{model_id}/card").status_code == 401
    admin = client.get(f"/models/{model_id}/card", headers={**ADMIN, "Accept": "application/json"})
    assert admin.json() == expected_card(trained)


def test_download_and_import_elsewhere_keeps_the_card(
    client: TestClient,
    trained: Path,
    study_files: dict[str, Path],
    make_settings: MakeSettings,
    tmp_path: Path,
) -> None:
    here = imported(client, trained)
    download = client.get(f"/models/{here}/checkpoint", headers=ALICE)
    assert download.status_code == 200
    copy = tmp_path / "downloaded.pt"
    copy.write_bytes(download.content)
    settings = make_settings(data_dir=tmp_path / "elsewhere")
    answers = []
    with TestClient(create_app(settings, dispatcher=RecordingDispatcher())) as elsewhere:
        there = imported(elsewhere, copy, headers=BOB)
        assert there != here
        for accept in ("application/json", "text/markdown"):
            ours = client.get(f"/models/{here}/card", headers={**ALICE, "Accept": accept})
            theirs = elsewhere.get(f"/models/{there}/card", headers={**BOB, "Accept": accept})
            assert (ours.status_code, theirs.status_code) == (200, 200)
            assert ours.content == theirs.content
            answers.append(ours)
    card = answers[0].json()
    assert card["model"]["checkpoint_sha256"] == hashlib.sha256(download.content).hexdigest()
    assert card["data"]["sha256"] == {
        role: hashlib.sha256(path.read_bytes()).hexdigest() for role, path in study_files.items()
    }
    assert answers[1].text == card_markdown(card)


def test_the_card_matches_its_documented_schema(client: TestClient, trained: Path) -> None:
    card = expected_card(trained)
    assert ModelCard.model_validate(card).model_dump(mode="json") == card
    assert card["metrics"]["depth_confound"]["metric"] == "r2"  # a verdict, validated too
    old = {**card, "metrics": {k: v for k, v in card["metrics"].items() if k != "depth_confound"}}
    old["metrics"]["baselines"] = {"random_forest": None, "constant": None}
    assert ModelCard.model_validate(old).metrics.depth_confound is None  # an older card.json
    assert card["cross_validation"] is None
    assert ModelCard.model_validate(old).cross_validation is None
    # a cross_validate job's refit: its checkpoint carries the cross-validated figures
    cv = {
        "folds": 5, "repeats": 2, "n_samples": 80, "n_groups": 20, "group_column": "subject",
        "primary_metric": "mae",
        "models": {
            "aam": {"per_sample": {"mae": 3.5, "rmse": 4.25, "r2": None},
                    "subject_weighted": {"mae": 3.75, "rmse": 4.5, "r2": 0.25}},
            "depth": {"per_sample": {"mae": 6.0, "rmse": 7.0, "r2": 0.0},
                      "subject_weighted": {"mae": 6.5, "rmse": 7.5, "r2": -0.125}},
        },
        "differences": {"aam-depth": {"metric": "mae", "mean": -2.5, "low": -3.0,
                                      "high": -2.0, "better": "aam"}},
        "depth_confound": {"flagged": False, "message": None},
    }  # fmt: skip
    refit = {**card, "cross_validation": cv}
    assert ModelCard.model_validate(refit).model_dump(mode="json") == refit
    operation = client.get("/openapi.json").json()["paths"]["/models/{model_id}/card"]["get"]
    assert set(operation["responses"]) == {"200", "401", "404", "422"}
    ok = operation["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/ModelCard"}
    assert ok["text/markdown"]["schema"] == {"type": "string"}
    for status in ("401", "404", "422"):
        assert set(operation["responses"][status]["content"]) == {"application/problem+json"}
