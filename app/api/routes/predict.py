"""``POST /predict``: synchronous prediction for interactive sizes (docs/api.md, Synchronous
prediction).

The model comes from the LRU cache (loaded once per checkpoint). Everything that blocks runs
in worker threads, off the event loop: reading an uploaded table in the blocking pool, and the
model's row and the prediction in one of the process's prediction slots. Larger tables go
through a ``predict`` job.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from aam_core.io import FeatureTable, read_sequences, read_table
from aam_core.io.table import table_from_counts
from aam_core.predict import PRECISIONS as PREDICTION_PRECISIONS
from app.api.deps import CallerDep, Services, ServicesDep
from app.api.errors import ApiError
from app.api.schemas import (
    PredictRequest,
    PredictResponse,
    problem_responses,
)
from app.api.threads import run_blocking
from app.api.uploads import read_multipart
from app.services.predict import predict_table

router = APIRouter(tags=["prediction"])

OUTPUTS = ("prediction", "embedding")
PRECISIONS = tuple(PREDICTION_PRECISIONS)  # fp32, fp64


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``#/$defs/...`` references replaced by the definitions
    (these models do not nest recursively). Inside the OpenAPI document such a reference points
    at a ``$defs`` of the document root, which does not exist: ReDoc refused the whole page."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inlined(PredictRequest.model_json_schema())},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model_id", "table"],
                    "properties": {
                        "model_id": {"type": "string"},
                        "table": {
                            "type": "string",
                            "format": "binary",
                            "description": "BIOM v2.1/v1 or QIIME 2 .qza table",
                        },
                        "sequences": {
                            "type": "string",
                            "format": "binary",
                            "description": "FASTA or .qza, when feature IDs are not DNA",
                        },
                        "output": {"type": "string", "enum": list(OUTPUTS)},
                        "precision": {"type": "string", "enum": list(PRECISIONS)},
                    },
                }
            },
        },
    }
}


def table_from_samples(request: PredictRequest) -> FeatureTable:
    """A count table from JSON samples (feature IDs are the sequences themselves), under the
    rule every table entry follows (aam_core.io.table)."""
    return table_from_counts([(s.id, s.counts) for s in request.samples], file="request body")


@dataclass(frozen=True)
class _Asked:
    """A prediction request, from either body form."""

    model_id: str
    output: str
    precision: str
    n_samples: int
    table: FeatureTable | Callable[[], FeatureTable]  # a table, or what builds it
    sequences: tuple[dict[str, str], str] | None  # (sequences, file name) when uploaded


async def _parse(request: Request, services: Services) -> _Asked:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = PredictRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors()]
            first = errors[0]
            where = ".".join(str(p) for p in first["loc"][1:]) or "body"
            raise ApiError(
                422,
                f"invalid prediction request: {where}: {first['msg']}",
                kind="validation-error",
                errors=errors,
            ) from None
        build = functools.partial(table_from_samples, body)
        return _Asked(body.model_id, body.output, body.precision, len(body.samples), build, None)
    if content_type != "multipart/form-data":
        raise ApiError(
            415, "POST /predict takes application/json (samples) or multipart/form-data (table)"
        )
    settings = services.settings
    upload = await read_multipart(
        request,
        temp_dir=settings.uploads_dir,
        limit=settings.upload_limit_bytes,
        files={"table", "sequences"},
    )
    try:
        unknown = sorted(set(upload.fields) - {"model_id", "output", "precision"})
        if unknown:
            expected = "expected model_id, output, precision, and files table and sequences"
            raise ApiError(422, f"unknown form field(s) {', '.join(unknown)}: {expected}")
        model_id = upload.fields.get("model_id", "").strip()
        if not model_id:
            raise ApiError(422, "model_id is required (the model to apply)")
        output = upload.fields.get("output", "prediction")
        if output not in OUTPUTS:
            raise ApiError(422, f"output must be 'prediction' or 'embedding', got {output!r}")
        precision = upload.fields.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise ApiError(422, f"precision must be 'fp32' or 'fp64' (exact), got {precision!r}")
        if "table" not in upload.files:
            raise ApiError(422, "the 'table' file is required (BIOM v2.1/v1 or .qza)")
        table_file = upload.files["table"]
        table = await run_blocking(read_table, table_file.path, name=table_file.filename)
        sequences = None
        if "sequences" in upload.files:
            seq_file = upload.files["sequences"]
            sequences = (
                await run_blocking(read_sequences, seq_file.path, name=seq_file.filename),
                seq_file.filename,
            )
        return _Asked(model_id, output, precision, table.n_samples, table, sequences)
    finally:
        upload.cleanup()


@router.post(
    "/predict",
    response_model=PredictResponse,
    openapi_extra=_BODY,
    responses=problem_responses(400, 401, 404, 413, 415, 422, 507),
)
async def predict(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
) -> PredictResponse:
    """Predict samples with a registered model: JSON samples (counts by sequence) or an
    uploaded table. Sizes above ``AAM_SYNC_PREDICT_LIMIT`` samples answer 413."""
    asked = await _parse(request, services)
    limit = services.settings.sync_predict_limit
    if asked.n_samples > limit:
        raise ApiError(
            413,
            f"{asked.n_samples} samples is more than synchronous prediction serves "
            f"({limit}, AAM_SYNC_PREDICT_LIMIT): upload the table as a dataset and submit a "
            "'predict' job (POST /jobs)",
        )
    predictions = await services.predictions.run(
        predict_table,
        services,
        caller.scope,
        asked.model_id,
        asked.table,
        asked.sequences,
        asked.output,
        asked.precision,
    )
    return PredictResponse(
        model_id=asked.model_id,
        device=services.settings.predict_device,
        precision=asked.precision,
        predictions=predictions,
    )
