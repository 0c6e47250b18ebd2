from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import pytest
import torch

from aam_core.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    build_model,
    checkpoint_from_model,
    load_checkpoint,
    load_encoder,
    save_checkpoint,
)
from aam_core.model import AAMConfig, SequenceEncoder, SequenceRegressor, TargetConfig
from tests.conftest import BatchFactory

BAD = Path(__file__).parent / "data" / "bad"
PRE = {"max_bp": 150, "token_limit": 256, "truncate": False, "rarefaction_depth": 2000}


def _classifier() -> SequenceRegressor:
    torch.manual_seed(1)
    config = AAMConfig.tiny().with_target(TargetConfig(task="classification", out_dim=3))
    return SequenceRegressor(config).eval()


def test_round_trip_rebuilds_an_identical_model(make_batch: BatchFactory, tmp_path: Path) -> None:
    model = _classifier()
    model.target_norm.mean.fill_(3.0)  # buffers travel too
    target = {"column": "site", "task": "classification", "classes": ["a", "b", "c"]}
    path = save_checkpoint(
        checkpoint_from_model(model, preprocessing=PRE, target=target), tmp_path / "m.pt"
    )
    loaded = load_checkpoint(path)
    assert (loaded.kind, loaded.classes, loaded.format_version) == (
        "classifier",
        ["a", "b", "c"],
        1,
    )
    rebuilt = build_model(loaded).eval()
    batch = make_batch([0, 1, 2, 3])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(batch).target, model(batch).target, atol=0, rtol=0)
    assert torch.equal(rebuilt.target_norm.mean, model.target_norm.mean)


def test_save_is_atomic(tmp_path: Path) -> None:
    model = SequenceEncoder(AAMConfig.tiny())
    path = save_checkpoint(checkpoint_from_model(model, preprocessing=PRE), tmp_path / "e.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["e.pt"]  # no temporary file left
    assert load_checkpoint(path).kind == "encoder"


def test_failed_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    torch.manual_seed(0)
    first = SequenceEncoder(AAMConfig.tiny())
    save_checkpoint(checkpoint_from_model(first, preprocessing=PRE), path)

    def write_half_then_fail(obj: object, handle: BinaryIO) -> None:
        handle.write(b"PK\x03\x04 the first bytes of a zip archive")
        raise OSError(28, "No space left on device")

    torch.manual_seed(1)
    second = SequenceEncoder(AAMConfig.tiny())
    monkeypatch.setattr(torch, "save", write_half_then_fail)
    with pytest.raises(OSError, match="No space left on device"):
        save_checkpoint(checkpoint_from_model(second, preprocessing=PRE), path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the temporary file is gone
    key = "nucleotide.token.weight"  # differs between the two models: the test can tell them apart
    assert not torch.equal(first.state_dict()[key], second.state_dict()[key])
    loaded = load_checkpoint(path).state_dict
    for key, value in first.state_dict().items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("garbage.pt", r"^garbage\.pt: not a readable checkpoint \(truncated or corrupt file: "),
        ("truncated.pt", r"^truncated\.pt: not a readable checkpoint \(truncated or corrupt file"),
        (
            "foreign.pt",
            r"^foreign\.pt: not an AAM checkpoint \(a PyTorch file without the 'aam-checkpoint' "
            r"header; only checkpoints written by aam can be used\)$",
        ),
        (
            "pickle_exploit.pt",
            r"^pickle_exploit\.pt: refused: the file holds Python objects that would run code "
            r"when loaded \(posix\.system\); AAM checkpoints hold only tensors and plain values$",
        ),
    ],
)
def test_bad_checkpoints_are_refused_with_a_clear_message(
    name: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where the exploit would write its marker
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(BAD / name)
    assert not (tmp_path / "aam_pickle_exploit_ran").exists()


def test_future_version_and_inconsistent_kind(tmp_path: Path) -> None:
    model = SequenceEncoder(AAMConfig.tiny())
    checkpoint = checkpoint_from_model(model, preprocessing=PRE)
    future = save_checkpoint(
        checkpoint.__class__(**{**checkpoint.__dict__, "format_version": FORMAT_VERSION + 1}),
        tmp_path / "future.pt",
    )
    with pytest.raises(
        CheckpointError, match=r"format version 2 is newer than this aam supports \(1\)"
    ):
        load_checkpoint(future)
    wrong = save_checkpoint(
        checkpoint.__class__(**{**checkpoint.__dict__, "kind": "regressor"}), tmp_path / "w.pt"
    )
    with pytest.raises(CheckpointError, match="kind 'regressor' does not match its config"):
        load_checkpoint(wrong)


def test_encoder_loads_into_a_regressor_and_reports_keys(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = SequenceEncoder(AAMConfig.tiny())
    path = save_checkpoint(checkpoint_from_model(encoder, preprocessing=PRE), tmp_path / "e.pt")
    regressor = SequenceRegressor(AAMConfig.tiny().with_target(TargetConfig()))
    report = load_encoder(regressor, load_checkpoint(path))
    assert len(report.matched) == len(encoder.state_dict()) and not report.skipped
    for key, value in encoder.state_dict().items():
        assert torch.equal(regressor.base.state_dict()[key], value)
    other = SequenceRegressor(
        AAMConfig.default().with_target(TargetConfig())
    )  # a different architecture
    with pytest.raises(CheckpointError, match="its encoder architecture .* differs"):
        load_encoder(other, load_checkpoint(path))


def test_nothing_matched_is_refused(tmp_path: Path) -> None:
    encoder = SequenceEncoder(AAMConfig.tiny())
    checkpoint = checkpoint_from_model(encoder, preprocessing=PRE)
    renamed = checkpoint.__class__(
        **{
            **checkpoint.__dict__,
            "state_dict": {f"x.{k}": v for k, v in checkpoint.state_dict.items()},
        }
    )
    regressor = SequenceRegressor(AAMConfig.tiny().with_target(TargetConfig()))
    with pytest.raises(CheckpointError, match="no weight matched the encoder"):
        load_encoder(regressor, renamed)
    assert os.path.exists(BAD / "garbage.pt")


def test_arbitrary_bytes_and_damaged_checkpoints_give_checkpoint_error(tmp_path: Path) -> None:
    """No input makes the loader raise anything but CheckpointError (fuzzed, seeded)."""
    good = save_checkpoint(
        checkpoint_from_model(SequenceEncoder(AAMConfig.tiny()), preprocessing=PRE),
        tmp_path / "good.pt",
    )
    data = good.read_bytes()
    rng = torch.Generator().manual_seed(0)
    cases: list[bytes] = [b"", b"this is not a checkpoint\n" * 10, bytes(range(256)) * 4]
    for _ in range(20):
        n = int(torch.randint(1, 4096, (1,), generator=rng))
        cases.append(bytes(torch.randint(0, 256, (n,), generator=rng, dtype=torch.uint8).tolist()))
    for cut in (10, 100, len(data) // 2, len(data) - 10):
        cases.append(data[:cut])
    for i, content in enumerate(cases):
        path = tmp_path / f"case{i}.pt"
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=rf"^case{i}\.pt: not (a readable|an AAM) "):
            load_checkpoint(path)
