"""Browser: every settings form saves twice in a row and loses nothing (issue 21).

The Twilio card used to show the previous values after Save (``clear_on_submit`` reset the
fields to what they showed before the save), so the next Save wrote them back: the audit
log said ``messagingServiceSid: MG… → None`` for a field the owner never touched.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import OWNER, App

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def app(page, app_url, artifacts) -> App:
    return App(page, app_url, artifacts)


def _stored(app: App) -> dict:
    from engine.store.db import get_engine
    from engine.store.models import SettingsAudit, Tenant
    from sqlmodel import Session, select

    with Session(get_engine(app.database_url)) as s:
        tenant = s.exec(select(Tenant).where(Tenant.slug == "demo")).one()
        audit = s.exec(select(SettingsAudit).where(SettingsAudit.tenant_id == tenant.id)).all()
        return {"settings": tenant.settings, "audit": [(a.area, a.changes) for a in audit]}


def test_twilio_saved_twice_keeps_the_messaging_service(app: App):
    page = app.page
    app.login(*OWNER)
    app.nav("Settings & users")
    app.tab("Channels")
    card = page.locator(".st-key-settings_ch_card_sms")

    def field(name):
        return card.get_by_role("textbox", name=name)

    field("Account SID").fill("AC0123456789")
    field("Auth token (not set)").fill("twilio-token-1234")
    field("Messaging service SID").fill("MG0123456789")
    field("Messaging service SID").press("Tab")
    card.get_by_text("Send through this provider").click()
    card.get_by_role("button", name="Save").click()
    app.settle()
    card.get_by_text("Saved").first.wait_for()
    assert field("Messaging service SID").input_value() == "MG0123456789"
    assert field("Account SID").input_value() == "AC0123456789"
    card.get_by_role("button", name="Save").click()
    app.settle()
    stored = _stored(app)
    assert stored["settings"]["channels"]["sms"]["messagingServiceSid"] == "MG0123456789"
    assert not any(
        isinstance(v, dict) and v.get("to") is None and v.get("from") for _, ch in stored["audit"] for v in ch.values()
    ), stored["audit"]
