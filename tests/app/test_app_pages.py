"""Every page renders for every role that may see it; roles see only what they may use."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from engine.uow import unit_of_work
from tests.app.conftest import APP, PASSWORD, ROLES

PAGES = {
    "pages/workflows.py": ROLES,
    "pages/builder.py": ("owner", "editor"),
    "pages/templates.py": ("owner", "editor"),
    "pages/history.py": ROLES,
    "pages/executions.py": ROLES,
    "pages/insights.py": ROLES,
    "pages/settings.py": ("owner",),
    "pages/outbox.py": ROLES,
}


def _no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.parametrize("page,role", [(p, r) for p, roles in PAGES.items() for r in roles])
def test_page_renders_for_role(app_factory, page, role):
    at = app_factory(role, page)
    _no_exceptions(at)
    assert at.title, f"{page} shows a title"


def test_logged_out_visitor_sees_the_login_form(studio):
    at = AppTest.from_file(APP, default_timeout=60).run()
    _no_exceptions(at)
    assert at.text_input(key="login_email") is not None
    assert not at.session_state["auth_actor"] if "auth_actor" in at.session_state else True


def test_wrong_password_shows_a_clear_message(studio):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_email").input("owner@demo.studio")
    at.text_input(key="login_password").input("not-the-password")
    at.button[0].click().run()
    _no_exceptions(at)
    assert any("Wrong e-mail or password" in e.value for e in at.error)


def test_throttled_login_shows_the_wait_message(studio):
    at = AppTest.from_file(APP, default_timeout=60).run()
    # Each failure after the free ones doubles the lock (2 s, 4 s, 8 s ...): on a slow machine the
    # first lock may pass before the next script run, a later one will not.
    for _ in range(8):
        at.text_input(key="login_email").input("editor@demo.studio")
        at.text_input(key="login_password").input("wrong-password")
        at.button[0].click().run()
        if any("Try again in" in w.value for w in at.warning):
            break
    assert any("Try again in" in w.value for w in at.warning)


def test_login_with_the_right_password_opens_the_workflows(studio):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_email").input("owner@demo.studio")
    at.text_input(key="login_password").input(PASSWORD)
    at.button[0].click().run()
    _no_exceptions(at)
    assert at.session_state["auth_actor"].role == "owner"
    assert at.session_state["auth_tenant_name"] == studio["tenant_name"]
    assert any(t.value == "Workflows" for t in at.title)


def test_user_in_two_studios_picks_one(studio):
    from engine import services
    from engine.security import auth

    with unit_of_work(studio["db"]) as uow:
        second = services.create_tenant(uow=uow, slug="second", name="Second Studio")
    with unit_of_work(studio["db"]) as uow:
        auth.add_membership(uow=uow, user_id=studio["user_ids"]["editor"], tenant_id=second.id, role="analyst")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_email").input("editor@demo.studio")
    at.text_input(key="login_password").input(PASSWORD)
    at.button[0].click().run()
    assert "auth_actor" not in at.session_state
    at.radio(key="login_tenant").set_value(second.id)
    at.button(key="login_continue").click().run()
    _no_exceptions(at)
    assert at.session_state["auth_actor"].tenant_id == second.id
    assert at.session_state["auth_actor"].role == "analyst"


def test_analyst_sees_no_edit_controls(app_factory):
    at = app_factory("analyst")
    _no_exceptions(at)
    keys = [b.key or "" for b in at.button]
    assert not any(
        k.startswith(("workflows_new", "workflows_edit_", "workflows_delete_", "workflows_run_", "workflows_dup_"))
        for k in keys
    )
    assert at.menu_button, "the read-only menu is there"
    assert all([o.split(": ", 1)[1] for o in m.options] == ["Export JSON", "Version history"] for m in at.menu_button)
    assert not at.toggle, "analysts see an enabled badge, not a toggle"


def test_editor_sees_toggles_and_menus(app_factory):
    at = app_factory("editor")
    _no_exceptions(at)
    assert len(at.toggle) == 9  # the demo studio's five workflows and the spec's four examples
    assert at.button(key="workflows_new") is not None
    menu = at.menu_button[0]
    assert [o.split(": ", 1)[1] for o in menu.options] == [
        "Edit",
        "Run now",
        "Duplicate",
        "Export JSON",
        "Version history",
        "Delete",
    ]
    menu.click("Export JSON").run()
    _no_exceptions(at)
    assert at.get("download_button") and at.code[0].language == "json", (
        "export opens a dialog with the JSON and a download"
    )
    at.menu_button[0].click("Delete").run()
    _no_exceptions(at)
    assert any("cannot be undone" in m.value for m in at.markdown) and not at.code, "one dialog at a time"


def test_workflows_search_filters_in_sql(app_factory):
    at = app_factory("owner")
    at.text_input(key="workflows_search").input("missed").run()
    _no_exceptions(at)
    assert len(at.toggle) == 1


def test_toggle_disables_a_workflow(app_factory, studio):
    from engine import services
    from tests.app.conftest import actor_for

    at = app_factory("owner")
    at.toggle[0].set_value(False).run()
    _no_exceptions(at)
    with unit_of_work(studio["db"], read_only=True) as uow:
        page = services.list_workflows(uow=uow, actor=actor_for(studio, "owner"))
    assert sum(not w.enabled for w in page.items) == 1


def test_logout_returns_to_login(app_factory):
    at = app_factory("owner")
    at.button(key="auth_logout").click().run()
    _no_exceptions(at)
    assert "auth_actor" not in at.session_state


def test_the_app_refuses_to_start_without_the_key_of_its_secrets(studio, monkeypatch, tmp_path):
    """Issue 21: a missing key was replaced by a new one and every stored secret stopped working."""
    from engine.settings import get_settings

    monkeypatch.delenv("STUDIO_SECRET_KEY")  # the studio's secrets were written with the session's key
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    expected = tmp_path / "data" / "secret.key"
    assert [e.value for e in at.error] and f"expected at {expected}" in at.error[0].value
    assert not expected.exists() and not at.text_input  # no new key, no login form
