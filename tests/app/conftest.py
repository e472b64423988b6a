"""AppTest fixtures: a seeded SQLite database per test and a logged-in actor for each role."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from engine import services
from engine.demo.seed import init, spec_examples
from engine.security import auth
from engine.security.auth import Actor
from engine.settings import get_settings
from engine.store.db import get_engine
from engine.uow import unit_of_work

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
ROLES = ("owner", "editor", "analyst")
PASSWORD = "studio-pass-2026"


@pytest.fixture(autouse=True)
def navigation_not_pages_folder(monkeypatch):
    """Run every AppTest run through app.py's st.navigation, as the server does.

    Streamlit treats a folder called ``pages/`` as old-style multipage pages until the
    first ``st.navigation`` call switches that off for the process. AppTest resets the
    flag before each run, so without this every rerun would execute the page script
    alone (no login gate, no sidebar). The pages guard themselves anyway.
    """
    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory) -> tuple[Path, dict]:
    """The demo studio plus an editor and an analyst, seeded once and copied per test."""
    path = tmp_path_factory.mktemp("app-db") / "template.db"
    engine = get_engine(f"sqlite:///{path}")
    result = init(engine, demo_email="owner@demo.studio", demo_password=PASSWORD)
    # The demo runs its own workflows; these tests also exercise the spec's four examples.
    with unit_of_work(engine) as uow:
        services.import_workflows(uow=uow, actor=auth.system_actor(result["tenant_id"]), items=spec_examples())
    with unit_of_work(engine, read_only=True) as uow:
        users = {"owner": services.find_tenant(uow=uow, slug_or_id="demo")}
    ids = {}
    for role in ("editor", "analyst"):
        with unit_of_work(engine) as uow:
            user = auth.create_user(uow=uow, email=f"{role}@demo.studio", password=PASSWORD, name=role.title())
        with unit_of_work(engine) as uow:
            auth.add_membership(uow=uow, user_id=user.id, tenant_id=result["tenant_id"], role=role)
        ids[role] = user.id
    with unit_of_work(engine) as uow:
        user, _ = auth.authenticate(uow=uow, email="owner@demo.studio", password=PASSWORD)
    ids["owner"] = user.id
    engine.dispose()
    return path, {"tenant_id": result["tenant_id"], "tenant_name": users["owner"].name, "user_ids": ids}


@pytest.fixture
def studio(tmp_path, monkeypatch, seeded_template):
    """A fresh copy of the seeded database, wired in through DATABASE_URL."""
    template, info = seeded_template
    path = tmp_path / "studio.db"
    shutil.copy(template, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    yield {**info, "url": url, "db": get_engine(url)}
    get_engine(url).dispose()
    get_settings.cache_clear()


def actor_for(studio: dict, role: str) -> Actor:
    return Actor(
        tenant_id=studio["tenant_id"], user_id=studio["user_ids"][role], role=role, email=f"{role}@demo.studio"
    )


@pytest.fixture
def app_factory(studio):
    """``app_factory(role, page=None)``: an AppTest logged in as that role, run (and switched to the page)."""

    def make(role: str, page: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["auth_actor"] = actor_for(studio, role)
        at.session_state["auth_user"] = {"id": studio["user_ids"][role], "email": f"{role}@demo.studio", "name": role}
        at.session_state["auth_tenants"] = [{"id": studio["tenant_id"], "name": studio["tenant_name"], "role": role}]
        at.session_state["auth_tenant_name"] = studio["tenant_name"]
        at.run()
        if page:
            at.switch_page(page)
            at.run()
        return at

    return make
