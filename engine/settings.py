"""Process settings from the environment (one pydantic-settings object)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    #: SQLAlchemy URL. Default: a SQLite file under ``STUDIO_DATA_DIR``.
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    #: Where the embedded SQLite file lives.
    data_dir: Path = Field(default=Path("data"), alias="STUDIO_DATA_DIR")
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
    #: a studio may set its own on the settings page (engine/retention.py).
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

    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalize_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'studio.db').resolve()}"


def normalize_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
