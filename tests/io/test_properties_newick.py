"""Property tests of the Newick reader (issue 15): any text either parses into the tree it
spells (tip names and branch lengths as written) or raises a UserError naming the file.

The oracle renders a random tree (nesting, names that need quoting, lengths that are missing,
negative, NaN, infinite, huge or not numbers, duplicate tips) and states from the tree alone
whether UniFrac can use it. Examples are derandomized and the database is off.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from skbio import TreeNode

from aam_core.errors import UserError
from aam_core.io import InputError, TreeError, UnreadableFileError, read_tree

T = TypeVar("T")
PLAIN = re.compile(r"[A-Za-z0-9_.\-]+")  # names written without quotes


@dataclass
class Node:
    name: str = ""  # "" writes no name
    length: str | None = None  # the text after ':', None writes no ':'
    children: list[Node] = field(default_factory=list)


def props(max_examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the module's examples: Hypothesis refuses function-scoped fixtures
    such as tmp_path (its function_scoped_fixture health check)."""
    return tmp_path_factory.mktemp("newick")


def outcome(read: Callable[[], T], file: str) -> T | UserError:
    """What ``read`` returns, or the UserError it raises after checking that the error is one
    line naming ``file`` (as in test_properties.py). Anything else fails the test."""
    try:
        return read()
    except UserError as error:
        assert isinstance(error, InputError), repr(error)
        assert error.file == file and str(error).startswith(f"{file}: "), str(error)
        assert error.message.strip() == error.message != "", repr(error.message)
        assert "\n" not in str(error) and "\r" not in str(error), repr(str(error))
        return error


def newick(node: Node) -> str:
    text = ""
    if node.children:
        text = "(" + ",".join(newick(child) for child in node.children) + ")"
    if node.name:
        quoted = "'" + node.name.replace("'", "''") + "'"
        text += node.name if PLAIN.fullmatch(node.name) else quoted
    return text + ("" if node.length is None else f":{node.length}")


def length_value(text: str | None) -> float | None:
    """The number a length spells (Python's float(), as scikit-bio reads it), or None."""
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def tips(node: Node) -> list[Node]:
    return [node] if not node.children else [t for c in node.children for t in tips(c)]


def below_root(node: Node) -> list[Node]:
    return [n for c in node.children for n in (c, *below_root(c))]


def usable(root: Node) -> bool:
    """Can UniFrac use the tree: UTF-8 text, rooted (at most two children at the root), at
    least one tip, every branch below the root with a finite length >= 0 (the root's may be any
    number), tips named uniquely."""
    nodes, names = below_root(root), [t.name for t in tips(root)]
    lengths = [length_value(n.length) for n in nodes]
    return (
        not any("\ud800" <= c <= "\udfff" for n in (root, *nodes) for c in n.name)
        and 0 < len(root.children) <= 2
        and (root.length is None or length_value(root.length) is not None)
        and all(v is not None and math.isfinite(v) and v >= 0 for v in lengths)
        and all(names)
        and len(set(names)) == len(names)
    )


NAMES = st.one_of(
    st.sampled_from(["a", "b", "c", "a_1", "x.y", "ACGT", "", "it's", "a b", "a;b"]),
    # scikit-bio takes a quoted name that is a substring of "(,):", or ";", for structure (its
    # parser tests `token not in "(,):"` and `token == ";"`); the tree is then refused, with a
    # misleading reason
    st.text(st.characters(exclude_characters="\r\n\x00[]"), min_size=1, max_size=4).filter(
        lambda name: name not in "(,):" and name != ";"
    ),
)
LENGTHS = st.one_of(
    st.none(),
    st.floats(0, 100).map(repr),
    st.integers(-3, 10**20).map(str),
    st.sampled_from(["0", "-0", "-1.5", "nan", "inf", "-inf", "1e999", "1e-400", "", "x"]),
)
TREES = st.recursive(
    st.builds(Node, NAMES, LENGTHS),
    lambda kids: st.builds(Node, NAMES, LENGTHS, st.lists(kids, min_size=1, max_size=3)),
    max_leaves=8,
)


@props(400)
@given(root=TREES, end=st.sampled_from([";", ";\n", ";\n\n", " ;", ";x", ";(b:1);", "", ";;"]))
@example(  # a NaN length was accepted
    root=Node(children=[Node("a", "nan"), Node("b", "1")]), end=";"
)
@example(  # so was an infinite one
    root=Node(children=[Node("a", "1e999"), Node("b", "1")]), end=";"
)
@example(  # a second tree was silently ignored
    root=Node(children=[Node("a", "1"), Node("b", "1")]), end=";(c:1,d:1);"
)
def test_newick_trees_parse_as_written_or_raise(scratch: Path, root: Node, end: str) -> None:
    path = scratch / "tree.nwk"
    text = newick(root) + end
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))  # a lone one: not UTF-8
    result = outcome(lambda: read_tree(path), path.name)
    if not (usable(root) and end.strip() == ";"):
        assert isinstance(result, UserError), f"refused input was accepted: {text!r}"
        return
    assert not isinstance(result, UserError), (str(result), text)
    assert isinstance(result, TreeNode)
    written = {t.name: length_value(t.length) for t in tips(root)}
    assert {t.name: t.length for t in result.tips()} == written


@props(300)
@given(text=st.text(st.sampled_from("(),:;'[] _ab0.1-e\n") | st.characters(), max_size=40))
def test_any_text_is_a_usable_tree_or_a_user_error(scratch: Path, text: str) -> None:
    path = scratch / "any.nwk"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    result = outcome(lambda: read_tree(path), path.name)
    if not isinstance(result, UserError):
        names = [t.name for t in result.tips()]
        assert all(names) and len(set(names)) == len(names)
        lengths = [n.length for n in result.traverse(include_self=False)]
        assert all(v is not None and math.isfinite(v) and v >= 0 for v in lengths)


def test_deep_nesting_parses_without_recursion(tmp_path: Path) -> None:
    path = tmp_path / "deep.nwk"
    path.write_text("(" * 5000 + "a:1" + "):1" * 5000 + ";")
    tree = read_tree(path)
    assert [t.name for t in tree.tips()] == ["a"]
    assert tree.find("a").distance(tree) == 5000.0  # 4999 inner branches and the tip's


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "((a:nan,b:1):1,c:1);",
            "1 of 4 branches have a length that is NaN or infinite (e.g. 'a'); UniFrac needs a "
            "finite length on every branch",
        ),
        (
            "((a:1,b:inf):1e999,c:1);",
            "2 of 4 branches have a length that is NaN or infinite (e.g. '<unnamed>', 'b'); "
            "UniFrac needs a finite length on every branch",
        ),
    ],
)
def test_non_finite_branch_lengths_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.nwk"
    path.write_text(text)
    with pytest.raises(TreeError) as info:
        read_tree(path)
    assert str(info.value) == f"t.nwk: {message}"


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("((a:1,b:1):1,c:1);((a:1,b:1):1,c:1);\n", "'((a:1,b:1):1,c:1);'"),
        ("(a:1,b:2);extra", "'extra'"),
        ("(a:1,b:2);;", "';'"),
    ],
)
def test_text_after_the_tree_is_refused(tmp_path: Path, text: str, rest: str) -> None:
    path = tmp_path / "t.nwk"
    path.write_text(text)
    with pytest.raises(UnreadableFileError) as info:
        read_tree(path)
    assert str(info.value) == (
        f"t.nwk: the file goes on after the tree's closing ';' ({rest}); a Newick file must "
        "hold one tree"
    )


def test_semicolons_in_quoted_names_and_comments_are_not_the_end(tmp_path: Path) -> None:
    path = tmp_path / "t.nwk"
    path.write_text("(('a;b':1,b[x;y]:2):1,'c''s':3);[trailing comment]\n")
    tree = read_tree(path)
    assert {t.name: t.length for t in tree.tips()} == {"a;b": 1.0, "b": 2.0, "c's": 3.0}
