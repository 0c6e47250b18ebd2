from __future__ import annotations

from pathlib import Path

import pytest

from aam_core.io import (
    ArchiveError,
    DuplicateIdError,
    EmptyInputError,
    TreeError,
    UnreadableFileError,
    missing_tips,
    read_tree,
    require_tree_coverage,
)
from aam_core.io.archive import TREE_MEMBER


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.nwk"
    path.write_text(text)
    return path


def test_reads_a_rooted_tree_keeping_underscores(tmp_path: Path) -> None:
    tree = read_tree(_write(tmp_path, "((a_1:0.5,b:1.5)x:0.25,'c d':2);\n"))
    assert sorted(t.name for t in tree.tips()) == ["a_1", "b", "c d"]
    assert tree.find("a_1").length == 0.5
    assert tree.find("x").length == 0.25
    assert tree.find("a_1").distance(tree.find("c d")) == pytest.approx(2.75)


def test_reads_a_rooted_phylogeny_archive(make_qza) -> None:
    path = make_qza("Phylogeny[Rooted]", {TREE_MEMBER: b"((a:1,b:2):1,c:3);"})
    tree = read_tree(path)
    assert sorted(t.name for t in tree.tips()) == ["a", "b", "c"]


def test_unrooted_archive_is_refused_with_a_hint(make_qza) -> None:
    path = make_qza("Phylogeny[Unrooted]", {TREE_MEMBER: b"(a:1,b:2,c:3);"})
    with pytest.raises(ArchiveError) as info:
        read_tree(path, name="fasttree.qza")
    assert str(info.value) == (
        "fasttree.qza: expected a Phylogeny[Rooted] archive, found Phylogeny[Unrooted]; root it "
        "first (e.g. `qiime phylogeny midpoint-root`)"
    )


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (
            "(a:1,b:2,c:3);",
            TreeError,
            "t.nwk: tree is not rooted: its root has 3 children; root it first "
            "(e.g. `qiime phylogeny midpoint-root`)",
        ),
        (
            "((a:1,b)x,(c,d:1):1);",
            TreeError,
            "t.nwk: 3 of 6 branches have no length (e.g. 'x', 'b', 'c'); UniFrac needs a "
            "length on every branch",
        ),
        (
            "((a:1,b:-0.5)x:1,c:1);",
            TreeError,
            "t.nwk: 1 of 4 branches have a negative length (e.g. 'b')",
        ),
        (
            "((a:1,b:1):1,(a:1,c:1):1);",
            DuplicateIdError,
            "t.nwk: 1 tip names appear more than once: 'a'",
        ),
        (
            "((a:1,:1):1,c:1);",
            TreeError,
            "t.nwk: 1 of 3 tips have no name; every tip must be named by a feature ID",
        ),
        ("root;", EmptyInputError, "t.nwk: the tree has no tips"),
        ("   \n", UnreadableFileError, "t.nwk: the file is empty"),
        (
            "((a:1,b:1",
            UnreadableFileError,
            "t.nwk: cannot parse as Newick: Could not parse file as newick. `(Parenthesis)`, "
            "`'single-quotes'`, `[comments]` may be unbalanced, or tree may be missing its root.",
        ),
        (
            "(a:1,b:x);",
            UnreadableFileError,
            "t.nwk: cannot parse as Newick: Could not read length as numeric type: x.",
        ),
    ],
)
def test_invalid_trees(tmp_path: Path, text: str, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        read_tree(_write(tmp_path, text))
    assert str(info.value) == message


def test_root_length_may_be_missing_but_unnamed_nodes_are_named_in_messages(
    tmp_path: Path,
) -> None:
    assert read_tree(_write(tmp_path, "((a:1,b:1):1,c:1);")).length is None
    with pytest.raises(TreeError) as info:
        read_tree(_write(tmp_path, "((a:1,b:1),c:1);"))
    assert str(info.value) == (
        "t.nwk: 1 of 4 branches have no length (e.g. '<unnamed>'); UniFrac needs a length on "
        "every branch"
    )


def test_coverage_extra_tips_are_fine_missing_features_are_not(tmp_path: Path) -> None:
    tree = read_tree(_write(tmp_path, "((a:1,b:1):1,(c:1,extra:1):1);"))
    features = ["a", "z1", "b", "z2", "c"]
    assert missing_tips(tree, features) == ["z1", "z2"]
    require_tree_coverage(tree, ["c", "a", "b"], file="t.nwk")  # "extra" is simply unused
    with pytest.raises(TreeError) as info:
        require_tree_coverage(tree, features, file="t.nwk")
    assert str(info.value) == (
        "t.nwk: 2 of 5 table features are missing from the tree (e.g. 'z1', 'z2')"
    )
