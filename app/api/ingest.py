"""From an upload to stored files: validating a dataset's files with aam_core.io (the client's
file names in every message, never a path on this server), moving uploads into content-addressed
storage, and removing blobs that no row references any more.

Blob reference counting is done by looking at the rows, so adding a reference (ingest, then
insert and commit) and dropping one (check the rows, then delete the blob) must not interleave.
Both run inside :func:`lock_blobs`: the database's write lock on SQLite, plus a transaction-scoped
advisory lock on PostgreSQL. A blob is deleted only after the row that referenced it is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from aam_core.data.rarefy import choose_depth
from aam_core.io import ROLES, ArchiveError, UnreadableFileError, load_files, summarize
from aam_core.io.archive import is_zip
from app.api.errors import ApiError
from app.api.uploads import Upload, UploadedFile
from app.store import ArtifactStore, Job, Model, begin_write, checkpoint_referenced
from app.store import file_referenced as dataset_file_referenced
from app.store.tables import NAME_LENGTH

log = logging.getLogger("aam.api")

DATASET_FILES = ROLES
ARCHIVE_ROLES = frozenset({"table", "tree", "sequences"})  # roles a QIIME 2 .qza may fill
BLOB_LOCK_KEY = 0x41414D_B10B  # pg_advisory_xact_lock key of blob reference changes


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def check_form(
    upload: Upload, *, required: str, files: Collection[str], fields: Collection[str]
) -> UploadedFile:
    """Refuse text parts a route does not take (unknown file parts were refused while
    streaming) and return the required file."""
    for key in sorted(upload.fields):
        if key in files:
            raise ApiError(
                422,
                f"{key!r} must be sent as a file (a form part with a filename), not as text",
                kind="validation-error",
            )
        if key not in fields:
            raise ApiError(
                422,
                f"unexpected form field {key!r}; expected the text field(s) {_quoted(fields)} "
                f"and the file(s) {_quoted(files)}",
                kind="validation-error",
            )
    if required not in upload.files:
        raise ApiError(422, f"the file {required!r} is required", kind="validation-error")
    return upload.files[required]


def form_name(upload: Upload, default: str) -> str:
    """The optional ``name`` field, stripped; ``default`` when absent or blank."""
    name = upload.fields.get("name", "").strip()
    if len(name) > NAME_LENGTH:
        raise ApiError(
            422,
            f"name: at most {NAME_LENGTH} characters, got {len(name)}",
            kind="validation-error",
        )
    return name or default


def _is_archive(upload: UploadedFile) -> bool:
    with upload.path.open("rb") as handle:
        return is_zip(handle.read(4))


def check_archive_roles(files: Mapping[str, UploadedFile]) -> None:
    """A ``.qza`` is recognised by content or by name: one named ``.qza`` that is no zip, or an
    archive where only text is accepted, gets a message that says so instead of a parse error."""
    for role, upload in files.items():
        archive = _is_archive(upload)
        named = upload.filename.lower().endswith(".qza")
        if role in ARCHIVE_ROLES:
            if named and not archive:
                raise ArchiveError(
                    "named like a QIIME 2 archive (.qza) but not a zip file; upload the .qza "
                    "exactly as QIIME 2 wrote it",
                    file=upload.filename,
                )
        elif archive or named:
            raise UnreadableFileError(
                f"{role} must be a tab-separated text file, not a QIIME 2 archive (.qza); "
                "export it with `qiime tools export`",
                file=upload.filename,
            )


def summarize_upload(upload: Upload) -> dict[str, Any]:
    """Validate the uploaded dataset files together and return the POST /datasets summary.

    CPU and disk work: call it off the event loop. Raises aam_core's ``InputError`` (whose
    message names the client's file) for the first problem found.
    """
    files = upload.files
    check_archive_roles(files)
    inputs = load_files(
        {role: f.path for role, f in files.items()},
        names={role: f.filename for role, f in files.items()},
    )
    choice = choose_depth(inputs.table.depths())
    return summarize(
        inputs.table,
        inputs.sequences,
        tree=inputs.tree,
        metadata=inputs.metadata,
        sha256={role: f.sha256 for role, f in files.items()},
        default_depth=(choice.depth, choice.note),
    )


def lock_blobs(session: Session) -> None:
    """Open the session's transaction as the one writer of blob references (see the module
    docstring); the lock ends with the transaction."""
    begin_write(session)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BLOB_LOCK_KEY})


def store_uploads(storage: ArtifactStore, files: Mapping[str, UploadedFile]) -> dict[str, Any]:
    """Move uploaded files into storage (consuming the temporary files); role ->
    ``{"sha256", "name", "size"}`` as the dataset row keeps it. Call under :func:`lock_blobs`."""
    stored: dict[str, Any] = {}
    for role, upload in files.items():
        sha256, size = storage.ingest(upload.path, upload.sha256)
        stored[role] = {"sha256": sha256, "name": upload.filename, "size": size}
    return stored


def _in_json_values(values: Iterable[Mapping[str, Any] | None], sha256: str) -> bool:
    for mapping in values:
        for value in (mapping or {}).values():
            found = value.get("sha256") if isinstance(value, Mapping) else value
            if found == sha256:
                return True
    return False


def blob_referenced(session: Session, sha256: str) -> bool:
    """Whether any row still needs the blob: a dataset file, a model checkpoint or plot, or a
    job output (a train job may list the checkpoint its model was registered from).
    :func:`app.copy_store.database_references` lists the same places."""
    return (
        dataset_file_referenced(session, sha256)
        or checkpoint_referenced(session, sha256)
        or _in_json_values(session.scalars(select(Model.plots)), sha256)
        or _in_json_values(session.scalars(select(Job.outputs)), sha256)
    )


def release_blobs(session: Session, storage: ArtifactStore, digests: Iterable[str]) -> list[str]:
    """Delete the blobs among ``digests`` that no committed row references (in a transaction of
    its own, under :func:`lock_blobs`); the digests removed. The caller has committed the
    removal of its row already, so a failure here leaves an orphan blob, never a lost one."""
    removed: list[str] = []
    session.commit()  # end any transaction the caller left open: the lock needs a fresh one
    lock_blobs(session)
    try:
        for sha256 in sorted(set(digests)):
            if not blob_referenced(session, sha256) and storage.delete(sha256):
                removed.append(sha256)
    finally:
        session.rollback()  # nothing was written; this ends the transaction and its lock
    if removed:
        log.info("removed %d unreferenced blobs", len(removed))
    return removed
