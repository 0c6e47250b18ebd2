from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aam_core.io.files import atomic_write, write_json, write_jsonl


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_text_and_binary_writes_replace_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    with atomic_write(path) as fh:
        fh.write("naïve\n")  # text mode writes UTF-8 whatever the locale
    assert path.read_bytes() == b"na\xc3\xafve\n"
    with atomic_write(path, "wb") as fh:
        fh.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_an_error_mid_write_keeps_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "order.json"
    path.write_text('{"epoch": 1}')
    with pytest.raises(RuntimeError, match="crash"), atomic_write(path) as fh:
        fh.write('{"epoch": 2, "par')
        raise RuntimeError("crash")
    assert path.read_text() == '{"epoch": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["order.json"]


def test_a_new_file_gets_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    old_mask = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "a.txt") as fh:
            fh.write("x")
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640  # 0o666 & ~0o027


def test_fsync_runs_once_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(b"old")
    seen: list[bytes] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        seen.append(path.read_bytes())  # what a reader sees while the new bytes are synced
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with atomic_write(path, "wb") as fh:
        fh.write(b"new")
    with atomic_write(path, "wb", fsync=False) as fh:
        fh.write(b"newer")
    assert seen == []
    with atomic_write(path, "wb", fsync=True) as fh:
        fh.write(b"newest")
    assert seen == [b"newer"] and path.read_bytes() == b"newest"


def test_only_whole_file_write_modes() -> None:
    refused = pytest.raises(ValueError, match="mode must be 'w' or 'wb', got 'a'")
    with refused, atomic_write("x.txt", "a"):  # type: ignore[arg-type]
        pass


def test_write_json_converts_numpy_and_nan(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")
    write_json(
        path,
        {
            "mae": np.float32(1.5),
            "n": np.int64(7),
            "r2": float("nan"),
            "bounds": np.array([1.0, np.inf, 3.0]),
            "ids": ("a", "b"),
            3: Path("x/y.png"),
        },
    )
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "mae": 1.5,
        "n": 7,
        "r2": None,
        "bounds": [1.0, None, 3.0],
        "ids": ["a", "b"],
        "3": "x/y.png",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temp file left


def test_write_json_failure_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"epoch": 1})
    with pytest.raises(TypeError):
        write_json(path, {"epoch": object()})
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_jsonl_writes_nan_and_inf_as_null_and_replaces_the_log(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    records = [
        {"epoch": 1, "split": "train", "loss": np.float64(0.5), "r2": float("-inf")},
        {"epoch": 1, "split": "validation", "loss": 0.75, "r2": float("nan")},
        {"epoch": 2, "split": "train", "loss": float("inf"), "mae": np.float32(2.25)},
    ]
    write_jsonl(path, records)
    assert path.read_text().splitlines() == [
        '{"epoch": 1, "split": "train", "loss": 0.5, "r2": null}',
        '{"epoch": 1, "split": "validation", "loss": 0.75, "r2": null}',
        '{"epoch": 2, "split": "train", "loss": null, "mae": 2.25}',
    ]
    assert lines(path)[1] == {
        "epoch": 1,
        "split": "validation",
        "loss": 0.75,
        "r2": None,
    }
    write_jsonl(path, records[:1])  # the whole log is replaced, not appended to
    assert lines(path) == [{"epoch": 1, "split": "train", "loss": 0.5, "r2": None}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_jsonl_failure_mid_write_keeps_the_old_log(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, [{"epoch": 1, "loss": 0.5}])
    with pytest.raises(TypeError):  # the second record cannot be serialised
        write_jsonl(path, [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": object()}])
    assert path.read_text() == '{"epoch": 1, "loss": 0.5}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
