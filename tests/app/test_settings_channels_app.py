"""Settings > Channels through Streamlit's AppTest: a missing required field is reported at
the field, saved secrets come back only as "set on ...", never as a value."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from engine.settings import get_settings


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()


def _values(at) -> list[str]:
    # Rendered text only: AppTest keeps typed input values itself (the browser test checks
    # that the real page clears them).
    return [str(m.value) for m in at.markdown] + [str(c.value) for c in at.code] + [w.label for w in at.text_input]


def test_required_field_error_then_save_without_echoing_secrets(app_factory):
    at = app_factory("owner", "pages/settings.py")
    at.toggle(key="settings_ch_sms_enabled").set_value(True)
    at.text_input(key="settings_ch_sms_accountSid").input("AC123")
    at.text_input(key="settings_ch_sms_fromNumber").input("+4930123456")
    at.button(key="FormSubmitter:settings_ch_form_sms-Save").click().run()
    assert not at.exception
    assert any("authToken" in e.value and "required" in e.value for e in at.error)
    at.toggle(key="settings_ch_sms_enabled").set_value(True)
    at.text_input(key="settings_ch_sms_accountSid").input("AC123")
    at.text_input(key="settings_ch_sms_fromNumber").input("+4930123456")
    at.text_input(key="settings_ch_sms_authToken").input("apptest-secret-token-42")
    at.button(key="FormSubmitter:settings_ch_form_sms-Save").click().run()
    assert not at.exception and not at.error
    assert "apptest-secret-token-42" not in " ".join(_values(at))
    # After a save the secret's field is a new, empty widget (ui/settings_form.key): a typed secret never stays.
    field = at.text_input(key="settings_ch_sms_authToken_1")
    assert field.label.startswith("Auth token (set on") and field.value == ""
