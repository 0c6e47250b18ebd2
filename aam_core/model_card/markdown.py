"""The card as a Markdown document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aam_core.model_card.card import NOT_RECORDED
from aam_core.model_card.text import cross_validated_by, model_title, number
from aam_core.plan.config import MAXIMISED

COLUMNS = (  # metrics table: card key -> column title
    ("model", "model"),
    ("aam_alone", "AAM alone"),
    ("random_forest", "random forest"),
    ("constant", "constant"),
    ("depth", "sequencing depth alone"),
)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    def cell(value: Any) -> str:
        return number(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _recorded(value: Any) -> Any:
    return NOT_RECORDED if value is None else value


def card_markdown(card: Mapping[str, Any]) -> str:
    """The card as a Markdown document (from the dictionary alone, so a card read back from
    its JSON renders the same)."""
    model, data, training, metrics = card["model"], card["data"], card["training"], card["metrics"]
    target = model["target"]
    title = "encoder" if target is None else f"{model['kind']} of {target['column']}"
    lines = [f"# Model card: {title}", ""]
    confound = metrics.get("depth_confound")  # absent from cards of older checkpoints
    if confound and confound.get("confounded"):
        lines += [f"**Warning:** {confound['message']}.", ""]
    lines += ["## Model", "", *_table(("field", "value"), _model_rows(model))]
    for heading, key in (("Intended use", "intended_use"), ("Limits", "limits")):
        lines += ["", f"## {heading}", "", *(f"- {text}" for text in card[key])]
    lines += ["", "## Data", "", *_data_lines(data)]
    lines += ["", "## Training", "", *_training_lines(training)]
    lines += ["", f"## Metrics beside baselines ({metrics['split']} split)", ""]
    lines += _metric_lines(metrics)
    cv = card.get("cross_validation")  # absent from cards of older checkpoints
    if cv:
        lines += ["", "## Cross-validated performance", "", *_cross_validation_lines(cv)]
    versions = card["library_versions"]
    lines += ["", "## Library versions", ""]
    if versions:  # None: not installed (torch_cuda: a CPU build of torch)
        rows = [(name, "none" if v is None else v) for name, v in versions.items()]
        lines += _table(("library", "version"), rows)
    else:
        lines.append(f"aam {model['aam_version']}; other libraries {NOT_RECORDED}.")
    return "\n".join(lines) + "\n"


def _model_rows(model: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    target, arch = model["target"], model["architecture"]
    rows: list[tuple[Any, ...]] = [("kind", model["kind"]), ("type", model["type"])]
    if target is not None:
        rows.append(("target", f"{target['column']} ({target['task']})"))
        if target.get("classes"):
            rows.append(("classes", ", ".join(map(str, target["classes"]))))
    layers = f"{arch['sample_layers']} sample, {arch['nucleotide_layers']} nucleotide"
    rows += [
        ("architecture", f"dim {arch['embedding_dim']}; layers: {layers}; {arch['heads']} heads"),
        ("ASV vocabulary", f"{arch['asv_vocabulary']} ASVs"),
        ("encoder frozen", arch["freeze_base"]),
    ]
    rows += [(k.replace("_", " "), _recorded(v)) for k, v in model["preprocessing"].items()]
    ensemble = model["ensemble"]
    if ensemble is not None:
        weight = number(ensemble["weight"])
        rows.append(
            ("ensemble", f"{ensemble['choice']}, AAM weight {weight}: {ensemble['reason']}")
        )
    version = f"aam {model['aam_version']} (checkpoint format {model['format_version']})"
    rows += [("checkpoint SHA-256", _recorded(model["checkpoint_sha256"])), ("written by", version)]
    return rows


def _data_lines(data: Mapping[str, Any]) -> list[str]:
    digests = data["sha256"]
    lines = ["Input files (SHA-256):", ""]
    if digests:
        lines += [f"- {role}: `{digest}`" for role, digest in digests.items()]
    else:
        lines += [f"- {NOT_RECORDED}"]
    samples = data["samples"]
    rows: list[tuple[Any, ...]] = [(k.replace("_", " "), _recorded(v)) for k, v in samples.items()]
    rows.append(("ASVs (features)", _recorded(data["n_features"])))
    subjects = data["subjects"]
    if subjects is not None:
        for side in ("train", "validation"):
            rows.append((f"groups of {subjects['column']!r}: {side}", _recorded(subjects[side])))
    lines += ["", *_table(("samples", "count"), rows)]
    summary = data["target"]
    if summary:
        lines += ["", "Target by split:", ""]
        for side, values in summary.items():
            shown = ", ".join(f"{k} {number(v)}" for k, v in values.items())
            lines.append(f"- {side}: {shown}")
    return lines


def _training_lines(training: Mapping[str, Any]) -> list[str]:
    split, epochs = training["split"], training["epochs"]
    grouped = split["group_column"] or ("none" if training["config"] is not None else None)
    sizes = None
    if split["n_train"] is not None:
        sizes = f"{split['n_train']} / {number(split['n_validation'])}"
    best = None
    if epochs["best"] is not None:
        best = (
            f"{epochs['best']} of {number(epochs['final'])} run (max {number(epochs['max'])}), "
            f"monitor {number(epochs['monitor'])}"
        )
    rows: list[tuple[Any, ...]] = [
        ("stage", _recorded(training["stage"])),
        ("seed", _recorded(training["seed"])),
        ("split method", _recorded(split["method"])),
        ("validation fraction", _recorded(split["validation_fraction"])),
        ("group column", _recorded(grouped)),
        ("train / validation samples", _recorded(sizes)),
        ("split SHA-256 (split.tsv)", _recorded(split["sha256"])),
        ("best epoch", _recorded(best)),
        ("device", _recorded(training["device"])),
    ]
    base = training["base_model"]
    if base:
        frozen = ", frozen" if base.get("freeze_base") else ""
        rows.append(("base model", f"{base.get('kind')} `{base.get('sha256')}`{frozen}"))
    lines = _table(("setting", "value"), rows)
    config = training["config"]
    lines += ["", "### Configuration", ""]
    if config:
        lines += _table(("key", "value"), [(k, _config_value(v)) for k, v in config.items()])
    else:
        lines.append(NOT_RECORDED)
    return lines


def _config_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={number(v)}" for k, v in value.items()) or "{}"
    return "unset" if value is None else number(value)


def _metric_lines(metrics: Mapping[str, Any]) -> list[str]:
    columns = {"model": metrics["model"], "aam_alone": metrics["aam_alone"]}
    columns |= metrics["baselines"]
    shown = [(key, title) for key, title in COLUMNS if columns.get(key)]
    if not metrics["model"]:
        return [f"Validation metrics: {NOT_RECORDED}."]
    names: list[str] = []
    for key, _ in shown:
        names += [n for n in columns[key] if n not in names]
    names.sort(key=lambda n: n.startswith("loss"))  # stable: losses last
    rows = [(name, *(columns[key].get(name) for key, _ in shown)) for name in names]
    lines = [f"Best epoch {number(metrics['epoch'])} (monitor {number(metrics['monitor'])}).", ""]
    lines += _table(("metric", *(title for _, title in shown)), rows)
    train = metrics["train"]
    if train:
        brief = ", ".join(f"{k} {number(v)}" for k, v in train.items() if not k.startswith("loss"))
        who = "AAM alone" if metrics["aam_alone"] else "The model"
        lines += ["", f"{who} on its own train split (optimistic): {brief}."]
    return lines


def _cross_validation_lines(cv: Mapping[str, Any]) -> list[str]:
    """The design, each model's mean out-of-fold figures, AAM's paired differences and the
    depth verdict of the cross-validation that the model's recipe went through."""
    folds, repeats, group = cv["folds"], cv["repeats"], cv["group_column"]
    who = cross_validated_by(cv)
    if group is None:
        design = (
            f"{folds} folds x {repeats} repeats, {cv['n_samples']} samples (no group column: "
            "each sample its own group, so repeated samples of one subject may sit on both "
            "sides of a fold)"
        )
    else:
        design = (
            f"{folds} folds grouped by {group!r} x {repeats} repeats, {cv['n_samples']} samples "
            f"in {cv['n_groups']} groups"
        )
    lines = [
        f"{design}: every figure is out-of-fold, the mean over the {folds * repeats} test "
        f"folds, each scored on {who} held out of its model's training.",
        "",
    ]
    metric, models = cv["primary_metric"], cv["models"]
    names = [metric]
    for entry in models.values():
        names += [n for n in entry["per_sample"] if n not in names]
    rows = [
        (
            model_title(name),
            *(entry["per_sample"].get(n) for n in names),
            (entry["subject_weighted"] or {}).get(metric),
        )
        for name, entry in models.items()
    ]
    lines += _table(("model", *names, f"{metric}, subject-weighted"), rows)
    differences = cv["differences"]
    if differences:
        better = "higher" if metric in MAXIMISED else "lower"
        lines += [
            "",
            f"AAM minus each other model in {metric} ({better} is better), paired fold by fold, "
            "with a bootstrap 95% interval; a side is better only when the whole interval "
            "lies on its side of zero:",
            "",
        ]
        rows = []
        for key, d in differences.items():
            other = model_title(key.removeprefix("aam-"))
            interval = None
            if d["low"] is not None or d["high"] is not None:
                interval = f"{number(d['low'])} to {number(d['high'])}"
            verdict = {"aam": "AAM", "other": other, "neither": "neither"}.get(d["better"])
            rows.append((other, d["mean"], interval, verdict))
        lines += _table(("AAM minus", "mean", "95% interval", "better"), rows)
    depth = cv.get("depth_confound") or {}
    if depth.get("flagged"):
        message = depth.get("message") or "sequencing depth alone predicts the target"
        lines += ["", f"**Depth confound:** {message}."]
    return lines
