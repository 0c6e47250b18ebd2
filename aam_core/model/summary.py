"""Parameter counts of a model, by component."""

from __future__ import annotations

from torch import nn


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters per top-level component (nested one level for a composed base), plus
    ``total`` and ``trainable``."""
    counts: dict[str, int] = {}
    for name, child in model.named_children():
        grandchildren = list(child.named_children())
        if name == "base" and grandchildren:
            for sub, module in grandchildren:
                counts[f"base.{sub}"] = sum(p.numel() for p in module.parameters())
        else:
            counts[name] = sum(p.numel() for p in child.parameters())
    counts["total"] = sum(p.numel() for p in model.parameters())
    counts["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return counts


def format_summary(model: nn.Module) -> str:
    counts = parameter_counts(model)
    width = max(len(k) for k in counts)
    return "\n".join(f"{name:<{width}}  {n:>12,}" for name, n in counts.items())


def main() -> None:
    """``python -m aam_core.model.summary``: parameter counts of the default models."""
    from aam_core.model.aam import SequenceEncoder, SequenceRegressor
    from aam_core.model.config import AAMConfig, TargetConfig

    config = AAMConfig.default()
    for title, model in (
        ("SequenceEncoder (default)", SequenceEncoder(config)),
        ("SequenceRegressor (default)", SequenceRegressor(config.with_target(TargetConfig()))),
    ):
        print(f"{title}\n{format_summary(model)}\n")


if __name__ == "__main__":
    main()
