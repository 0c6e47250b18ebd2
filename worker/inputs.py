"""A job's inputs, from the database and artifact storage, checked and turned into a
:class:`~worker.order.JobOrder`.

Every stored file is re-hashed before use: a blob changed on disk (a bad disk, a hand edit)
fails the job with a message naming the file, instead of an obscure parse error later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from aam_core.plan.planner import KIND_ROLES
from app.contracts import JobKind, JobSpec, given_config
from app.store import ArtifactStore, get_dataset, get_model
from app.store.artifacts import file_sha256
from app.store.blob_cache import CacheTooSmall
from app.store.objects import CorruptArtifact, StorageUnavailable
from app.store.tables import Job
from worker.devices import Placement
from worker.errors import JobFailure
from worker.order import JobOrder


def stored_file(storage: ArtifactStore, sha256: str, what: str) -> Path:
    """The blob's path, after checking that its content still has its digest."""
    try:
        path = storage.path(sha256)
    except KeyError:
        raise JobFailure(
            "MissingArtifact",
            f"{what} (SHA-256 {sha256}) is missing from artifact storage; upload it again",
        ) from None
    except CorruptArtifact as exc:  # an object store's copy, checked on download
        raise JobFailure(
            "CorruptArtifact", f"{what} is corrupt in artifact storage: {exc}; upload it again"
        ) from None
    except (StorageUnavailable, CacheTooSmall) as exc:
        raise JobFailure("StorageUnavailable", f"{what} could not be read: {exc}") from None
    actual, _ = file_sha256(path)
    if actual != sha256:
        raise JobFailure(
            "CorruptArtifact",
            f"{what} is corrupt in artifact storage: its content has SHA-256 {actual}, "
            f"expected {sha256}; upload it again",
        )
    return path


def _dataset_files(
    session: Session, storage: ArtifactStore, job: Job, kind: JobKind
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    dataset = get_dataset(session, job.dataset_id, None)
    if dataset is None:
        raise JobFailure("MissingDataset", f"dataset {job.dataset_id} no longer exists")
    files, names, digests = {}, {}, {}
    for role in KIND_ROLES[kind.value]:
        entry: dict[str, Any] | None = dataset.files.get(role)
        if not entry:
            continue
        name = str(entry.get("name") or role)
        what = f"the {role} file {name!r} of dataset {dataset.id}"
        files[role] = str(stored_file(storage, str(entry["sha256"]), what))
        names[role] = name
        digests[role] = str(entry["sha256"])
    if "table" not in files:
        raise JobFailure("MissingArtifact", f"dataset {dataset.id} has no table file")
    return files, names, digests


def _model_checkpoint(session: Session, storage: ArtifactStore, model_id: str) -> str:
    model = get_model(session, model_id, None)
    if model is None:
        raise JobFailure("MissingModel", f"model {model_id} no longer exists")
    return str(stored_file(storage, model.checkpoint_sha256, f"the checkpoint of model {model_id}"))


def build_order(
    session: Session,
    storage: ArtifactStore,
    job: Job,
    spec: JobSpec,
    placement: Placement,
    run_dir: Path,
) -> JobOrder:
    files, names, digests = _dataset_files(session, storage, job, spec.kind)
    values: dict[str, Any] = {
        "job_id": job.id,
        "kind": spec.kind.value,
        "out_dir": str(run_dir),
        "device": placement.device,
        "nproc": placement.nproc,
        "files": files,
        "names": names,
        "dataset_sha256": digests,
        "config": given_config(spec.config),
    }
    if spec.kind == JobKind.predict:
        assert spec.model_id is not None  # JobSpec's rule
        values["model_checkpoint"] = _model_checkpoint(session, storage, spec.model_id)
        values["model_name"] = spec.model_id
        return JobOrder(**values)
    if spec.target is not None:
        values["target"] = {"column": spec.target.column, "task": spec.target.task}
    if spec.base_model_id is not None:
        values["base_checkpoint"] = _model_checkpoint(session, storage, spec.base_model_id)
        values["model_name"] = spec.base_model_id
    values["freeze_base"] = spec.freeze_base
    values["model_kind"] = spec.model
    if spec.kind == JobKind.cross_validate:  # it resumes from the folds it finished
        values["cv"] = None if spec.cv is None else spec.cv.model_dump()
        values["refit"] = bool(spec.refit)
        return JobOrder(**values)
    # A requeued job continues from the checkpoint its earlier attempt left.
    values["resume"] = (run_dir / "checkpoints" / "last.pt").is_file()
    return JobOrder(**values)
