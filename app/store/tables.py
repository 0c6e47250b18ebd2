"""Database tables (SQLAlchemy 2 declarative). The API's schemas live elsewhere (app/api).

Ids are strings the service generates (``ds_``, ``job_``, ``mdl_`` + 16 hex characters).
Timestamps are stored in UTC and always come back timezone-aware. JSON columns are JSONB on
PostgreSQL. Whatever the database cannot enforce about a value (a state name, a JSON shape) is
checked where the value is made (app.contracts, the API schemas).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

ID_LENGTH = 40
OWNER_LENGTH = 100
NAME_LENGTH = 200
SHA256_LENGTH = 64


def new_id(prefix: str) -> str:
    """``<prefix>_`` and 16 random hex characters (64 bits from ``secrets``)."""
    return f"{prefix}_{secrets.token_hex(8)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC that always comes back timezone-aware (SQLite drops tzinfo).

    Naive datetimes are refused: whether one meant local time or UTC cannot be known.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: timestamps must carry tzinfo")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> TypeEngine[Any]:
    # none_as_null: Python None is SQL NULL (not the JSON literal null) in nullable columns.
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _serial() -> TypeEngine[int]:
    # BIGINT on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY (the rowid).
    return BigInteger().with_variant(Integer(), "sqlite")


def _empty_metrics() -> dict[str, Any]:
    return {"train": {}, "validation": {}, "baseline": {}}


class Base(DeclarativeBase):
    # Named constraints: alembic's batch mode (SQLite) can only drop or alter a named one.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(OWNER_LENGTH), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # role (table, tree, metadata, sequences, distance_matrix) -> {"sha256", "name", "size"}
    files: Mapped[dict[str, Any]] = mapped_column(_json())
    summary: Mapped[dict[str, Any]] = mapped_column(_json())  # the POST /datasets report


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(OWNER_LENGTH), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # app.contracts.JobKind
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    state: Mapped[str] = mapped_column(String(20), index=True)  # app.contracts.JobState
    spec: Mapped[dict[str, Any]] = mapped_column(_json())  # the validated JobSpec
    # Not a foreign key: a dataset may be deleted once no active job uses it, and finished
    # jobs keep its id as history (like Model.dataset_id). See jobs.dataset_in_use.
    dataset_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    base_model_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    # predict: the model applied; pretrain/train: the model registered on success
    model_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    progress: Mapped[dict[str, Any]] = mapped_column(_json(), default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(_json(), default=_empty_metrics)
    best: Mapped[dict[str, Any]] = mapped_column(_json(), default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    device: Mapped[str | None] = mapped_column(String(50))  # set when a worker claims it
    worker: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    error: Mapped[dict[str, Any] | None] = mapped_column(_json())  # {"type", "detail"}
    report: Mapped[dict[str, Any] | None] = mapped_column(_json())
    idempotency_key: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    outputs: Mapped[dict[str, Any]] = mapped_column(_json(), default=dict)  # name -> sha256
    log_lines: Mapped[int] = mapped_column(Integer, default=0)


class JobMetric(Base):
    __tablename__ = "job_metrics"
    __table_args__ = (UniqueConstraint("job_id", "epoch", "split"),)

    id: Mapped[int] = mapped_column(_serial(), primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(50))
    values: Mapped[dict[str, Any]] = mapped_column(_json())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobLog(Base):
    __tablename__ = "job_logs"
    __table_args__ = (UniqueConstraint("job_id", "line"),)

    id: Mapped[int] = mapped_column(_serial(), primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)  # 1-based, contiguous per job
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    message: Mapped[str] = mapped_column(Text)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(OWNER_LENGTH), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    kind: Mapped[str] = mapped_column(String(20))  # encoder | regressor | classifier
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    dataset_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))  # not a FK: see Job
    target: Mapped[dict[str, Any] | None] = mapped_column(_json())
    config: Mapped[dict[str, Any]] = mapped_column(_json())
    metrics: Mapped[dict[str, Any]] = mapped_column(_json())
    n_parameters: Mapped[int] = mapped_column(BigInteger)
    checkpoint_sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH), index=True)
    plots: Mapped[dict[str, Any]] = mapped_column(_json(), default=dict)  # name -> sha256
    source: Mapped[str] = mapped_column(String(20))  # job | import
    details: Mapped[dict[str, Any]] = mapped_column(_json(), default=dict)


class Worker(Base):
    """A worker process seen recently (it upserts its row on start and with each heartbeat);
    /ready and /metrics read this table, which every host shares through the database."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    device: Mapped[str] = mapped_column(String(50))
    queues: Mapped[str] = mapped_column(String(NAME_LENGTH))  # comma-separated
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    job_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))  # the job it runs, if any
