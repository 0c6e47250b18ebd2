"""What a model's dashboard page shows beyond its row: the monitored metric beside the random
forest's (the list), the card's metrics beside the baselines, the warning when sequencing depth
alone predicts the target, and where the model came from (dataset -> job -> model, and the
base model a fine-tuned one started from)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy.orm import Session

from app.store import Model, get_dataset, get_job, get_model


@dataclass(frozen=True)
class Headline:
    """The monitored metric on the validation split, for the model and the random forest."""

    name: str
    model: Any
    forest: Any


# CommonMark with tables; raw HTML in the text is shown as text, never passed through (a card
# holds user-named things: target columns, dataset file names, model names).
_CARD = MarkdownIt("commonmark", {"html": False}).enable("table")


def card_html(markdown: str) -> Markup:
    """The model card's Markdown as HTML, safe to put in a page; its headings two levels down
    (the page's own h1 and its "Model card" h2 come first)."""
    tokens = _CARD.parse(markdown)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 2, 6)}"
    return Markup(_CARD.renderer.render(tokens, _CARD.options, {}))


def headline(metrics: dict[str, Any]) -> Headline | None:
    """From a model row's metrics (the checkpoint's): None when no monitor was recorded (an
    imported checkpoint written without training metrics)."""
    best = metrics.get("best") or {}
    monitor = best.get("monitor")
    if not monitor:
        return None
    ensemble = (metrics.get("ensemble") or {}).get("validation") or {}
    served = ensemble.get("ensemble") or best.get("validation") or {}
    baselines = metrics.get("baselines") or {}
    forest = (
        (baselines.get("random_forest") or {}).get("validation") or ensemble.get("forest") or {}
    )
    return Headline(monitor, served.get(monitor), forest.get(monitor))


def metric_rows(card: dict[str, Any]) -> list[tuple[str, Any, Any, Any, Any]]:
    """(metric, model, random forest, constant, depth alone) for each metric any of the four
    has, in the model's order first; a value a column lacks is None."""
    metrics = card.get("metrics") or {}
    model = metrics.get("model") or {}
    baselines = metrics.get("baselines") or {}
    forest = baselines.get("random_forest") or {}
    constant = baselines.get("constant") or {}
    depth = baselines.get("depth") or {}
    names = list(dict.fromkeys([*model, *forest, *constant, *depth]))
    return [(n, model.get(n), forest.get(n), constant.get(n), depth.get(n)) for n in names]


def depth_warning(*sources: Mapping[str, Any] | None) -> str | None:
    """The depth-confound warning (aam_core.train.baselines) of the first source that holds a
    verdict, ``depth_confound`` (a model row's metrics, a job's report): its message when the
    labels follow sequencing depth, else None (also for models trained before the check)."""
    for source in sources:
        verdict = (source or {}).get("depth_confound")
        if isinstance(verdict, Mapping):
            return str(verdict["message"]) if verdict.get("confounded") else None
    return None


@dataclass(frozen=True)
class Link:
    """Something the lineage names: its id, and its name when the caller can still open it."""

    id: str
    name: str | None


@dataclass(frozen=True)
class Lineage:
    dataset: Link | None
    job: Link | None
    base_model: Link | None
    base_sha256: str | None  # the base checkpoint's digest, as the checkpoint records it
    source: str


def lineage(session: Session, model: Model, scope: str | None, card: dict[str, Any]) -> Lineage:
    dataset = job = base = None
    if model.dataset_id:
        row = get_dataset(session, model.dataset_id, scope)
        dataset = Link(model.dataset_id, row.name if row else None)
    job_row = get_job(session, model.job_id, scope) if model.job_id else None
    if model.job_id:
        job = Link(model.job_id, job_row.kind if job_row else None)
    if job_row is not None and job_row.base_model_id:
        base_row = get_model(session, job_row.base_model_id, scope)
        base = Link(job_row.base_model_id, base_row.name if base_row else None)
    recorded = (card.get("training") or {}).get("base_model") or {}
    return Lineage(dataset, job, base, recorded.get("sha256"), model.source)
