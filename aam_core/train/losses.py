"""Loss components and their weighted total. Every component is reported separately; a
component whose weight is zero is neither computed nor reported."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aam_core.data.batching import Batch
from aam_core.model.aam import ModelOutput, SequenceEncoder, SequenceRegressor
from aam_core.model.config import LossWeights, TargetConfig
from aam_core.model.masking import IGNORE


def unifrac_loss(
    predicted: torch.Tensor, true: torch.Tensor, spread: torch.Tensor | None = None
) -> torch.Tensor:
    """MSE over the pairs i < j of the batch (each pair once; any B >= 2), in units of
    ``spread`` (the train split's SD of distances) when given: then ~1 for a model that
    predicts the mean distance, on the scale of the other loss terms, whatever the study's
    spread of distances (raw MSEs of ~0.03 were lost beside a cross-entropy of ~1.4 under one
    gradient clip)."""
    b = predicted.shape[0]
    i, j = torch.triu_indices(b, b, offset=1, device=predicted.device)  # [2, B(B-1)/2]
    if i.numel() == 0:
        return predicted.sum() * 0.0  # a batch of one has no pairs
    error = predicted[i, j].float() - true[i, j].float()  # [n_pairs]
    if spread is not None:
        error = error / spread.float()
    return error.pow(2).mean()


def nucleotide_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the chosen positions (targets other than IGNORE; zero when none
    was chosen). Any shape ``[..., 4]`` / ``[...]``; computed without a host-device sync."""
    flat_targets = targets.reshape(-1)  # [n]
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        flat_targets,
        ignore_index=IGNORE,
        reduction="sum",
    )
    return total / (flat_targets != IGNORE).sum().clamp_min(1)


def masked_mse(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """MSE over the given (hidden) elements only (zero when there are none)."""
    if true.numel() == 0:
        return predicted.sum() * 0.0
    return F.mse_loss(predicted.float(), true.float())


def target_loss(
    predicted: torch.Tensor,
    true: torch.Tensor,
    config: TargetConfig,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Regression: MSE or Huber on standardised values ``[B, k]``; classification:
    cross-entropy on logits ``[B, K]`` against class indices ``[B]``."""
    if config.task == "classification":
        weight = None if class_weights is None else class_weights.to(predicted)
        return F.cross_entropy(predicted.float(), true.long(), weight=weight)
    true = true.reshape(predicted.shape).to(predicted.dtype)
    if config.loss == "huber":
        return F.huber_loss(predicted.float(), true.float(), delta=config.huber_delta)
    return F.mse_loss(predicted.float(), true.float())


@dataclass(frozen=True, eq=False)
class LossResult:
    total: torch.Tensor  # scalar, with gradient
    components: dict[str, torch.Tensor]  # unweighted value of each active component, detached

    def component_values(self) -> dict[str, float]:
        """The components as floats (a host-device sync: call it after the step is queued)."""
        return {name: float(value) for name, value in self.components.items()}


def weighted_total(
    weights: LossWeights, parts: dict[str, torch.Tensor], *, strict: bool = True
) -> LossResult:
    """Weighted sum of the components with a non-zero weight. With ``strict`` (training), a
    component with a non-zero weight but no value is an error, so a weight is never silently
    ignored; evaluation (no masking) sums the components it has."""
    active = sorted(weights.active() & set(parts)) if not strict else sorted(weights.active())
    missing = [name for name in active if name not in parts]
    if missing or not active:
        raise ValueError(
            f"loss weights > 0 without predictions: {', '.join(missing) or 'all components'}"
        )
    total = torch.stack([getattr(weights, name) * parts[name].float() for name in active]).sum()
    return LossResult(total, {name: parts[name].detach() for name in active})


def compute_losses(
    model: SequenceEncoder | SequenceRegressor,
    output: ModelOutput,
    batch: Batch,
    class_weights: torch.Tensor | None = None,
    unifrac_pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> LossResult:
    """The model's weighted loss on one batch (truths from the batch, standardised with the
    model's own train-split statistics). ``unifrac_pairs`` (predicted, true) replaces the
    batch's own UniFrac pairs: under DDP, the distances of the global batch."""
    config = model.config
    active = config.loss_weights.active()
    base = model.base if isinstance(model, SequenceRegressor) else model
    parts: dict[str, torch.Tensor] = {}
    spread = base.unifrac_head.spread()
    if "unifrac" in active and unifrac_pairs is not None:
        parts["unifrac"] = unifrac_loss(*unifrac_pairs, spread)
    elif "unifrac" in active and output.unifrac is not None and batch.unifrac is not None:
        parts["unifrac"] = unifrac_loss(output.unifrac, batch.unifrac, spread)
    if "faith_pd" in active and output.faith_pd is not None and batch.faith_pd is not None:
        true_pd = base.faith_norm.standardize(batch.faith_pd.to(output.faith_pd.dtype))
        parts["faith_pd"] = masked_mse(output.faith_pd, true_pd)
    if "nucleotide" in active and output.nucleotide_logits is not None:
        assert output.nucleotide_targets is not None
        parts["nucleotide"] = nucleotide_loss(output.nucleotide_logits, output.nucleotide_targets)
    if "count" in active and output.count is not None:
        assert output.count_targets is not None
        parts["count"] = masked_mse(output.count, output.count_targets)
    if "target" in active and isinstance(model, SequenceRegressor):
        if output.target is None or batch.target is None:
            raise ValueError("loss_weights.target > 0 but the batch has no targets")
        assert config.target is not None
        true = batch.target
        if config.target.task == "regression":
            true = model.target_norm.standardize(true.reshape(output.target.shape).float())
        parts["target"] = target_loss(output.target, true, config.target, class_weights)
    return weighted_total(config.loss_weights, parts, strict=model.training)
