"""Service settings, read once at the process edge (``AAM_`` environment variables) and passed
down. Settings refuse unsafe values: an open (keyless) server must listen on loopback only."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_KEY_LENGTH = 16
HEARTBEATS_PER_TIMEOUT = 12  # 10 s beats at the default 120 s timeout


class ApiKey(BaseModel):
    owner: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    key: SecretStr
    admin: bool = False

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(f"API keys must have at least {MIN_KEY_LENGTH} characters")
        return value


def parse_keys(text: str) -> list[dict[str, Any]]:
    """Keys as JSON (``[{"owner": ..., "key": ..., "admin": true}]``) or as lines / comma-
    separated entries ``owner:key`` or ``owner:key:admin``."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        loaded = json.loads(text)
        if not isinstance(loaded, list):
            raise ValueError("API keys JSON must be a list")
        return loaded
    entries = []
    for raw in text.replace("\n", ",").split(","):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "admin"):
            raise ValueError(
                f"an API key entry must be owner:key or owner:key:admin, got {item[:40]!r}"
            )
        entries.append({"owner": parts[0], "key": parts[1], "admin": len(parts) == 3})
    return entries


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AAM_", extra="ignore")

    # Where the SQLite database, the embedded broker, uploads and artifacts live.
    data_dir: Path = Path("data")
    # The record of datasets, jobs and models (default: SQLite in the data directory; use
    # PostgreSQL when several hosts or API processes share it).
    database_url: str | None = None
    # The job queue: redis://... (default: an embedded broker on SQLite in the data directory).
    broker_url: str | None = None
    # Where datasets, checkpoints, outputs and plots live: file:///absolute/path (a local or
    # shared directory; default: the data directory's artifacts/) or s3://bucket/prefix (an
    # S3-compatible object store; credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    # AWS_DEFAULT_REGION or the rest of boto3's chain).
    storage_url: str | None = None
    # The object store's address when it is not AWS S3 (MinIO, Ceph RGW, SeaweedFS, Garage).
    s3_endpoint_url: str | None = None
    # Bytes of this host's cache of objects read from s3:// storage; the least recently used
    # are removed beyond it. It must hold the largest dataset file or checkpoint.
    cache_bytes: int = Field(default=20 * 1024**3, gt=0)
    # API keys: owner:key or owner:key:admin, comma-separated, or a JSON list.
    api_keys: Annotated[list[ApiKey], NoDecode] = Field(default_factory=list)
    # A file of API keys in the same format, one per line, read besides api_keys.
    keys_file: Path | None = None
    # Origins of browser frontends allowed to call the API (CORS), comma-separated.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Largest upload in bytes; a larger one is refused with 413.
    upload_limit_bytes: int = Field(default=2 * 1024**3, gt=0)
    # Most samples in one synchronous POST /predict; larger tables go through a predict job.
    sync_predict_limit: int = Field(default=2000, gt=0)
    # Memory budget in bytes of each API process's cache of loaded models.
    model_cache_bytes: int = Field(default=2 * 1024**3, gt=0)
    # Device of the API's synchronous predictions: cpu, or cuda:N on a host whose API has a GPU.
    predict_device: str = "cpu"
    # Predictions that run at once in an API process (0: one per core it may use); the others
    # wait for a slot.
    predict_concurrency: int = Field(default=0, ge=0, le=256)
    # The API's address and port.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # API processes (uvicorn workers) behind the one port, each with its own model cache.
    api_workers: int = Field(default=1, ge=1, le=64)
    # workers
    # The one device a worker serves: cuda:0, cuda (all GPUs as one slot), cpu or auto.
    device: str = "auto"
    # A running job whose worker has been silent this long is requeued (or failed past
    # max_attempts); workers report every twelfth of it (heartbeat_seconds).
    heartbeat_timeout_seconds: float = Field(default=120.0, gt=0)
    # Attempts of a job whose worker died before the job is marked failed.
    max_attempts: int = Field(default=3, ge=1)
    # Seconds a cancelled or interrupted job's training process gets to stop before it is killed.
    cancel_grace_seconds: float = Field(default=30.0, gt=0)
    # Broker queues a worker takes messages from: gpu, the jobs' queue (the one there is).
    worker_queues: str = Field(default="gpu", pattern=r"^\s*[\w.-]+(\s*,\s*[\w.-]+)*\s*$")
    # Log level of every process: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return parse_keys(value) if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return (
                json.loads(text)
                if text.startswith("[")
                else [o.strip() for o in text.split(",") if o.strip()]
            )
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        """Blank (``AAM_S3_ENDPOINT_URL=`` in an env file) is unset: AWS S3."""
        return value.strip() or None if value is not None else None

    @field_validator("storage_url")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("file", "s3"):
            raise ValueError(
                f"AAM_STORAGE_URL {value!r}: expected file:///absolute/path or s3://bucket/prefix"
            )
        if scheme == "s3" and not value[len("s3://") :].split("/", 1)[0]:
            raise ValueError(f"AAM_STORAGE_URL {value!r} names no bucket: s3://bucket/prefix")
        if scheme == "file" and not value.startswith("file:///"):
            raise ValueError(f"AAM_STORAGE_URL {value!r}: a file URL is file:///absolute/path")
        return value

    @model_validator(mode="after")
    def _checks(self) -> Settings:
        if self.keys_file is not None:
            self.api_keys = [
                *self.api_keys,
                *(ApiKey(**e) for e in parse_keys(self.keys_file.read_text(encoding="utf-8"))),
            ]
        keys = [k.key.get_secret_value() for k in self.api_keys]
        if len(set(keys)) != len(keys):
            raise ValueError("two API keys are identical; every key must be unique")
        return self

    @property
    def heartbeat_seconds(self) -> float:
        """How often a worker and its running job report that they are alive: often enough
        that a missed beat or two is far from the timeout."""
        return self.heartbeat_timeout_seconds / HEARTBEATS_PER_TIMEOUT

    @property
    def open_mode(self) -> bool:
        return not self.api_keys

    def check_bind(self, host: str | None = None) -> None:
        """Refuse to serve without keys on anything but loopback (docs/api.md, Authentication)."""
        host = host or self.host
        if self.open_mode and not is_loopback(host):
            raise ValueError(
                f"refusing to listen on {host} without API keys: set AAM_API_KEYS or "
                "AAM_KEYS_FILE, or bind to 127.0.0.1"
            )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'aam.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or self.artifacts_dir.resolve().as_uri()

    @property
    def cache_dir(self) -> Path:
        """This host's cache of objects from s3:// storage."""
        return self.data_dir / "cache"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"
