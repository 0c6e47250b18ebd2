from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aam_core.data.batching import Batch, Collator, Sample, SampleDataset
from aam_core.data.tokens import tokenize
from aam_core.model import (
    AAMConfig,
    ConfigError,
    LossWeights,
    SequenceEncoder,
    SequenceRegressor,
    TargetConfig,
    format_summary,
    parameter_counts,
)
from aam_core.train.losses import compute_losses
from tests.conftest import BatchFactory


def regressor(seed: int = 0, **target: object) -> SequenceRegressor:
    torch.manual_seed(seed)
    config = AAMConfig.tiny().with_target(
        TargetConfig(hidden=32, **target),  # type: ignore[arg-type]
        LossWeights(target=1.0, unifrac=1.0, faith_pd=1.0),
    )
    return SequenceRegressor(config).eval()


def outputs(model: SequenceRegressor, batch: Batch, row: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = model(batch)
    assert out.target is not None
    return out.embedding[row], out.target[row]


def test_padding_does_not_change_a_sample(
    make_batch: BatchFactory, small_dataset: SampleDataset
) -> None:
    model = regressor()
    sizes = [len(small_dataset[i].features) for i in range(len(small_dataset))]
    short, longest = int(np.argmin(sizes)), int(np.argmax(sizes))
    alone = make_batch([short])
    mixed = make_batch([longest, short, 9])  # the longest sample forces padding of `short`
    assert mixed.mask[1].sum() < mixed.mask.shape[1]
    emb_alone, pred_alone = outputs(model, alone, 0)
    emb_mixed, pred_mixed = outputs(model, mixed, 1)
    torch.testing.assert_close(emb_mixed, emb_alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(pred_mixed, pred_alone, atol=1e-5, rtol=0)


def test_deduplication_merging_asvs_does_not_change_a_sample(make_batch: BatchFactory) -> None:
    model = regressor()
    alone = make_batch([3])
    shared = make_batch([3, 3, 7])  # the same ASVs twice: deduplication merges all of them
    assert shared.tokens.shape[0] < int(shared.mask.sum())  # fewer distinct ASVs than slots
    emb_alone, pred_alone = outputs(model, alone, 0)
    for row in (0, 1):
        emb, pred = outputs(model, shared, row)
        torch.testing.assert_close(emb, emb_alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(pred, pred_alone, atol=1e-5, rtol=0)


def test_deduplication_equals_encoding_every_slot(make_batch: BatchFactory) -> None:
    model = regressor()
    batch = make_batch(list(range(12)))
    slots = int(batch.mask.sum())
    assert batch.tokens.shape[0] < slots  # the batch really shares ASVs
    with torch.no_grad():
        dedup = model(batch, dedup=True)
        reference = model(batch, dedup=False)
    for name in ("embedding", "target", "unifrac", "faith_pd"):
        torch.testing.assert_close(
            getattr(dedup, name), getattr(reference, name), atol=1e-5, rtol=0
        )


def test_padding_slots_are_never_encoded(make_batch: BatchFactory) -> None:
    model = regressor()
    batch = make_batch([0, 1, 2])
    seen: list[int] = []
    hook = model.base.nucleotide.register_forward_hook(
        lambda _m, args, _o: seen.append(args[0].shape[0])
    )
    with torch.no_grad():
        model(batch, dedup=False)
        model(batch, dedup=True)
    hook.remove()
    assert seen == [int(batch.mask.sum()), batch.tokens.shape[0]]


def test_frozen_base_gets_no_gradient_and_does_not_change(make_batch: BatchFactory) -> None:
    torch.manual_seed(0)
    base = SequenceEncoder(AAMConfig.tiny())
    config = base.config.with_target(TargetConfig(hidden=16))
    model = SequenceRegressor(config, base, freeze_base=True).train()
    assert not model.base.training  # kept in eval mode: no dropout, no masking
    batch = make_batch(list(range(8)))
    model.target_norm.fit(batch.target)  # type: ignore[arg-type]
    trainable = model.trainable_parameters()
    base_ids = {id(p) for p in model.base.parameters()}
    assert trainable and not any(id(p) in base_ids for p in trainable)
    optimiser = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    with torch.no_grad():
        before = model.base.encode(batch).embedding.clone()
    state_before = {k: v.clone() for k, v in model.base.state_dict().items()}
    head_before = model.target_head.mlp[1].weight.clone()
    loss = compute_losses(model, model(batch), batch)
    loss.total.backward()
    assert all(p.grad is None for p in model.base.parameters())
    optimiser.step()
    with torch.no_grad():
        after = model.base.encode(batch).embedding
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    for key, value in model.base.state_dict().items():
        assert torch.equal(value, state_before[key]), key
    assert not torch.equal(model.target_head.mlp[1].weight, head_before)  # the head trained


def test_frozen_base_refuses_losses_it_cannot_train() -> None:
    base = SequenceEncoder(AAMConfig.tiny())
    config = base.config.with_target(TargetConfig(), LossWeights(target=1.0, count=0.5))
    with pytest.raises(ConfigError, match="with freeze_base only loss_weights.target may be > 0"):
        SequenceRegressor(config, base, freeze_base=True)


def _sample(features: list[int], counts: list[int], row: int = 0) -> Sample:
    return Sample(row, f"s{row}", np.array(features), np.array(counts), 1.0)


def test_no_nan_for_empty_single_asv_and_two_sample_batches() -> None:
    tokens = tokenize(["ACGTACGT", "GGGTTTAA", "CCCCAAAA"], max_bp=150)
    collate = Collator(tokens, token_limit=8)
    empty = Sample(2, "empty", np.array([], dtype=np.int64), np.array([], dtype=np.int64), 0.0)
    batches = [
        collate([_sample([0, 1], [5, 3]), empty]),  # an all-padding row
        collate([_sample([2], [7], row=1)]),  # a single-ASV sample, batch of one
        collate([_sample([0], [1]), _sample([1, 2], [4, 4], row=1)]),  # batch of 2
    ]
    torch.manual_seed(0)
    config = AAMConfig.tiny().with_target(
        TargetConfig(hidden=8), LossWeights(target=1.0, count=1.0, nucleotide=1.0)
    )
    model = SequenceRegressor(config).train()
    for batch in batches:
        batch = dataclasses.replace(batch, target=torch.ones(batch.size))
        out = model(batch)
        loss = compute_losses(model, out, batch)
        loss.total.backward()
        assert torch.isfinite(loss.total)
        assert torch.isfinite(out.embedding).all() and out.target is not None
        assert torch.isfinite(out.target).all()
        for name, p in model.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), name
        model.zero_grad()


def test_masking_only_in_training_and_only_with_a_weight(make_batch: BatchFactory) -> None:
    batch = make_batch([0, 1, 2, 3])
    pretrain = SequenceEncoder(AAMConfig.tiny())  # nucleotide weight 1 by default
    assert pretrain.train()(batch).nucleotide_logits is not None
    assert pretrain.eval()(batch).nucleotide_logits is None
    finetune = SequenceRegressor(AAMConfig.tiny().with_target(TargetConfig())).train()
    calls: list[torch.Tensor] = []
    hook = finetune.base.nucleotide.register_forward_hook(lambda _m, a, _o: calls.append(a[0]))
    out = finetune(batch)
    hook.remove()
    assert out.nucleotide_logits is None and out.count is None
    assert torch.equal(calls[0], batch.tokens)  # fine-tuning input is never corrupted


def test_masked_abundance_covers_hidden_slots_only(make_batch: BatchFactory) -> None:
    batch = make_batch(list(range(16)))
    config = AAMConfig.tiny().with_target(TargetConfig(), LossWeights(target=1.0, count=1.0))
    torch.manual_seed(3)
    model = SequenceRegressor(config).train()
    seen: dict[str, torch.Tensor] = {}
    hook = model.base.sample.register_forward_hook(
        lambda _m, args, _o: seen.__setitem__("hidden", args[3])
    )
    out = model(batch)
    hook.remove()
    hidden = seen["hidden"]
    assert hidden is not None and not (hidden & ~batch.mask).any()
    share = hidden.sum().item() / batch.mask.sum().item()
    assert 0.10 < share < 0.20  # about 15% of the real slots
    assert out.count is not None and out.count_targets is not None
    expected = torch.log(batch.abundance[..., 1][hidden])
    torch.testing.assert_close(out.count_targets, expected)
    # the hidden slots' abundance really is replaced by the learned mask vector
    with torch.no_grad():
        layer = model.base.sample.abundance
        assert not torch.allclose(layer(batch.abundance)[hidden], model.base.sample.abundance_mask)


def test_config_rules_and_round_trip() -> None:
    with pytest.raises(
        ConfigError, match=r"sample.dim \(30\) must be divisible by sample.heads \(4\)"
    ):
        AAMConfig.tiny(sample=dataclasses.replace(AAMConfig.default().sample, dim=30))
    with pytest.raises(ConfigError, match=r"nucleotide.dim \(128\) must equal sample.dim \(32\)"):
        AAMConfig.tiny(nucleotide=AAMConfig.default().nucleotide)
    with pytest.raises(ConfigError, match="loss_weights.unifrac must be >= 0, got -1"):
        LossWeights(unifrac=-1)
    with pytest.raises(ConfigError, match=r"target.out_dim \(classes\) must be >= 2, got 1"):
        TargetConfig(task="classification", out_dim=1)
    with pytest.raises(ConfigError, match="unknown TargetConfig keys: colour"):
        AAMConfig.from_dict({**AAMConfig.tiny().to_dict(), "target": {"colour": 1}})
    config = AAMConfig.tiny().with_target(TargetConfig(task="classification", out_dim=3))
    assert AAMConfig.from_dict(config.to_dict()) == config


def test_parameter_counts_add_up() -> None:
    model = SequenceRegressor(AAMConfig.default().with_target(TargetConfig()))
    counts = parameter_counts(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    parts = sum(v for k, v in counts.items() if k not in ("total", "trainable"))
    assert parts == counts["total"]
    assert "total" in format_summary(model)
