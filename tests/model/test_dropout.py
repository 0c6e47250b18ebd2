"""The CPU dropout (masks cut from 63-bit draws): the drop rate and its scale, every one of the
four 15-bit lanes of a draw, the forward and backward against the mask, reproducibility."""

from __future__ import annotations

import pytest
import torch

from aam_core.model.blocks import MASK_BITS, Dropout, TransformerBlock, cpu_keep_mask

N = 2**22


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.5])
def test_the_mask_drops_p_of_the_elements_and_scales_by_one_over_the_kept_share(p: float) -> None:
    torch.manual_seed(0)
    keep, scale = cpu_keep_mask(torch.Size([N]), p)
    rounded = round(p * 2**MASK_BITS) / 2**MASK_BITS
    assert abs(rounded - p) <= 2**-16
    assert scale == pytest.approx(1 / (1 - rounded), rel=1e-12)
    # five standard deviations of a binomial share over 2^22 draws (at most 1.3e-3)
    tolerance = 5 * (p * (1 - p) / N) ** 0.5
    assert abs((~keep).double().mean().item() - p) < tolerance
    # each element of a 63-bit draw takes 15 of its bits; the top lane holds the draw's
    # always-zero bit 63, which the mask must leave out (kept in, it would drop 2p there)
    lanes = (~keep).view(-1, 4).double().mean(dim=0)  # [4]
    assert (lanes - p).abs().max().item() < 2 * tolerance
    # no two neighbouring elements move together (they come from one draw)
    a, b = (~keep).view(-1, 2).double().unbind(1)
    assert abs((a * b).mean().item() - p * p) < 5 * (p * p / (N / 2)) ** 0.5


def test_dropout_forward_and_backward_follow_the_mask() -> None:
    drop = Dropout(0.1).train()
    x = torch.randn(7, 33, 16, requires_grad=True)  # an odd element count: a partial draw
    torch.manual_seed(3)
    y = drop(x)
    torch.manual_seed(3)
    keep, scale = cpu_keep_mask(x.shape, 0.1)
    torch.testing.assert_close(y, x * keep * scale, atol=0, rtol=0)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, weights * keep * scale, atol=0, rtol=0)
    assert 0 < (~keep).sum() < keep.numel()


def test_dropout_is_reproducible_and_off_in_eval_mode() -> None:
    drop = Dropout(0.2).train()
    x = torch.randn(1000)
    torch.manual_seed(1)
    first = drop(x)
    torch.manual_seed(1)
    assert torch.equal(drop(x), first)
    assert not torch.equal(drop(x), first)  # the generator moved on
    assert drop.eval()(x) is x
    assert Dropout(0.0).train()(x) is x


def test_dropout_keeps_the_expected_value() -> None:
    torch.manual_seed(0)
    x = torch.full((N,), 2.0)
    assert Dropout(0.3).train()(x).mean().item() == pytest.approx(2.0, abs=0.01)


def test_blocks_keep_the_state_dict_of_nn_dropout() -> None:
    """Checkpoints written with ``nn.Dropout`` load: the module has no state."""
    block = TransformerBlock(8, 2, 2, 0.1)
    assert not any("drop" in key for key in block.state_dict())
