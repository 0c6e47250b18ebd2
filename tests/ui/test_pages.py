"""The dashboard over HTTP (TestClient): sign in and out, CSRF on every form post, the session
cookie on the API's GETs only, owner scoping, and problems shown as messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from app.contracts import JobKind
from app.main import create_app
from app.session_cookie import CSRF_COOKIE, SESSION_COOKIE
from app.settings import ApiKey, Settings

ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef00"
KEYS = [ApiKey(owner="alice", key=ALICE_KEY), ApiKey(owner="bob", key=BOB_KEY)]  # type: ignore[arg-type]


@dataclass
class Recorder:
    sent: list[tuple[str, JobKind]] = field(default_factory=list)

    def send_job(self, job_id: str, kind: JobKind) -> None:
        self.sent.append((job_id, kind))

    def ping(self) -> tuple[bool, str]:
        return True, "test"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = SyntheticSpec(
        n_samples=12, n_asvs=30, asvs_per_sample=8, depth_range=(500, 2000), seed=3
    )
    return write_study(generate(spec), tmp_path_factory.mktemp("ui-study"))


def make_client(tmp_path: Path, keys: list[ApiKey]) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", api_keys=keys)
    return TestClient(create_app(settings, dispatcher=Recorder()), follow_redirects=False)


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, KEYS) as client:
        yield client


@pytest.fixture
def open_client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path, []) as client:
        yield client


def token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def sign_in(client: TestClient, key: str) -> None:
    page = client.get("/ui/login")
    answer = client.post("/ui/login", data={"key": key, "csrf_token": token(page.text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/jobs", answer.text


def upload(client: TestClient, study: dict[str, Path]) -> str:
    page = client.get("/ui/datasets")
    files = {role: (p.name, p.read_bytes()) for role, p in study.items()}
    answer = client.post("/ui/datasets", files=files, data={"csrf_token": token(page.text)})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"].rsplit("/", 1)[1]


def test_pages_redirect_to_sign_in_and_a_wrong_key_gets_a_message(keyed: TestClient) -> None:
    assert keyed.get("/ui/jobs").headers["location"] == "/ui/login"
    page = keyed.get("/ui/login")
    assert page.status_code == 200 and CSRF_COOKIE in page.cookies
    wrong = keyed.post(
        "/ui/login", data={"key": "not-a-key-at-all-000", "csrf_token": token(page.text)}
    )
    assert wrong.status_code == 401 and "invalid API key" in wrong.text
    assert SESSION_COOKIE not in keyed.cookies


def test_sign_in_sets_a_strict_httponly_cookie_without_the_key(keyed: TestClient) -> None:
    page = keyed.get("/ui/login")
    answer = keyed.post("/ui/login", data={"key": ALICE_KEY, "csrf_token": token(page.text)})
    header = answer.headers["set-cookie"]
    assert header.startswith(f"{SESSION_COOKIE}=") and ALICE_KEY not in header
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/;" in header
    assert keyed.get("/ui/jobs").status_code == 200
    # sign out clears it
    out = keyed.post("/ui/logout", data={"csrf_token": token(keyed.get("/ui/jobs").text)})
    assert out.status_code == 303 and SESSION_COOKIE not in keyed.cookies
    assert keyed.get("/ui/jobs").headers["location"] == "/ui/login"


def test_form_posts_need_the_csrf_token(keyed: TestClient) -> None:
    page = keyed.get("/ui/login")
    assert keyed.post("/ui/login", data={"key": ALICE_KEY}).status_code == 403
    assert keyed.post("/ui/login", data={"key": ALICE_KEY, "csrf_token": "x"}).status_code == 403
    sign_in(keyed, ALICE_KEY)
    stale = token(page.text)  # the pre-session token: a session has its own
    answer = keyed.post("/ui/jobs/new", data={"kind": "pretrain", "csrf_token": stale})
    assert answer.status_code == 403 and "reload the page" in answer.text
    good = token(keyed.get("/ui/jobs").text)
    other_site = keyed.post(
        "/ui/logout", data={"csrf_token": good}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403


def test_the_session_cookie_authenticates_api_reads_only(keyed: TestClient) -> None:
    assert keyed.get("/jobs").status_code == 401
    sign_in(keyed, ALICE_KEY)
    assert keyed.get("/jobs").status_code == 200
    assert keyed.get("/datasets").status_code == 200
    body = {"kind": "pretrain", "dataset_id": "ds_x"}
    assert keyed.post("/jobs", json=body).status_code == 401  # a write needs the key
    assert keyed.delete("/datasets/ds_x").status_code == 401


def test_owners_see_only_their_own_datasets(
    tmp_path: Path, study: dict[str, Path], keyed: TestClient
) -> None:
    sign_in(keyed, ALICE_KEY)
    dataset = upload(keyed, study)
    page = keyed.get(f"/ui/datasets/{dataset}")
    assert page.status_code == 200
    summary = keyed.get(f"/datasets/{dataset}").json()  # the API's summary, via the cookie
    assert summary["n_samples"] == 12
    depth = summary["sample_depth"]
    assert f"min {depth['min']} · median {depth['median']} · max {depth['max']}" in page.text
    assert '<dd id="n-samples">12</dd>' in page.text
    assert dataset in keyed.get("/ui/datasets").text
    with make_client(tmp_path, KEYS) as bob:
        sign_in(bob, BOB_KEY)
        assert dataset not in bob.get("/ui/datasets").text
        assert bob.get(f"/ui/datasets/{dataset}").status_code == 404
        assert bob.get(f"/datasets/{dataset}").status_code == 404  # the API via the cookie


def test_a_job_problem_is_shown_next_to_its_field(
    study: dict[str, Path], open_client: TestClient
) -> None:
    dataset = upload(open_client, study)
    csrf = token(open_client.get("/ui/jobs/new").text)
    form = {
        "kind": "pretrain",
        "dataset_id": dataset,
        "config": '{"epochs": 0}',
        "csrf_token": csrf,
    }
    answer = open_client.post("/ui/jobs/new", data=form)
    assert answer.status_code == 422
    assert re.search(r'id="error-config">config\.epochs', answer.text), answer.text
    bad_json = open_client.post("/ui/jobs/new", data={**form, "config": "{"})
    assert bad_json.status_code == 422 and 'id="error-config">config: not JSON' in bad_json.text
    ok = open_client.post("/ui/jobs/new", data={**form, "config": '{"preset": "tiny"}'})
    assert ok.status_code == 303
    job_page = open_client.get(ok.headers["location"])
    assert job_page.status_code == 200 and "queued" in job_page.text


def test_a_dataset_in_use_is_not_deleted(study: dict[str, Path], open_client: TestClient) -> None:
    dataset = upload(open_client, study)
    csrf = token(open_client.get("/ui/jobs/new").text)
    form = {"kind": "pretrain", "dataset_id": dataset, "csrf_token": csrf}
    assert open_client.post("/ui/jobs/new", data=form).status_code == 303
    refused = open_client.post(f"/ui/datasets/{dataset}/delete", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "used by a queued or running job" in refused.text
