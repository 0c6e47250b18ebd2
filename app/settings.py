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

    data_dir: Path = Path("data")
    database_url: str | None = None  # default: SQLite file in the data directory (WAL mode)
    broker_url: str | None = None  # default: embedded broker (SQLite file in the data dir)
    api_keys: Annotated[list[ApiKey], NoDecode] = Field(default_factory=list)
    keys_file: Path | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    upload_limit_bytes: int = Field(default=2 * 1024**3, gt=0)
    sync_predict_limit: int = Field(default=2000, gt=0)
    model_cache_bytes: int = Field(default=2 * 1024**3, gt=0)
    predict_device: str = "cpu"
    # ASV vectors a loaded model keeps between prediction requests (0: off); see
    # aam_core.vector_cache. Counted in the model cache's memory budget.
    predict_vector_cache: int = Field(default=65_536, ge=0)
    # PyTorch threads per prediction in the API process. Requests run side by side in the
    # thread pool; one thread each avoids oversubscribing cores (measured: 2 threads per request
    # on a busy 2-core host made a warm single-sample prediction ~20x slower).
    predict_threads: int = Field(default=1, ge=1, le=256)
    # Predictions that run at once in an API process (0: one per core it may use); the
    # others wait for a slot. Measured on a 2-core VM (bench/api.py), 32 clients each asking
    # for one sample: 2 at once took 7.4-8.6 ms of server CPU per prediction, p50 165-202 ms,
    # p99 216-259 ms; 40 at once 12.3-15.6 ms, p50 282-369 ms, p99 450-517 ms.
    predict_concurrency: int = Field(default=0, ge=0, le=256)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # API processes (uvicorn workers) behind the one port. Each holds its own model cache
    # (model_cache_bytes each); on SQLite their writes queue on the database's lock file.
    api_workers: int = Field(default=1, ge=1, le=64)
    # Threads per API process for the short database work of requests (app/api/threads.py).
    api_threads: int = Field(default=2, ge=1, le=256)
    # Run each API process's event loop and request threads on one core (several processes on
    # different cores); predictions and upload checks still use every core. Measured on the
    # 2-core VM, 32 clients submitting and reading jobs, three interleaved runs each: 2.9-3.3
    # ms of server CPU per submission and read pinned, 3.3-3.6 ms not; p99 106-123 ms against
    # 124-150 ms.
    api_pin_core: bool = True
    # workers
    device: str = "auto"  # the one device a worker serves: cuda:0, cpu or auto
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    heartbeat_timeout_seconds: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    cancel_grace_seconds: float = Field(default=30.0, gt=0)
    worker_queues: str = Field(default="gpu,cpu", pattern=r"^\s*[\w.-]+(\s*,\s*[\w.-]+)*\s*$")
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
    def open_mode(self) -> bool:
        return not self.api_keys

    def check_bind(self, host: str | None = None) -> None:
        """Refuse to serve without keys on anything but loopback (API.md, Auth)."""
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
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"
