"""Shared fixtures: a migrated database per test on SQLite and on PostgreSQL, tenants, actors.

PostgreSQL: ``TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
is used to create a throw-away database per test session. When the server is unreachable,
PostgreSQL tests are skipped with the reason - except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from engine import services
from engine.security import auth
from engine.store.db import get_engine, migrate
from engine.store.models import SQLModel
from engine.uow import unit_of_work

# The suite's thousand throw-away SQLite files keep no full-disk reserve (8 MB each by default,
# engine/store/checkpoint.py); the full-disk tests set their own.
os.environ.setdefault("STUDIO_SQLITE_RESERVE_MB", "0")

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# One secret key for the test session, in this process and in every process a test starts (CLI,
# API, worker, app): tests never read or create the checkout's data/secret.key, and the databases
# they hand to those processes open with the key they were written with.
os.environ.setdefault("STUDIO_SECRET_KEY", Fernet.generate_key().decode())


def _pg_reachable() -> str | None:
    try:
        eng = sa.create_engine(
            PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1), connect_args={"connect_timeout": 3}
        )
        with eng.connect() as conn:
            conn.exec_driver_sql("select 1")
        eng.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}"


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A fresh, migrated PostgreSQL database for this test session (dropped at the end)."""
    reason = _pg_reachable()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)
    admin = sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    name = f"sa_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    migrate(get_engine(url))
    yield url
    get_engine(url).dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is faster)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = get_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # closing the last connection checkpoints the WAL into the file
    return path


def _truncate_all(url: str) -> None:
    engine = get_engine(url)
    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {names} CASCADE")


@pytest.fixture
def sqlite_db(tmp_path, sqlite_template):
    path = tmp_path / "studio.db"
    shutil.copy(sqlite_template, path)
    engine = get_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_db(postgres_url):
    _truncate_all(postgres_url)
    yield get_engine(postgres_url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request):
    """A migrated, empty database: once on SQLite, once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_db")


@pytest.fixture
def tenant_factory(db):
    def make(slug: str | None = None, timezone: str = "Europe/Berlin", **settings) -> services.TenantOut:
        slug = slug or f"studio-{uuid.uuid4().hex[:8]}"
        with unit_of_work(db) as uow:
            return services.create_tenant(
                uow=uow, slug=slug, name=slug.title(), timezone=timezone, settings=settings or None
            )

    return make


@pytest.fixture
def tenant(tenant_factory):
    return tenant_factory("studio-a")


@pytest.fixture
def actor(tenant) -> auth.Actor:
    """The owner of ``tenant``."""
    return auth.system_actor(tenant.id)


@pytest.fixture
def other_actor(tenant_factory) -> auth.Actor:
    """The owner of a second tenant, for isolation tests."""
    return auth.system_actor(tenant_factory("studio-b").id)


@pytest.fixture
def spec_examples():
    from engine.demo.seed import spec_examples

    return spec_examples()
