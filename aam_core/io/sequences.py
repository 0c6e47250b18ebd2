"""DNA for every feature: feature IDs that are sequences, or a representative-sequences file.

QIIME 2 tables name features by MD5 hashes, so their DNA comes from a FASTA file or a
FeatureData[Sequence] archive. A feature without DNA is always an error naming a few of them;
it never silently becomes padding.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

import skbio.io

from aam_core.io.archive import (
    DEFAULT_MAX_BYTES,
    SEQUENCE_MEMBER,
    SEQUENCE_TYPES,
    is_zip,
    read_member,
)
from aam_core.io.errors import (
    DuplicateIdError,
    EmptyInputError,
    SequenceError,
    UnreadableFileError,
    preview,
    short_reason,
)
from aam_core.io.types import FeatureTable

IUPAC_DNA = "ACGTRYSWKMBDHVN"
_DNA = re.compile(f"[{IUPAC_DNA}]+", re.IGNORECASE)


def is_dna(s: str) -> bool:
    """A non-empty string of A/C/G/T or IUPAC ambiguity codes, in any case (no gaps, no U)."""
    return _DNA.fullmatch(s) is not None


def read_sequences(
    path: str | Path, *, name: str | None = None, max_archive_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, str]:
    """Read FASTA or a FeatureData[Sequence] ``.qza`` into ``{id: UPPERCASE DNA}``."""
    file = name or Path(path).name
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise UnreadableFileError(f"cannot open the file ({exc.strerror})", file=file) from None
    if is_zip(head):
        raw = read_member(
            path, SEQUENCE_MEMBER, expected=SEQUENCE_TYPES, name=file, max_bytes=max_archive_bytes
        )
    else:
        raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableFileError("not a FASTA file: it is not UTF-8 text", file=file) from None
    return _parse_fasta(text, file)


def _parse_fasta(text: str, file: str) -> dict[str, str]:
    try:
        records = [
            (str(r.metadata["id"]), str(r).upper())
            for r in skbio.io.read(io.StringIO(text), format="fasta", verify=False)
        ]
    except Exception as exc:  # skbio's FASTAFormatError and its parsing errors
        reason = short_reason(exc, 300)
        raise UnreadableFileError(f"cannot parse as FASTA: {reason}", file=file) from None
    if not records:
        raise EmptyInputError("the file holds no sequences", file=file)
    unnamed = [i + 1 for i, (seq_id, _) in enumerate(records) if not seq_id]
    if unnamed:
        raise SequenceError(
            f"{len(unnamed)} records have an empty ID (records {preview(unnamed, quote=False)})",
            file=file,
        )
    dups = [i for i, n in Counter(seq_id for seq_id, _ in records).items() if n > 1]
    if dups:
        raise DuplicateIdError(
            f"{len(dups)} sequence IDs appear more than once: {preview(dups)}", file=file
        )
    bad = [seq_id for seq_id, seq in records if not is_dna(seq)]
    if bad:
        raise SequenceError(
            f"{len(bad)} of {len(records)} sequences are not DNA (A/C/G/T or IUPAC codes): "
            f"{preview(bad)}",
            file=file,
        )
    return dict(records)


def resolve_sequences(
    table: FeatureTable, sequences: dict[str, str] | None, *, file: str | None = None
) -> tuple[str, ...]:
    """One uppercase DNA string per table feature, in the table's feature order.

    Without ``sequences`` every feature ID must itself be DNA. With them, every feature ID
    must be a key (``file`` names the sequences file in messages). Two features may map to
    the same sequence.
    """
    ids = table.feature_ids
    if sequences is None:
        bad = [f for f in ids if not is_dna(f)]
        if bad:
            raise SequenceError(
                f"{len(bad)} of {len(ids)} feature IDs are not DNA sequences "
                f"(e.g. {preview(bad)}); QIIME 2 tables use hashes as IDs: upload the "
                "representative sequences (FASTA or FeatureData[Sequence] .qza)",
                file=table.source,
            )
        return tuple(f.upper() for f in ids)
    missing = [f for f in ids if f not in sequences]
    if missing:
        raise SequenceError(
            f"{len(missing)} of {len(ids)} table features have no representative sequence "
            f"(e.g. {preview(missing)})",
            file=file,
        )
    resolved = tuple(sequences[f].upper() for f in ids)
    bad = [f for f, s in zip(ids, resolved, strict=True) if not is_dna(s)]
    if bad:  # a dict built by hand rather than by read_sequences
        raise SequenceError(
            f"{len(bad)} of {len(ids)} table features map to sequences that are not DNA "
            f"(e.g. {preview(bad)})",
            file=file,
        )
    return resolved
