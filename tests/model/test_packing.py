"""The packed path (only real positions through the per-position layers) and the CPU's chunked
nucleotide encoder equal the padded path: forward values and every gradient, atol 1e-5."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import aam_core.model.encoders as encoders
from aam_core.data.batching import PACK_BELOW, Batch, Collator, Sample
from aam_core.data.tokens import PAD
from aam_core.model import AAMConfig, LossWeights, SequenceEncoder, SequenceRegressor, TargetConfig
from aam_core.model.blocks import Transformer
from aam_core.model.config import NucleotideEncoderConfig
from aam_core.model.encoders import NucleotideEncoder
from aam_core.train.losses import compute_losses

ATOL = 1e-5


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(
            a[name], b[name], atol=ATOL, rtol=0, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_packed_transformer_equals_padded_forward_and_gradients() -> None:
    torch.manual_seed(0)
    model = Transformer(dim=32, heads=4, layers=2, ffn_mult=2, dropout=0.0).train()
    lengths = torch.tensor([7, 1, 12, 3, 12, 5])
    valid = torch.arange(12)[None] < lengths[:, None]  # [6, 12]
    positions = torch.nonzero(valid.flatten()).squeeze(1)
    x = torch.randn(6, 12, 32)
    results = []
    for packed in (None, positions):
        model.zero_grad()
        inputs = x.clone().requires_grad_(True)
        out = model(inputs, valid, packed)  # [6, 12, 32]
        # a loss that weighs every real position differently
        (out[valid] * torch.linspace(-1, 1, 32)).pow(2).sum().backward()
        assert inputs.grad is not None
        results.append((out, inputs.grad, grads(model)))
    (padded, padded_dx, padded_grads), (packed, packed_dx, packed_grads) = results
    torch.testing.assert_close(packed[valid], padded[valid], atol=ATOL, rtol=0)
    assert (packed[~valid] == 0).all()  # padding carries nothing
    torch.testing.assert_close(packed_dx, padded_dx, atol=ATOL, rtol=0)
    assert_same_grads(packed_grads, padded_grads)


def _batch(seed: int = 0) -> Batch:
    """Samples of very different sizes over ASVs of 60-150 bp: both encoders are packed."""
    rng = np.random.default_rng(seed)
    n_features = 90
    lengths = rng.integers(60, 151, size=n_features)
    tokens = np.zeros((n_features, 150), dtype=np.uint8)
    for f, length in enumerate(lengths):
        tokens[f, :length] = rng.integers(1, 5, size=length)
    samples = []
    for row, size in enumerate([40, 3, 25, 9, 1, 33]):
        features = rng.choice(n_features, size=size, replace=False).astype(np.int64)
        counts = np.sort(rng.integers(1, 500, size=size))[::-1].astype(np.int64)
        samples.append(Sample(row, f"s{row}", features, counts, float(rng.normal())))
    batch = Collator(tokens, token_limit=64)(samples)
    dist = torch.from_numpy(rng.uniform(0.1, 0.9, size=(6, 6)))
    dist = (dist + dist.T) / 2
    return dataclasses.replace(batch, unifrac=dist.fill_diagonal_(0))


def test_the_collator_packs_batches_with_much_padding_and_marks_real_positions() -> None:
    batch = _batch()
    assert batch.token_positions is not None and batch.slot_positions is not None
    real_tokens = (batch.tokens != PAD).flatten()
    assert torch.equal(batch.token_positions, torch.nonzero(real_tokens).squeeze(1))
    assert torch.equal(batch.slot_positions, torch.nonzero(batch.mask.flatten()).squeeze(1))
    # Samples of one size over ASVs of one length: nothing to pack.
    tokens = np.full((4, 150), 1, dtype=np.uint8)
    same = [Sample(i, f"s{i}", np.array([i, (i + 1) % 4]), np.array([5, 2])) for i in range(4)]
    full = Collator(tokens)(same)
    assert full.token_positions is None and full.slot_positions is None
    # Padding just over the share left to it: packed; just under: not.
    lengths = np.array([100, 100, 100, 100])
    for short, packed in (
        (int(400 * PACK_BELOW) - 301, True),
        (int(400 * PACK_BELOW) - 299, False),
    ):
        tokens = np.zeros((4, 150), dtype=np.uint8)
        for f, length in enumerate([*lengths[:3], short]):
            tokens[f, :length] = 1
        batch = Collator(tokens)([Sample(0, "s", np.arange(4), np.array([4, 3, 2, 1]))])
        assert (batch.token_positions is not None) is packed, short


@pytest.mark.parametrize("kind", ["encoder", "regressor"])
def test_packed_model_equals_padded_forward_and_gradients(kind: str) -> None:
    """A training step of each model (masked nucleotides, hidden abundances, every head) with
    the batch packed and with its packing removed."""
    batch = _batch(1)
    weights = LossWeights(unifrac=1.0, nucleotide=1.0)
    config = AAMConfig.tiny(loss_weights=weights)
    torch.manual_seed(3)
    model: SequenceEncoder | SequenceRegressor = SequenceEncoder(config)
    if kind == "regressor":
        target = config.with_target(
            TargetConfig(hidden=16), LossWeights(target=1.0, unifrac=1.0, nucleotide=1.0, count=1)
        )
        model = SequenceRegressor(target, model)
    model.train()
    results = []
    for packed in (False, True):
        step = (
            batch
            if packed
            else dataclasses.replace(batch, token_positions=None, slot_positions=None)
        )
        model.zero_grad()
        torch.manual_seed(11)  # the same masking draws on both paths
        out = model(step)
        loss = compute_losses(model, out, step)
        loss.total.backward()
        results.append((out, loss, grads(model)))
    (padded, padded_loss, padded_grads), (packed, packed_loss, packed_grads) = results
    torch.testing.assert_close(packed.embedding, padded.embedding, atol=ATOL, rtol=0)
    for name, value in padded_loss.components.items():
        torch.testing.assert_close(packed_loss.components[name], value, atol=ATOL, rtol=0)
    if kind == "regressor":
        torch.testing.assert_close(packed.target, padded.target, atol=ATOL, rtol=0)
    assert_same_grads(packed_grads, padded_grads)


def test_chunked_nucleotide_encoder_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = _batch(2)
    torch.manual_seed(0)
    encoder = NucleotideEncoder(NucleotideEncoderConfig(dim=32, heads=2, layers=2, dropout=0.0))
    rows = batch.tokens.shape[0]
    results = []
    position_bytes = 4 * 32 * 4  # ffn_mult x dim float32 values
    for chunk in (10**12, 3 * batch.tokens.shape[1] * position_bytes):  # one pass, 3 ASVs a chunk
        monkeypatch.setattr(encoders, "CPU_CHUNK_BYTES", chunk)
        for positions in (None, batch.token_positions):
            encoder.zero_grad()
            out = encoder(batch.tokens, positions)
            assert out.vectors.shape == (rows, 32)
            (out.vectors.pow(2).mean() + out.states[batch.tokens != PAD].mean()).backward()
            results.append((out.vectors, grads(encoder)))
    reference_vectors, reference_grads = results[0]
    for vectors, gradients in results[1:]:
        torch.testing.assert_close(vectors, reference_vectors, atol=ATOL, rtol=0)
        assert_same_grads(gradients, reference_grads)
