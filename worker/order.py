"""What the child process runs: a plain, JSON-serialisable order written by the worker (which
reads the database and storage) and read by :mod:`worker.runner` (which reads neither)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aam_core.io.files import atomic_write

ORDER_FILE = "order.json"


@dataclass(frozen=True, kw_only=True)
class JobOrder:
    job_id: str
    kind: str  # pretrain | train | predict | cross_validate
    out_dir: str  # the run directory: checkpoints, metrics, plots (predict: predictions.tsv)
    device: str  # cpu | cuda:N | cuda (torchrun: each rank takes its LOCAL_RANK)
    nproc: int = 1  # processes (GPUs) under torchrun; 1: a single process
    files: dict[str, str] = field(default_factory=dict)  # role -> path in artifact storage
    names: dict[str, str] = field(default_factory=dict)  # role -> the uploaded file's name
    dataset_sha256: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the job's settings, for the planner
    target: dict[str, str] | None = None  # train, cross_validate: {"column", "task"}
    base_checkpoint: str | None = None  # train: the base model's checkpoint
    freeze_base: bool = False
    model_kind: str | None = None  # train: aam | ensemble | auto (None: the default)
    model_checkpoint: str | None = None  # predict: the model applied
    model_name: str | None = None  # how messages name the base or applied model (its ID)
    resume: bool = False  # continue from out_dir/checkpoints/last.pt
    cv: dict[str, Any] | None = None  # cross_validate: the design (CrossValidationSpec)
    refit: bool = False  # cross_validate: then train the final model on every sample

    @property
    def predictions_path(self) -> Path:
        return Path(self.out_dir) / "predictions.tsv"

    def write(self, path: Path) -> None:
        """Write atomically (a requeued attempt rewrites it)."""
        with atomic_write(path) as fh:
            json.dump(dataclasses.asdict(self), fh, indent=2)

    @classmethod
    def read(cls, path: Path) -> JobOrder:
        return cls(**json.loads(path.read_text(encoding="utf-8")))
