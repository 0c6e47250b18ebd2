"""Rooted phylogenies: Newick or a QIIME 2 Phylogeny[Rooted] archive, read with scikit-bio.

UniFrac needs a rooted tree with a length on every branch and tips named by feature ID.
Extra tips are normal (one tree often serves several tables) and are not an error.
"""

from __future__ import annotations

import io
import math
import reprlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from skbio import TreeNode

from aam_core.io.archive import DEFAULT_MAX_BYTES, TREE_MEMBER, TREE_TYPES, is_zip, read_member
from aam_core.io.errors import (
    DuplicateIdError,
    EmptyInputError,
    TreeError,
    UnreadableFileError,
    preview,
    short_reason,
)

_UNNAMED = "<unnamed>"


def read_tree(
    path: str | Path, *, name: str | None = None, max_archive_bytes: int = DEFAULT_MAX_BYTES
) -> TreeNode:
    """Read and validate a rooted tree (``name`` is the file name shown in messages)."""
    file = name or Path(path).name
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableFileError(f"cannot open the file ({exc.strerror})", file=file) from None
    if is_zip(raw[:4]):
        raw = read_member(
            path, TREE_MEMBER, expected=TREE_TYPES, name=file, max_bytes=max_archive_bytes
        )
    try:
        text = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise UnreadableFileError("not a Newick file: it is not UTF-8 text", file=file) from None
    if not text:
        raise UnreadableFileError("the file is empty", file=file)
    try:
        tree = TreeNode.read(
            io.StringIO(text), format="newick", verify=False, convert_underscores=False
        )
    except Exception as exc:  # skbio's NewickFormatError and the parser's own errors
        reason = short_reason(exc, 300)
        raise UnreadableFileError(f"cannot parse as Newick: {reason}", file=file) from None
    rest = _after_tree(text)
    if rest:  # scikit-bio read the first tree and ignored the rest
        raise UnreadableFileError(
            f"the file goes on after the tree's closing ';' ({reprlib.repr(rest)}); a Newick "
            "file must hold one tree",
            file=file,
        )
    validate_tree(tree, file=file)
    return tree


def validate_tree(tree: TreeNode, *, file: str | None = None) -> None:
    """Rooted, with tips, branch lengths below the root and unique tip names."""
    tips = list(tree.tips())
    if not tips:
        raise EmptyInputError("the tree has no tips", file=file)
    if len(tree.children) > 2:
        raise TreeError(
            f"tree is not rooted: its root has {len(tree.children)} children; "
            "root it first (e.g. `qiime phylogeny midpoint-root`)",
            file=file,
        )
    nodes = list(tree.traverse(include_self=False))
    no_length = [n.name or _UNNAMED for n in nodes if n.length is None]
    if no_length:
        raise TreeError(
            f"{len(no_length)} of {len(nodes)} branches have no length "
            f"(e.g. {preview(no_length)}); UniFrac needs a length on every branch",
            file=file,
        )
    non_finite = [n.name or _UNNAMED for n in nodes if not math.isfinite(n.length)]
    if non_finite:  # 'nan', 'inf' and '1e999' all parse as floats
        raise TreeError(
            f"{len(non_finite)} of {len(nodes)} branches have a length that is NaN or infinite "
            f"(e.g. {preview(non_finite)}); UniFrac needs a finite length on every branch",
            file=file,
        )
    negative = [n.name or _UNNAMED for n in nodes if n.length < 0]
    if negative:
        raise TreeError(
            f"{len(negative)} of {len(nodes)} branches have a negative length "
            f"(e.g. {preview(negative)})",
            file=file,
        )
    unnamed = sum(1 for t in tips if not t.name)
    if unnamed:
        raise TreeError(
            f"{unnamed} of {len(tips)} tips have no name; every tip must be named by a feature ID",
            file=file,
        )
    dups = [t for t, n in Counter(t.name for t in tips).items() if n > 1]
    if dups:
        raise DuplicateIdError(
            f"{len(dups)} tip names appear more than once: {preview(dups)}", file=file
        )


def _after_tree(text: str) -> str:
    """What follows the tree's closing ';', outside quoted names and [comments], stripped
    (``text`` is stripped)."""
    if text.endswith(";") and text.count(";") == 1:  # the usual file: no need to scan it
        return ""
    quoted, depth, ended = False, 0, False
    rest: list[str] = []
    for char in text:
        if depth or (char == "[" and not quoted):  # comments nest; quotes do not count in them
            depth += {"[": 1, "]": -1}.get(char, 0)
        elif ended:
            rest.append(char)
        elif char == "'":
            quoted = not quoted  # '' inside a quoted name toggles twice
        elif char == ";" and not quoted:
            ended = True
    return "".join(rest).strip()


def missing_tips(tree: TreeNode, feature_ids: Iterable[str]) -> list[str]:
    """Feature IDs (in the given order) that name no tip of ``tree``."""
    tips = {t.name for t in tree.tips()}
    return [f for f in feature_ids if f not in tips]


def require_tree_coverage(
    tree: TreeNode, feature_ids: Iterable[str], *, file: str | None = None
) -> None:
    """Raise TreeError unless every feature is a tip (extra tips are fine)."""
    ids = list(feature_ids)
    missing = missing_tips(tree, ids)
    if missing:
        raise TreeError(
            f"{len(missing)} of {len(ids)} table features are missing from the tree "
            f"(e.g. {preview(missing)})",
            file=file,
        )
