"""Process settings from the environment (one pydantic-settings object).

The data folder (``STUDIO_DATA_DIR``: the SQLite file, the secret key) is resolved once, to an
absolute path that does not depend on the current directory: by default ``data/`` in the
project folder (the source checkout that holds ``engine/``), or, for an installed package,
``$XDG_DATA_HOME/studio-automations`` (``~/.local/share/studio-automations``). A relative
``STUDIO_DATA_DIR`` is taken from the project folder too, so every command, started from any
folder, finds the same database and the same key.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The folder holding the ``engine`` package (``absolute``, not ``resolve``: a symlinked checkout
#: keeps its own data folder).
_PACKAGE_PARENT = Path(__file__).absolute().parent.parent


def project_dir() -> Path:
    """The source checkout (the folder with ``engine/`` and ``pyproject.toml``), or, for an
    installed package, the per-user data home (``$XDG_DATA_HOME``, default ``~/.local/share``)."""
    if (_PACKAGE_PARENT / "pyproject.toml").is_file():
        return _PACKAGE_PARENT
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share").absolute()


def default_data_dir() -> Path:
    base = project_dir()
    return base / "data" if base == _PACKAGE_PARENT else base / "studio-automations"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    #: SQLAlchemy URL. Default: a SQLite file under ``STUDIO_DATA_DIR``.
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    #: Where the embedded SQLite file and the secret key live: absolute (see the module docstring).
    data_dir: Path = Field(default_factory=default_data_dir, alias="STUDIO_DATA_DIR")
    #: Demo login created by ``python -m engine init``.
    demo_email: str = Field(default="owner@demo.studio", alias="STUDIO_DEMO_EMAIL")
    demo_password: str = Field(default="demo-owner-2026", alias="STUDIO_DEMO_PASSWORD")
    #: Worker: how long a claimed item stays leased before another worker may take it.
    lease_seconds: int = Field(default=60, alias="STUDIO_LEASE_SECONDS")
    #: Worker: a claimed due item's lease, renewed every third of it while the worker lives, so a
    #: dead worker's items go to another within this time (at most ``lease_seconds``).
    claim_lease_seconds: float = Field(default=10.0, gt=0, alias="STUDIO_CLAIM_LEASE_SECONDS")
    #: Worker: idle poll interval in seconds.
    poll_interval: float = Field(default=1.0, alias="STUDIO_POLL_INTERVAL")
    #: Days to keep skipped executions ("why didn't my workflow run?").
    skipped_retention_days: int = Field(default=30, alias="STUDIO_SKIPPED_RETENTION_DAYS")
    #: Default days to keep execution details (step input/output, message bodies, event payloads);
    #: a studio may set its own on the settings page (engine/lifecycle/retention.py).
    retention_details_days: int = Field(default=90, alias="STUDIO_RETENTION_DETAILS_DAYS")
    #: Default days to keep summary rows (executions, messages, events); counts survive as rollups.
    retention_summary_days: int = Field(default=730, alias="STUDIO_RETENTION_SUMMARY_DAYS")
    #: Pruning: rows per transaction, pause between transactions (s), time per worker pass (s).
    prune_batch: int = Field(default=500, alias="STUDIO_PRUNE_BATCH")
    prune_pause: float = Field(default=0.05, alias="STUDIO_PRUNE_PAUSE")
    prune_budget: float = Field(default=2.0, alias="STUDIO_PRUNE_BUDGET")
    #: Words that opt a member out of / back into automated messages (comma-separated).
    opt_out_words: str = Field(
        default="STOP,STOPP,STOPALL,UNSUBSCRIBE,ABMELDEN,ABBESTELLEN", alias="STUDIO_OPT_OUT_WORDS"
    )
    opt_in_words: str = Field(default="START,UNSTOP,ANMELDEN", alias="STUDIO_OPT_IN_WORDS")

    #: Operator switch: let tenant settings point provider adapters at another base URL
    #: (tests, staging). Off by default so a tenant cannot send provider tokens elsewhere.
    allow_provider_base_url: bool = Field(default=False, alias="STUDIO_ALLOW_PROVIDER_BASE_URL")

    #: REST API: seconds a verified API key is trusted without asking the database again.
    #: This is the bound on how long a revoked key keeps working on *another* process
    #: (the process that revokes forgets the key at once). 0 turns the cache off.
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300, alias="STUDIO_API_KEY_CACHE_SECONDS")

    #: REST API: requests a minute per API key (bursts up to the same number); 0 = no limit.
    api_rate_limit: int = Field(default=6000, ge=0, alias="STUDIO_API_RATE_LIMIT")

    #: The public https URL of the REST API app (provider callback URLs are built from it, and
    #: Twilio signs the URL it called, which behind a proxy differs from the one we see).
    public_url: str | None = Field(default=None, alias="STUDIO_PUBLIC_URL")
    #: Where the app reaches the REST API (the process serving /hooks/...), to tell owners whether it is up.
    api_url: str = Field(default="http://127.0.0.1:8000", alias="STUDIO_API_URL")

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Relative to the project folder, never to the current directory."""
        value = value.expanduser()
        return value if value.is_absolute() else project_dir() / value
    #: Storage faults (engine/store/faults.py): seconds a write waits for a lock another process
    #: holds (SQLite busy_timeout, PostgreSQL lock_timeout) before the request is answered 503.
    db_lock_timeout: float = Field(default=5.0, gt=0, le=600, alias="STUDIO_DB_LOCK_TIMEOUT")
    #: SQLite: the write-ahead log is checkpointed and cut back once it passes this size (MB).
    sqlite_wal_limit_mb: int = Field(default=4, ge=1, alias="STUDIO_SQLITE_WAL_LIMIT_MB")
    #: SQLite: MB kept in ``<database>-reserve`` next to the file, given up when the disk is full
    #: so a checkpoint can complete, then taken back (engine/store/checkpoint.py). 0 = none.
    sqlite_reserve_mb: int = Field(default=8, ge=0, alias="STUDIO_SQLITE_RESERVE_MB")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalize_url(self.database_url)
        return f"sqlite:///{self.data_dir / 'studio.db'}"


def normalize_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
