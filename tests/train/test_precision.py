"""bf16 on the CPU: when ``auto`` picks it, attention kept in fp32 under it, and a training
step close to the fp32 one."""

from __future__ import annotations

import contextlib

import pytest
import torch

from aam_core.model.blocks import SelfAttention
from aam_core.train import loop
from aam_core.train.loop import autocast_for, cpu_has_bf16

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_on_cpus_with_native_bf16(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: native)
    auto = autocast_for(CPU, "auto")
    assert isinstance(auto, torch.autocast) is native
    assert isinstance(autocast_for(CPU, "bf16"), torch.autocast)  # asked for: emulated if need be
    assert isinstance(autocast_for(CPU, "fp32"), contextlib.nullcontext)
    with autocast_for(CPU, "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_cpu_has_bf16_reads_the_cpu_flags() -> None:
    flags = open("/proc/cpuinfo").read().split()  # noqa: SIM115
    assert cpu_has_bf16() == ("avx512_bf16" in flags or "amx_tile" in flags)


def test_attention_runs_in_fp32_under_cpu_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    attention = SelfAttention(32, 4)
    x = torch.randn(3, 10, 32)
    seen: list[torch.dtype] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        seen.append(q.dtype)
        return sdpa(q, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    reference = attention(x, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lowered = attention(x, None)
    assert seen == [torch.float32, torch.float32]
    assert lowered.dtype == torch.bfloat16  # the output projection ran in bf16
    # bf16 keeps 8 bits of mantissa: the two agree to its rounding
    torch.testing.assert_close(lowered.float(), reference, atol=3e-2, rtol=3e-2)
