"""A prediction for the service: the model from the process's cache (one entry per checkpoint
and precision), the table's sequences, and the answer's entries. Called in a prediction slot
(``POST /predict``, the dashboard's model page): it blocks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aam_core.io import FeatureTable, resolve_sequences
from aam_core.predict import PredictionResult, Predictor
from aam_core.vector_cache import DEFAULT_CAPACITY
from app.api.deps import Services
from app.api.errors import not_found
from app.api.schemas import SamplePredictionOut
from app.store import model_checkpoint


def _document(result: PredictionResult, output: str) -> list[SamplePredictionOut]:
    out = []
    for s in result.samples:
        entry: dict[str, Any] = {
            "sample_id": s.sample_id,
            "n_features_used": s.n_features_used,
            "fraction_reads_used": s.fraction_reads_used,
            "warnings": s.warnings,
        }
        if output == "embedding":
            entry["embedding"] = s.embedding
        elif s.label is not None:
            entry["label"], entry["probabilities"] = s.label, s.probabilities
        elif s.prediction is not None:
            entry["prediction"] = s.prediction[0] if len(s.prediction) == 1 else s.prediction
        if output != "embedding" and s.components is not None:
            entry["components"] = s.components
        out.append(SamplePredictionOut(**entry))
    return out


def _predictor(services: Services, sha256: str, precision: str) -> Predictor:
    settings = services.settings
    return services.cache.get(
        (sha256, precision),
        lambda: Predictor.from_path(
            services.storage.path(sha256),
            device=settings.predict_device,
            # a lab's next samples share most of their ASVs with the last ones
            vector_cache=DEFAULT_CAPACITY,
            precision=precision,
        ),
    )


def predict_table(
    services: Services,
    scope: str | None,
    model_id: str,
    table: FeatureTable | Callable[[], FeatureTable],
    sequences: tuple[dict[str, str], str] | None,
    output: str,
    precision: str = "fp32",
) -> list[SamplePredictionOut]:
    """The blocking part, in a prediction slot: the table (``table`` may build it: a JSON
    request's, here rather than in a thread of its own), the model's row (404 when it is not
    the caller's), the table's sequences, the prediction and the answer's entries."""
    if callable(table):
        table = table()
    with services.sessions() as session:
        sha256 = model_checkpoint(session, model_id, scope)
    if sha256 is None:
        raise not_found("model", model_id)
    if sequences is None:
        resolved = resolve_sequences(table, None)
    else:
        resolved = resolve_sequences(table, sequences[0], file=sequences[1])
    predictor = _predictor(services, sha256, precision)
    result = predictor.predict(table, resolved, embeddings=output == "embedding")
    return _document(result, output)
