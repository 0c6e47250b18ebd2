"""Safe reading of QIIME 2 archives (``.qza``) without a qiime2 dependency.

A ``.qza`` is a zip holding ``<uuid>/metadata.yaml`` (with the semantic ``type``) and the
payload under ``<uuid>/data/``. Uploads are untrusted, so before anything is read the archive
is checked for unsafe member names (absolute paths, ``..``) and for zip bombs: the declared
uncompressed total must stay under a limit, no large member may claim an absurd compression
ratio, and while a member is decompressed the output is counted chunk by chunk and reading
stops as soon as it passes either the member's declared size or the limit (headers can lie).
"""

from __future__ import annotations

import copy
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Collection, Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from aam_core.io.errors import ArchiveError, short_reason

DEFAULT_MAX_BYTES = 4 * 1024**3  # declared or actual uncompressed content of one archive
MAX_RATIO = 200  # uncompressed : compressed, checked on members over RATIO_MIN_BYTES
RATIO_MIN_BYTES = 1024**2
METADATA_MAX_BYTES = 64 * 1024  # metadata.yaml is a few lines
_CHUNK = 1024**2

TABLE_TYPES = ("FeatureTable[Frequency]",)
TREE_TYPES = ("Phylogeny[Rooted]",)
SEQUENCE_TYPES = ("FeatureData[Sequence]",)
TABLE_MEMBER = "data/feature-table.biom"
TREE_MEMBER = "data/tree.nwk"
SEQUENCE_MEMBER = "data/dna-sequences.fasta"

# What to do instead, for the types users most often upload by mistake: (wanted, found).
_HINTS = {
    (TABLE_TYPES[0], "FeatureTable[RelativeFrequency]"): (
        "counts must be reads, not relative frequencies"
    ),
    (TREE_TYPES[0], "Phylogeny[Unrooted]"): "root it first (e.g. `qiime phylogeny midpoint-root`)",
}
_DRIVE = re.compile(r"^[A-Za-z]:")
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


@dataclass(frozen=True)
class ArchiveInfo:
    root: str  # the archive's top-level directory (its UUID)
    semantic_type: str
    format: str | None


def is_zip(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a zip (a ``.qza``), judged by content."""
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def format_bytes(n: int) -> str:
    """``4831838208 -> '4.5 GiB'``, for messages."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _is_unsafe(member: str) -> bool:
    parts = re.split(r"[/\\]", member)
    return member.startswith(("/", "\\")) or bool(_DRIVE.match(member)) or ".." in parts


def _check_members(zf: zipfile.ZipFile, file: str, max_bytes: int) -> None:
    infos = zf.infolist()
    for info in infos:
        if _is_unsafe(info.filename):
            raise ArchiveError(
                f"unsafe member name {info.filename!r} (absolute paths and '..' are not "
                "allowed); refusing the archive",
                file=file,
            )
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise ArchiveError(
            f"the archive declares {format_bytes(total)} ({total} bytes) of uncompressed "
            f"content, over the {format_bytes(max_bytes)} limit; refusing a likely zip bomb",
            file=file,
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_MIN_BYTES and ratio > MAX_RATIO:
            raise ArchiveError(
                f"member {info.filename!r} claims a compression ratio of {ratio:.0f}:1 "
                f"(over {MAX_RATIO}:1); refusing a likely zip bomb",
                file=file,
            )


def _copy_limited(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    write: Callable[[bytes], object],
    *,
    file: str,
    max_bytes: int,
) -> int:
    """Decompress ``info`` chunk by chunk into ``write``, stopping past the declared size or
    ``max_bytes``. Returns the number of bytes written."""
    if info.compress_type not in _METHODS:
        raise ArchiveError(
            f"member {info.filename!r} uses zip compression method {info.compress_type}; "
            "only stored and deflated members are read (QIIME 2 writes deflate)",
            file=file,
        )
    cap = min(info.file_size, max_bytes)
    written = 0
    with closing(_chunks(zf, info, declare=cap + 2 * _CHUNK, file=file)) as chunks:
        for chunk in chunks:
            written += len(chunk)
            if written > cap:
                bound = (
                    f"the {info.file_size} bytes its header declares"
                    if info.file_size <= max_bytes
                    else f"the {format_bytes(max_bytes)} limit"
                )
                raise ArchiveError(
                    f"member {info.filename!r} decompresses to more than {bound}; "
                    "refusing a likely zip bomb",
                    file=file,
                )
            write(chunk)
    if written != info.file_size:
        raise ArchiveError(
            f"member {info.filename!r} holds {written} bytes but its header declares "
            f"{info.file_size}; the archive is corrupt",
            file=file,
        )
    return written


def _chunks(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, *, declare: int, file: str
) -> Generator[bytes, None, None]:
    """The member's decompressed bytes, one chunk at a time, as if it declared ``declare``.

    zipfile silently cuts its output at the declared size and then inflates the rest of the
    stream only to fail the CRC check. Declaring more than the caller's cap plus one chunk
    lets the caller see the excess and stop; deflate is inflated in bounded steps (zipfile's
    bzip2 and lzma paths are not, hence only stored and deflated members are accepted).
    """
    unbounded = copy.copy(info)
    unbounded.file_size = declare
    try:
        with zf.open(unbounded) as src:
            while chunk := src.read(_CHUNK):
                yield chunk
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError) as exc:
        raise ArchiveError(
            f"member {info.filename!r} is corrupt or encrypted ({short_reason(exc)}); "
            "re-export the archive",
            file=file,
        ) from None


def _read_metadata(zf: zipfile.ZipFile, file: str, max_bytes: int) -> ArchiveInfo:
    tops = [i for i in zf.infolist() if len(PurePosixPath(i.filename).parts) == 2]
    found = [i for i in tops if PurePosixPath(i.filename).name == "metadata.yaml"]
    if not found:
        raise ArchiveError("not a QIIME 2 archive: no <uuid>/metadata.yaml member", file=file)
    if len(found) > 1:
        names = ", ".join(repr(i.filename) for i in found)
        raise ArchiveError(f"not a QIIME 2 archive: several metadata.yaml ({names})", file=file)
    info = found[0]
    if info.file_size > METADATA_MAX_BYTES:
        raise ArchiveError(f"{info.filename!r} is too large for a metadata.yaml", file=file)
    chunks: list[bytes] = []
    _copy_limited(zf, info, chunks.append, file=file, max_bytes=max_bytes)
    try:
        meta = yaml.safe_load(b"".join(chunks).decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArchiveError(
            f"{info.filename!r} is not valid YAML ({short_reason(exc)})", file=file
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("type"), str):
        raise ArchiveError(f"{info.filename!r} has no semantic 'type'", file=file)
    fmt = meta.get("format")
    return ArchiveInfo(
        root=PurePosixPath(info.filename).parts[0],
        semantic_type=meta["type"].strip(),
        format=fmt if isinstance(fmt, str) else None,
    )


@contextmanager
def _open(
    path: str | Path, file: str, max_bytes: int
) -> Iterator[tuple[zipfile.ZipFile, ArchiveInfo]]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise ArchiveError(f"not a valid zip archive ({short_reason(exc)})", file=file) from None
    except NotImplementedError as exc:  # e.g. an archive split over several disks
        raise ArchiveError(f"unsupported zip archive ({short_reason(exc)})", file=file) from None
    except OSError as exc:
        raise ArchiveError(f"cannot open the archive ({short_reason(exc)})", file=file) from None
    with zf:
        _check_members(zf, file, max_bytes)
        yield zf, _read_metadata(zf, file, max_bytes)


def read_archive_info(
    path: str | Path, *, name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> ArchiveInfo:
    """Check an archive's safety and return its root, semantic type and format."""
    with _open(path, name or Path(path).name, max_bytes) as (_, info):
        return info


@contextmanager
def _member(
    path: str | Path, member: str, expected: Collection[str], name: str | None, max_bytes: int
) -> Iterator[tuple[zipfile.ZipFile, zipfile.ZipInfo, str]]:
    file = name or Path(path).name
    with _open(path, file, max_bytes) as (zf, info):
        found = info.semantic_type
        if found not in expected:
            wanted = " or ".join(expected)
            hint = next((h for (w, f), h in _HINTS.items() if w in expected and f == found), None)
            raise ArchiveError(
                f"expected a {wanted} archive, found {found}" + (f"; {hint}" if hint else ""),
                file=file,
            )
        target = f"{info.root}/{member}"
        try:
            zinfo = zf.getinfo(target)
        except KeyError:
            raise ArchiveError(
                f"the {info.semantic_type} archive has no {member} member", file=file
            ) from None
        yield zf, zinfo, file


def read_member(
    path: str | Path,
    member: str,
    *,
    expected: Collection[str],
    name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """The bytes of ``<uuid>/<member>`` from an archive whose type is one of ``expected``."""
    chunks: list[bytes] = []
    with _member(path, member, expected, name, max_bytes) as (zf, zinfo, file):
        _copy_limited(zf, zinfo, chunks.append, file=file, max_bytes=max_bytes)
    return b"".join(chunks)


@contextmanager
def extract_member(
    path: str | Path,
    member: str,
    *,
    expected: Collection[str],
    name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[Path]:
    """Extract ``<uuid>/<member>`` to a temporary file, removed when the context exits."""
    tmpdir = Path(tempfile.mkdtemp(prefix="aam-qza-"))
    try:
        out = tmpdir / PurePosixPath(member).name  # a fixed name, never the member's path
        with (
            _member(path, member, expected, name, max_bytes) as (zf, zinfo, file),
            out.open("wb") as dst,
        ):
            _copy_limited(zf, zinfo, dst.write, file=file, max_bytes=max_bytes)
        yield out
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
