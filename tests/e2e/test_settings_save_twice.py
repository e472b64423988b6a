"""Browser: every settings form saves twice in a row and loses nothing (issue 21).

The Twilio card used to show the previous values after Save (``clear_on_submit`` reset the
fields to what they showed before the save), so the next Save wrote them back: the audit log
said ``messagingServiceSid: MG… → None`` for a field the owner never touched, and the channel
was switched off again. Each test here saves a form, checks that it shows what was stored,
saves it again, and then compares the stored settings and the audit log with what the owner
did. A second browser session proves that a save writes only what its owner changed.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from engine.store.db import get_engine
from engine.store.models import SettingsAudit, Tenant
from tests.e2e.conftest import OWNER, App

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def app(page, app_url, artifacts) -> App:
    return App(page, app_url, artifacts)


def _stored(app: App) -> tuple[Tenant, list[SettingsAudit]]:
    with Session(get_engine(app.database_url)) as s:
        tenant = s.exec(select(Tenant).where(Tenant.slug == "demo")).one()
        audit = s.exec(select(SettingsAudit).where(SettingsAudit.tenant_id == tenant.id)).all()
        return tenant, list(audit)


def _lost(audit: list[SettingsAudit]) -> list[tuple[str, str, Any]]:
    """Audit entries that took a stored value away (``from`` something ``to`` nothing)."""
    return [
        (a.area, k, v)
        for a in audit
        for k, v in a.changes.items()
        if isinstance(v, dict) and v.get("from") not in (None, [], "") and v.get("to") in (None, [], "")
    ]


def _card(app: App, key: str):
    return app.page.locator(f".st-key-{key}")


def _field(app: App, key: str):
    """The widget with this key (a secret's key gets a suffix after each save: ui/settings_form.key)."""
    widget = app.page.locator(f".st-key-{key}, [class*='st-key-{key}_']").last
    return widget.locator("input, textarea").first


def _type(app: App, key: str, text: str) -> None:
    field = _field(app, key)
    field.fill(text)
    field.press("Tab")


def _value(app: App, key: str) -> str:
    return _field(app, key).input_value()


def _save(app: App, card, name: str = "Save", expect: str = "Saved") -> None:
    card.get_by_role("button", name=name, exact=True).click()
    app.settle()
    card.get_by_text(expect).first.wait_for()


def _open_settings(app: App, tab: str) -> None:
    app.nav("Settings & users")
    app.tab(tab)


def test_twilio_saved_twice_keeps_the_messaging_service(app: App):
    """The issue's own steps: after Save the card shows what was saved, the next Save loses nothing."""
    app.login(*OWNER)
    _open_settings(app, "Channels")
    card = _card(app, "settings_ch_card_sms")
    _type(app, "settings_ch_sms_accountSid", "AC0123456789")
    _type(app, "settings_ch_sms_authToken", "twilio-token-1234")
    _type(app, "settings_ch_sms_messagingServiceSid", "MG0123456789")
    card.get_by_text("Send through this provider").click()
    _save(app, card)
    assert _value(app, "settings_ch_sms_messagingServiceSid") == "MG0123456789"
    assert _value(app, "settings_ch_sms_accountSid") == "AC0123456789"
    assert _value(app, "settings_ch_sms_authToken") == ""  # the typed secret is gone from the page
    assert "twilio-token-1234" not in app.page.content()
    card.get_by_text("Auth token (set on").first.wait_for()
    _save(app, card, expect="Nothing changed")
    _type(app, "settings_ch_sms_fromNumber", "030 1234567")
    _save(app, card)
    assert _value(app, "settings_ch_sms_fromNumber") == "+49301234567"  # what was stored, normalised
    tenant, audit = _stored(app)
    assert tenant.settings["channels"]["sms"] == {
        "adapter": "twilio",
        "accountSid": "AC0123456789",
        "messagingServiceSid": "MG0123456789",
        "fromNumber": "+49301234567",
    }
    assert not _lost(audit), _lost(audit)
    app.shot("21-settings-twilio-saved-twice", height=2600)


def test_every_settings_form_saved_twice_loses_nothing(app: App):
    page = app.page
    app.login(*OWNER)
    _open_settings(app, "Channels")
    whatsapp = _card(app, "settings_ch_card_whatsapp")
    _type(app, "settings_ch_whatsapp_phoneNumberId", "1055")
    for name, secret in (("accessToken", "EAAG-twice"), ("appSecret", "app-twice"), ("verifyToken", "verify-twice")):
        _type(app, f"settings_ch_whatsapp_{name}", secret)
    _type(app, "settings_ch_whatsapp_templateName", "hallo_v2")
    whatsapp.get_by_text("Send through this provider").click()
    _save(app, whatsapp)
    _save(app, whatsapp, expect="Nothing changed")
    email = _card(app, "settings_ch_card_email")
    _type(app, "settings_ch_email_host", "127.0.0.1")
    _type(app, "settings_ch_email_port", "2525")
    _type(app, "settings_ch_email_fromAddress", "hallo@studio.test")
    _save(app, email)
    assert _value(app, "settings_ch_email_port") == "2525"
    _save(app, email, expect="Nothing changed")
    chat = _card(app, "settings_ch_card_webchat")
    _type(app, "settings_ch_webchat_origins", "https://www.studio.test\nhttps://studio.test")
    _save(app, chat)
    _save(app, chat, expect="Nothing changed")

    app.tab("Hours & limits")
    hours = _card(app, "settings_card_hours")
    page.locator(".st-key-settings_hours_open_1").get_by_text("Monday").click()
    _type(app, "settings_hours_from_1", "8:00")
    _type(app, "settings_hours_to_1", "20:30")
    _type(app, "settings_hours_closed", "2026-12-24")
    _save(app, hours, name="Save business hours")
    assert _value(app, "settings_hours_from_1") == "08:00"  # shown as stored
    _save(app, hours, name="Save business hours", expect="Nothing changed")
    limits = _card(app, "settings_card_limits")
    _type(app, "settings_quiet_start", "21:00")
    _type(app, "settings_quiet_end", "7:00")
    _type(app, "settings_cap", "3")
    _save(app, limits)
    assert _value(app, "settings_quiet_end") == "07:00"
    _save(app, limits, expect="Nothing changed")

    app.tab("AI & knowledge")
    ai = _card(app, "settings_card_ai")
    ai.get_by_text("OpenAI-compatible endpoint").click()
    _type(app, "settings_ai_base", "https://llm.studio.test/v1")
    _type(app, "settings_ai_model", "small")
    _type(app, "settings_ai_key", "sk-twice-secret")
    _save(app, ai)
    assert _value(app, "settings_ai_model") == "small" and _value(app, "settings_ai_key") == ""
    _save(app, ai, expect="Nothing changed")
    kb = _card(app, "settings_card_kb")
    _save(app, kb, name="Save entries", expect="Nothing changed")

    app.tab("Webhooks")
    hooks = _card(app, "settings_card_webhooks")
    _type(app, "settings_allow_list", "127.0.0.1:8080\ncrm.local")
    _save(app, hooks)
    _save(app, hooks, expect="Nothing changed")

    app.tab("Studio")
    studio = _card(app, "card_settings")
    _type(app, "settings_name", "Yoga am Fluss")
    _save(app, studio, name="Save settings")
    _save(app, studio, name="Save settings", expect="Nothing changed")

    app.tab("Insights")
    insights = _card(app, "card_insights_settings")
    insights.get_by_text("Analysts see contact details").click()
    app.settle()
    insights.get_by_role("button", name="Save insights settings").click()
    app.settle()
    insights.get_by_text("Nothing changed").first.wait_for()

    app.tab("Data & privacy")
    retention = _card(app, "privacy_card_retention")
    _type(app, "privacy_details_days", "30")
    _save(app, retention, name="Save retention")
    _save(app, retention, name="Save retention", expect="Nothing changed")
    words = _card(app, "privacy_card_optout")
    _type(app, "privacy_stop_words", "STOP, HALT")
    _save(app, words, name="Save words")
    _save(app, words, name="Save words", expect="Nothing changed")
    app.shot("21-settings-data-saved-twice", height=2600)

    tenant, audit = _stored(app)
    s = tenant.settings
    assert tenant.name == "Yoga am Fluss"
    assert s["channels"]["whatsapp"] == {
        "adapter": "whatsapp_cloud",
        "phoneNumberId": "1055",
        "templateName": "hallo_v2",
    }
    # the switch was never touched, so only the fields typed were written (off: the default)
    assert s["channels"]["email"] == {"host": "127.0.0.1", "port": 2525, "fromAddress": "hallo@studio.test"}
    assert s["webChat"] == {"allowedOrigins": ["https://www.studio.test", "https://studio.test"]}
    assert s["businessHours"] == {"weekly": {"1": {"open": "08:00", "close": "20:30"}}, "closedDays": ["2026-12-24"]}
    assert s["quietHours"] == {"start": "21:00", "end": "07:00"} and s["frequencyCap"] == 3
    assert {k: s["ai"][k] for k in ("provider", "baseUrl", "model")} == {
        "provider": "openai_compatible",
        "baseUrl": "https://llm.studio.test/v1",
        "model": "small",
    }
    assert s["ai"]["apiKeyEncrypted"] and "sk-twice-secret" not in str(s)
    assert len(s["knowledgeBase"]["entries"]) == 13  # the demo's entries, untouched
    assert s["webhookAllowList"] == ["127.0.0.1:8080", "crm.local"]
    assert s["retention"] == {"detailsDays": 30, "summaryDays": 730}
    assert s["optOut"] == {"stopWords": ["HALT", "STOP"], "startWords": ["ANMELDEN", "START", "UNSTOP"]}
    assert s["analystsSeeContacts"] is True and "minutesSaved" not in s and "goals" not in s
    assert not _lost(audit), _lost(audit)


def test_a_save_in_one_tab_keeps_what_another_tab_saved(app: App, browser, app_url, artifacts):
    """Two sessions show the same form; each saves one field; both fields stay (nothing written back)."""
    app.login(*OWNER)
    _open_settings(app, "Hours & limits")
    other_context = browser.new_context(viewport={"width": 1440, "height": 1000})
    other_context.set_default_timeout(60_000)
    other = App(other_context.new_page(), app_url, artifacts)
    try:
        other.login(*OWNER)
        _open_settings(other, "Hours & limits")
        _type(other, "settings_quiet_start", "22:00")
        _type(other, "settings_quiet_end", "06:00")
        _save(other, _card(other, "settings_card_limits"))
    finally:
        other_context.close()
    _type(app, "settings_cap", "5")  # this tab still shows the quiet hours from before
    _save(app, _card(app, "settings_card_limits"))
    tenant, audit = _stored(app)
    assert tenant.settings["quietHours"] == {"start": "22:00", "end": "06:00"}
    assert tenant.settings["frequencyCap"] == 5
    assert _value(app, "settings_quiet_start") == "22:00"  # and the page now shows what is stored
    assert not _lost(audit), _lost(audit)
