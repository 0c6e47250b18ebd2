"""``python -m app.copy_store --to URL [--from URL]``: copy every blob of one artifact store
into another and check the copy, e.g. to move a ``file://`` store into an ``s3://`` bucket.

The source defaults to the store the settings name (``AAM_STORAGE_URL``, or the data
directory's ``artifacts/``); ``AAM_S3_ENDPOINT_URL`` and the ``AWS_*`` variables reach any
``s3://`` store. Stop the service first: blobs written during the copy may be missed.

Every blob of the source that the target lacks is copied (the source's copy is hashed first; a
blob whose content does not match its digest is not copied). Then every blob of the source and
every digest the database references (dataset files, model checkpoints and plots, job outputs)
is read back from the target, not through any cache, and hashed. Running the command again
copies only what is missing and checks everything again. Nothing is ever deleted, from either
store. Exit status: 0 when the target holds every object intact, 1 naming each object that is
missing or corrupt (or when a store or the database fails), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import select

from app.settings import Settings
from app.store import make_engine, make_session_factory, normalize_url
from app.store.artifacts import (
    CHUNK,
    ArtifactStore,
    LocalArtifactStore,
    check_sha256,
    file_sha256,
    stream_sha256,
)
from app.store.objects import S3ArtifactStore, StorageUnavailable
from app.store.storage import store_for_url
from app.store.tables import Dataset, Job, Model

References = dict[str, list[str]]  # digest -> the rows that need it, in words


class UsageError(ValueError):
    """Arguments or settings that name no usable pair of stores."""


@dataclass
class Report:
    objects: int = 0
    copied: int = 0
    present: int = 0
    verified: int = 0
    bytes_copied: int = 0
    bytes_verified: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"copy_store: {self.objects} objects: {self.copied} copied ({self.bytes_copied} "
            f"bytes), {self.present} already present, {self.verified} verified "
            f"({self.bytes_verified} bytes), {len(self.problems)} problems"
        )


# -- what the database references --------------------------------------------------------------


def _add(found: References, digest: object, what: str) -> None:
    if isinstance(digest, Mapping):  # {"sha256": ..., ...} as dataset files hold them
        digest = digest.get("sha256")
    try:
        found.setdefault(check_sha256(str(digest)), []).append(what)
    except ValueError:  # not a digest (no file): nothing to copy
        return


def database_references(database_url: str) -> References:
    """Every digest a row references (the places app.api.ingest.blob_referenced looks)."""
    engine = make_engine(database_url)
    found: References = {}
    try:
        with make_session_factory(engine)() as session:
            for dataset in session.scalars(select(Dataset).order_by(Dataset.id)):
                for role, entry in sorted(dataset.files.items()):
                    name = entry.get("name") if isinstance(entry, Mapping) else None
                    label = f" ({name})" if name else ""
                    _add(found, entry, f"dataset {dataset.id!r} file {role!r}{label}")
            for model in session.scalars(select(Model).order_by(Model.id)):
                _add(found, model.checkpoint_sha256, f"model {model.id!r} checkpoint")
                for plot, digest in sorted((model.plots or {}).items()):
                    _add(found, digest, f"model {model.id!r} plot {plot!r}")
            for job in session.scalars(select(Job).order_by(Job.id)):
                for output, digest in sorted((job.outputs or {}).items()):
                    _add(found, digest, f"job {job.id!r} output {output!r}")
    finally:
        engine.dispose()
    return found


# -- stores ------------------------------------------------------------------------------------


def blob_keys(store: ArtifactStore) -> list[str]:
    if isinstance(store, LocalArtifactStore | S3ArtifactStore):
        return store.keys()
    raise UsageError(f"cannot list the blobs of a {type(store).__name__}")


def where(store: ArtifactStore, sha256: str) -> str:
    """An object's address, as an operator would look for it."""
    if isinstance(store, S3ArtifactStore):
        return store.object_url(sha256)
    if isinstance(store, LocalArtifactStore):
        return str(store.root / sha256[:2] / sha256[2:4] / sha256)
    return sha256


def _identity(store: ArtifactStore) -> tuple[str, ...]:
    if isinstance(store, S3ArtifactStore):
        return ("s3", store.bucket, store.prefix)
    if isinstance(store, LocalArtifactStore):
        return ("file", str(store.root.resolve()))
    return (repr(store),)


def copy_blob(source: ArtifactStore, target: ArtifactStore, sha256: str) -> str | None:
    """Copy one blob whose source copy has its digest; the digest the source's content has
    when it does not (nothing is copied then)."""
    if isinstance(source, LocalArtifactStore):
        path = source.path(sha256)
        actual, _ = file_sha256(path)
        if actual != sha256:
            return actual
        target.put_file(path)
        return None
    temp = target.new_temp_path()
    try:
        digest = hashlib.sha256()
        with closing(source.open(sha256)) as body, temp.open("wb") as out:
            while chunk := body.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            return digest.hexdigest()
        target.ingest(temp, sha256)
        return None
    finally:
        temp.unlink(missing_ok=True)


# -- the copy ----------------------------------------------------------------------------------


def copy_store(
    source: ArtifactStore,
    target: ArtifactStore,
    references: References,
    say: Callable[[str], None] = print,
) -> Report:
    """Copy what the target lacks, then hash every object in the target (see the module
    docstring); the problems name each object and the rows that reference it."""
    in_source = set(blob_keys(source))
    digests = sorted(in_source | set(references))
    report = Report(objects=len(digests))
    width = len(str(len(digests)))
    for number, sha256 in enumerate(digests, start=1):
        step = f"[{number:>{width}}/{len(digests)}]"
        refs = references.get(sha256)
        used = f" (referenced by {', '.join(refs)})" if refs else ""

        def fail(problem: str, step: str = step) -> None:
            report.problems.append(problem)
            say(f"{step} {problem}")

        if target.exists(sha256):
            action = "already present"
        elif sha256 not in in_source:
            fail(f"missing from the target and the source: {sha256}{used}")
            continue
        else:
            try:
                wrong = copy_blob(source, target, sha256)
            except KeyError:
                fail(f"gone from the source while copying: {where(source, sha256)}{used}")
                continue
            if wrong is not None:
                where_from = where(source, sha256)
                fail(f"corrupt in the source: {where_from} has SHA-256 {wrong}{used}; not copied")
                continue
            action = "copied"
        try:
            actual, size = stream_sha256(target.open(sha256))
        except KeyError:
            fail(f"missing from the target after copying: {where(target, sha256)}{used}")
            continue
        if actual != sha256:
            fail(
                f"corrupt in the target: {where(target, sha256)} has SHA-256 {actual}{used}; "
                "remove it from the target and run again"
            )
            continue
        if action == "copied":
            report.copied += 1
            report.bytes_copied += size
        else:
            report.present += 1
        report.verified += 1
        report.bytes_verified += size
        say(f"{step} {action}, verified {sha256} ({size} bytes)")
    return report


def _store(url: str, settings: Settings, role: str) -> ArtifactStore:
    parts = urlsplit(url)
    if role == "source" and parts.scheme == "file" and not Path(unquote(parts.path)).is_dir():
        raise UsageError(f"the source {url} is not a directory")
    try:
        return store_for_url(
            url,
            cache_dir=settings.cache_dir,
            cache_bytes=settings.cache_bytes,
            endpoint_url=settings.s3_endpoint_url,
        )
    except ValueError as exc:
        raise UsageError(f"--{'from' if role == 'source' else 'to'}: {exc}") from None


def parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.copy_store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--to", required=True, metavar="URL", help="s3://bucket/prefix or file:///path"
    )
    parser.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="the store to copy (default: AAM_STORAGE_URL, or the data directory's artifacts/)",
    )
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings()
        source_url = args.source or settings.resolved_storage_url
        source = _store(source_url, settings, "source")
        target = _store(args.to, settings, "target")
        if _identity(source) == _identity(target):
            raise UsageError(f"the source and the target are the same store ({args.to})")
    except (UsageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"copy_store: from {source_url} to {args.to}", flush=True)
    usable, detail = target.ping()
    if not usable:
        print(f"error: the target cannot be written: {detail}", file=sys.stderr)
        return 1
    try:
        references = database_references(settings.resolved_database_url)
    except Exception as exc:  # any driver error: say which database and why
        url = normalize_url(settings.resolved_database_url).render_as_string(hide_password=True)
        print(
            f"error: reading the database {url} failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    try:
        report = copy_store(source, target, references, lambda line: print(line, flush=True))
    except (StorageUnavailable, OSError) as exc:
        print(f"error: {exc}; nothing was deleted, run the command again", file=sys.stderr)
        return 1
    print(report.summary(), flush=True)
    if report.problems:
        print(
            f"error: the target is incomplete: {len(report.problems)} of {report.objects} "
            "objects missing or corrupt (keep AAM_STORAGE_URL on the source until it is fixed):",
            file=sys.stderr,
        )
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"copy_store: the target holds every object; set AAM_STORAGE_URL={args.to}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
