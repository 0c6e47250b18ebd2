"""The target head's linear base (``linear_head``): per ASV of the vocabulary a weight on its
presence and one on log1p(count) / log1p(depth), plus an intercept, added to the network's
output; fixed numbers (buffers), fitted before training; the network's output starts at zero.
A checkpoint written before the presence term holds the log term alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from aam_core.model.aam import SequenceRegressor
from aam_core.model.config import AAMConfig, TargetConfig
from aam_core.model.heads import TargetHead
from aam_core.plan import RunConfig

B, S, D, V, K = 3, 5, 8, 6, 2
FITTED = TargetConfig(out_dim=K, linear=True, linear_features="presence+log", vocabulary=V)


def _inputs() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(B, S, D, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    counts = torch.tensor(
        [[40, 9, 1, 0, 0], [5, 5, 5, 5, 80], [100, 0, 0, 0, 0]], dtype=torch.float32
    )
    relative = counts / counts.sum(-1, keepdim=True)
    identity = torch.tensor([[1, 0, 6, 0, 0], [2, 3, 4, 5, 6], [3, 0, 0, 0, 0]])  # 0: unknown
    return states, mask, relative, torch.log1p(counts), identity, counts


def _fill(head: TargetHead) -> None:
    generator = torch.Generator().manual_seed(1)
    assert head.linear is not None
    for name in ("weight", "presence"):
        buffer = getattr(head.linear, name)
        if buffer is not None:
            buffer[1:] = torch.randn(V, K, generator=generator)
    if head.linear.intercept is not None:
        head.linear.intercept.copy_(torch.tensor([0.25, -0.5]))


def test_the_base_is_presence_and_log_abundance_weights_and_an_intercept() -> None:
    head = TargetHead(D, FITTED).eval()
    _fill(head)
    states, mask, relative, log_counts, identity, counts = _inputs()
    with torch.no_grad():
        network = head(states, mask, relative)  # no identities: the network alone
        got = head(states, mask, relative, log_counts, identity) - network  # [B, K]
    assert head.linear is not None and head.linear.presence is not None
    weights, presence = head.linear.weight.numpy(), head.linear.presence.numpy()  # [V + 1, K]
    expected = np.tile([0.25, -0.5], (B, 1))
    for b in range(B):
        depth = counts[b].sum().item()
        for s in range(S):
            if mask[b, s]:
                share = np.log1p(counts[b, s].item()) / np.log1p(depth)
                expected[b] += weights[identity[b, s]] * share + presence[identity[b, s]]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_an_old_checkpoint_s_log_term_reads_as_before() -> None:
    """``linear_features="log"`` (the default of configs written before the presence term):
    the log term alone, no intercept, sized by the sample encoder's vocabulary."""
    old = TargetConfig(out_dim=K, linear=True)
    assert old.linear_features == "log" and old.vocabulary == 0
    head = TargetHead(D, old, vocabulary=V).eval()
    assert head.linear is not None and head.linear.presence is None
    assert head.fitted_base is None
    assert set(head.state_dict()) >= {"linear.weight"}
    assert not any(k.startswith("linear.") and k != "linear.weight" for k in head.state_dict())
    _fill(head)
    states, mask, relative, log_counts, identity, counts = _inputs()
    with torch.no_grad():
        got = head(states, mask, relative, log_counts, identity) - head(states, mask, relative)
    weights = head.linear.weight.numpy()
    expected = np.zeros((B, K))
    for b in range(B):
        for s in range(S):
            if mask[b, s]:
                share = np.log1p(counts[b, s].item()) / np.log1p(counts[b].sum().item())
                expected[b] += weights[identity[b, s]] * share
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_fitted_base_is_no_parameter_and_the_network_starts_at_zero() -> None:
    config = AAMConfig.tiny(target=dataclasses.replace(FITTED, out_dim=1, hidden=16))
    model = SequenceRegressor(config)
    head = model.target_head
    assert head.fitted_base is not None
    names = {name for name, _ in model.named_parameters()}
    assert not any(name.startswith("target_head.linear") for name in names)  # no optimiser
    assert {"target_head.linear.weight", "target_head.linear.presence"} <= set(
        model.state_dict()
    )  # but checkpoints carry it
    generator = torch.Generator().manual_seed(2)
    head.fitted_base.presence[1:] = torch.randn(V, 1, generator=generator)  # type: ignore[index]
    _, mask, relative, log_counts, identity, _ = _inputs()
    states = torch.randn(B, S, config.dim, generator=generator)  # the tiny model's width
    with torch.no_grad():
        assert torch.all(head(states, mask, relative) == 0)  # the network adds nothing yet
        total = head(states, mask, relative, log_counts, identity)
        base = head.fitted_base(identity, log_counts, mask)
    torch.testing.assert_close(total, base)  # the model begins as its linear base
    assert torch.all(head.fitted_base.weight[0] == 0)  # an unknown ASV adds nothing


def test_no_vocabulary_no_term_and_the_defaults() -> None:
    assert TargetHead(D, TargetConfig(out_dim=K, linear=True), vocabulary=0).linear is None
    assert TargetConfig().linear is False  # checkpoints written before the field
    assert RunConfig().linear_head is True
