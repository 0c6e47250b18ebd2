"""The card's generated sentences: intended use and limits, from the facts of a card."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aam_core.plan.config import MAXIMISED


def number(value: Any) -> str:
    """A number as the Markdown card shows it: 4 significant digits, "—" when missing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


# A cross-validation's models (aam_core.crossval.models) as the card names them; others by name.
MODEL_TITLES = {
    "aam": "AAM",
    "ensemble": "ensemble (AAM blended with a forest)",
    "aam_pretrained": "AAM from a pretrained encoder",
    "aam_pack": "AAM from a pack-pretrained encoder",
    "forest": "random forest",
    "linear": "linear model (CLR)",
    "linear_raw": "linear model (CLR of raw counts)",
    "constant": "constant",
    "depth": "sequencing depth alone",
}


def model_title(name: str) -> str:
    """A cross-validated model's name for people."""
    return MODEL_TITLES.get(name, name)


def cross_validated_by(cv: Mapping[str, Any]) -> str:
    """What a cross-validation held out of each fold's training: "subjects" or "samples"."""
    return "samples" if cv.get("group_column") is None else "subjects"


def intended_use(card: Mapping[str, Any]) -> list[str]:
    model, pre = card["model"], card["model"]["preprocessing"]
    target = model["target"]
    same_pipeline = (
        "Inputs should come from the same amplicon region, primers and denoising pipeline as "
        f"the training table (ASVs of up to {number(pre['max_bp'])} bp): the model knows ASVs by "
        "their DNA sequence, and another region or pipeline yields few or none of the same ASVs."
    )
    if target is None:
        what = (
            "Research use: embedding 16S rRNA amplicon samples (ASV count tables) so that "
            "distances between embeddings follow their UniFrac distances, and as the pretrained "
            "encoder of a model trained on a metadata column (aam train --pretrained-encoder, "
            "or base_model_id in a train job)."
        )
    else:
        classes = target.get("classes")
        what = (
            f"Research use: predicting {target['column']} ({target['task']}"
            + (f", classes {', '.join(map(str, classes))}" if classes else "")
            + ") from 16S rRNA amplicon count tables of samples like those it was trained on."
        )
    return [
        what,
        same_pipeline,
        "Not for clinical, diagnostic or other decisions about individuals: it has not been "
        "validated for them.",
    ]


def limits(card: Mapping[str, Any]) -> list[str]:
    model, data, training = card["model"], card["data"], card["training"]
    limits = [_sample_limit(data, training)]
    limits.extend(_metric_limits(card))
    limits.extend(_cross_validation_limits(card))
    limits.extend(_input_limits(model, data))
    if model["target"] is not None:
        limits.extend(_target_limits(model["target"], data))
    if model["ensemble"] is not None:
        limits.append(
            "Part of each prediction comes from a random forest over the "
            f"{model['ensemble']['n_forest_features']} ASVs of its training data; other ASVs "
            "carry no weight in the forest."
        )
    limits.extend(_baseline_limits(card))
    if training["stage"] == "pretrain":
        limits.append(
            "Pretraining metrics say how well embeddings fit UniFrac distances (and masked "
            "nucleotides), not how well they predict any property of a sample."
        )
    limits.extend(_record_limits(card))
    return limits


def _metric_limits(card: Mapping[str, Any]) -> list[str]:
    """What the validation metrics can say (or that there are none)."""
    model, metrics = card["model"], card["metrics"]
    if metrics["model"]:
        n_validation = number(card["data"]["samples"]["validation"])
        return [
            f"The metrics come from the validation split ({n_validation} samples), which also "
            f"chose the best epoch (monitor {number(metrics['monitor'])})"
            + (" and the blend" if model["type"] == "ensemble" else "")
            + ": they are not from an independent test set, and new samples will likely score "
            "somewhat worse."
        ]
    if not card.get("cross_validation"):
        return [
            "There are no validation metrics (no validation split was recorded): how well the "
            "model does on new samples is unknown."
        ]
    return []


def _input_limits(model: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """What of a sample the model reads: rarefied reads, its most abundant ASVs, sequences up
    to a length, ASV identities where it learnt them."""
    pre = model["preprocessing"]
    below = data["samples"]["below_rarefaction_depth"]
    vocabulary = model["architecture"]["asv_vocabulary"]
    left_out = f"{below} samples with fewer reads were left out of training, and " if below else ""
    depth = (
        f"Samples are rarefied to {number(pre['rarefaction_depth'])} reads; {left_out}"
        "a shallower sample is predicted unrarefied with a warning, less reliably."
    )
    longer = "cut to that length." if pre["truncate"] else "refused."
    tokens = (
        f"Only the {number(pre['token_limit'])} most abundant ASVs of a sample are read; its other "
        "reads are ignored (each prediction reports fraction_reads_used). Sequences longer "
        f"than {number(pre['max_bp'])} bp are {longer}"
    )
    identity = (
        f"ASVs unseen in training are read by their sequence only: the {vocabulary} ASVs of "
        "the train split also have a learned identity, so samples dominated by unseen ASVs "
        "are predicted less reliably."
        if vocabulary
        else "Every ASV is read by its sequence alone (no ASV identities were learnt)."
    )
    return [depth, tokens, identity]


def _record_limits(card: Mapping[str, Any]) -> list[str]:
    """What the card could not record: the data's digests, the libraries' versions."""
    out = []
    if card["data"]["sha256"] is None:
        out.append("The training data's digests were not recorded: it cannot be traced.")
    if card["library_versions"] is None:
        out.append(
            f"Written by aam {card['model']['aam_version']}; the versions of torch and the other "
            "libraries were not recorded."
        )
    return out


def _sample_limit(data: Mapping[str, Any], training: Mapping[str, Any]) -> str:
    samples, subjects = data["samples"], data["subjects"]
    if samples["train"] is None:
        return "The number of training samples was not recorded."
    text = f"Trained on {samples['train']} samples"
    if subjects is not None:
        text += (
            f" from {number(subjects['train'])} groups of {subjects['column']!r}, validated on "
            f"{number(samples['validation'])} samples from {number(subjects['validation'])} other "
            "groups (no group spans both)."
        )
    elif training["config"] is not None:
        text += (
            f", validated on {number(samples['validation'])}; no group column was given, so "
            "repeated samples of one subject may sit on both sides of the split and flatter "
            "the validation metrics."
        )
    else:
        text += f", validated on {number(samples['validation'])}."
    return text


def _target_limits(target: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    out = []
    summary = (data["target"] or {}).get("train")
    if target["task"] == "regression" and summary and summary.get("n"):
        low, high = number(summary["min"]), number(summary["max"])
        out.append(
            f"{target['column']} ranged from {low} to {high} in the train split (mean "
            f"{number(summary['mean'])}, sd {number(summary['std'])}); "
            "predictions outside that range are extrapolation."
        )
    if target.get("classes"):
        classes = target["classes"]
        out.append(
            f"It predicts only the {len(classes)} classes of its train split "
            f"({', '.join(map(str, classes))}); a sample of any other class gets one of these."
        )
    missing = data["samples"]["missing_target"]
    if missing:
        out.append(f"{missing} samples without a {target['column']} value were left out.")
    return out


def _headline(metrics: Mapping[str, Any]) -> str | None:
    """The metric the baselines are judged on: the monitored one when they all have it."""
    model = metrics["model"] or {}
    # the depth model is judged apart (metrics["depth_confound"]), not as a rival to prefer
    others = [b for k, b in metrics["baselines"].items() if b and k != "depth"]
    for name in (metrics["monitor"], "mae", "macro_f1", "accuracy"):
        if (
            name in model
            and model[name] is not None
            and all(b.get(name) is not None for b in others)
        ):
            return str(name)
    return None


def _baseline_limits(card: Mapping[str, Any]) -> list[str]:
    metrics = card["metrics"]
    name = _headline(metrics)
    if name is None:
        return []
    ours = metrics["model"][name]
    out = []
    for key, what in (
        ("random_forest", "a random forest on the same split and abundances"),
        ("constant", "a constant prediction (the train split's mean or class shares)"),
    ):
        theirs = (metrics["baselines"][key] or {}).get(name)
        if theirs is None:
            continue
        worse = ours < theirs if name in MAXIMISED else ours > theirs
        if worse or ours == theirs:
            out.append(
                f"On the validation split {what} scores "
                + ("as well as" if ours == theirs else "better than")
                + f" this model on {name} ({number(theirs)} against {number(ours)}): prefer it, or "
                "more data, before relying on this model."
            )
    return out


def _cross_validation_limits(card: Mapping[str, Any]) -> list[str]:
    """What a cross-validation of the model's recipe says (none without one): the expected
    performance, a depth confound, and the models that clearly beat AAM."""
    cv = card.get("cross_validation")  # absent from cards of older checkpoints
    if not cv:
        return []
    models, metric = cv.get("models") or {}, cv["primary_metric"]
    who = cross_validated_by(cv)
    # an ensemble's refit serves the blend, cross-validated as "ensemble"
    served = "ensemble" if card["model"]["type"] == "ensemble" and "ensemble" in models else "aam"
    design = f"{cv['folds']} folds x {cv['repeats']} repeats over {cv['n_samples']} samples"
    out = []
    figures = models.get(served)
    if figures:
        text = (
            f"Cross-validation ({design}) scored this recipe on {who} held out of its training: "
            f"{model_title(served)} reached {metric} {number(figures['per_sample'].get(metric))} "
            "per sample"
        )
        if cv.get("group_column") is not None:
            weighted = number((figures.get("subject_weighted") or {}).get(metric))
            text += f" ({weighted} with each subject weighted once)"
        text += f". These out-of-fold figures are the performance to expect on new {who}"
        text += ", a better guide than the validation split's." if card["metrics"]["model"] else "."
        out.append(text)
    if (cv.get("depth_confound") or {}).get("flagged"):
        task = (card["model"]["target"] or {}).get("task")
        follows = "labels follow" if task == "classification" else "target follows"
        out.append(
            "In cross-validation sequencing depth alone predicted the target: the "
            f"{follows} sequencing depth (a batch effect), so these figures may not carry over "
            "to samples sequenced otherwise."
        )
    better = [
        model_title(name.removeprefix("aam-"))
        for name, d in (cv.get("differences") or {}).items()
        if d.get("better") == "other" and name != f"aam-{served}"
    ]
    if better:
        aam = "AAM" if served == "aam" else "AAM alone"
        others = "this model" if len(better) == 1 else "these models"
        text = (
            f"In cross-validation {aam} scored worse on {metric} than {others} (the 95% "
            f"interval of the paired difference excludes zero): {', '.join(better)}."
        )
        if served == "aam":
            text += " Prefer " + ("it" if len(better) == 1 else "one")
            text += ", or more data, before relying on this model."
        out.append(text)
    return out
