"""Settings > Channels with a real REST API process (issue 21): the tab says whether the webhook
endpoint answers (and how to start it when it does not), shows the exact callback URLs the API
verifies when STUDIO_PUBLIC_URL is not set, and those URLs pass Twilio's signature check; a
save through the page keeps what it did not change."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from engine.inbound.signatures import twilio_signature
from engine.services import channel_settings as cs
from engine.settings import get_settings
from engine.uow import unit_of_work
from tests.app.conftest import actor_for
from tests.servers import Receiver, free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "twilio-endpoint-token-77"


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.delenv("STUDIO_PUBLIC_URL", raising=False)
    get_settings.cache_clear()
    _clear_endpoint_cache()
    yield
    _clear_endpoint_cache()
    get_settings.cache_clear()


def _clear_endpoint_cache() -> None:
    from ui.settings_channels import _endpoint

    _endpoint.clear()


@pytest.fixture
def api(studio):
    """``python -m engine api`` on a free port over the studio's database; stopped afterwards."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": studio["url"]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the API exited early"
            try:
                httpx.get(f"{base}/api/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API did not answer within 60 s"
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _texts(at) -> str:
    return " ".join(
        [str(m.value) for m in at.markdown]
        + [str(c.value) for c in at.code]
        + [str(w.value) for w in (*at.success, *at.warning, *at.error, *at.info)]
    )


def test_the_tab_says_the_endpoint_is_up_and_which_urls_twilio_must_sign(app_factory, studio, api, monkeypatch):
    monkeypatch.setenv("STUDIO_API_URL", api)
    get_settings.cache_clear()
    with unit_of_work(studio["db"]) as uow:
        cs.save_channel(
            uow=uow,
            actor=actor_for(studio, "owner"),
            channel="sms",
            enabled=True,
            values={"accountSid": "AC1", "fromNumber": "+4930123456"},
            secrets={"authToken": TOKEN},
        )
    at = app_factory("owner", "pages/settings.py")
    assert not at.exception
    assert any(s.value.startswith(f"The webhook endpoint is up at {api}") for s in at.success)
    assert any("STUDIO_PUBLIC_URL is not set" in w.value for w in at.warning)
    [sms_url] = [c.value for c in at.code if str(c.value).endswith("/twilio/sms")]
    assert sms_url.startswith(f"{api}/hooks/")
    assert "example.com" not in _texts(at)  # no made-up domains, only the URLs the API verifies
    # The URL shown is exactly the one the API checks the signature against: Twilio signs it, the API accepts.
    form = {"From": "+4915112345678", "To": "+4930123456", "Body": "Hallo", "MessageSid": "SM" + "1" * 32}
    signed = httpx.post(
        sms_url, data=form, headers={"X-Twilio-Signature": twilio_signature(TOKEN, sms_url, form.items())}, timeout=10
    )
    assert signed.status_code == 200, signed.text
    other = "https://hooks.studio.test" + sms_url.removeprefix(api)  # signed for another address: refused
    refused = httpx.post(
        sms_url, data=form, headers={"X-Twilio-Signature": twilio_signature(TOKEN, other, form.items())}, timeout=10
    )
    assert refused.status_code == 403


def test_with_a_public_url_the_tab_names_it_and_the_urls_use_it(app_factory, api, monkeypatch):
    monkeypatch.setenv("STUDIO_API_URL", api)
    monkeypatch.setenv("STUDIO_PUBLIC_URL", "https://hooks.studio.test")
    get_settings.cache_clear()
    at = app_factory("owner", "pages/settings.py")
    assert not any("STUDIO_PUBLIC_URL is not set" in w.value for w in at.warning)
    assert any("Providers must reach it at https://hooks.studio.test" in s.value for s in at.success)
    urls = [str(c.value) for c in at.code if "/hooks/" in str(c.value)]
    assert urls and all(u.startswith("https://hooks.studio.test/hooks/") for u in urls)


def test_the_tab_says_how_to_start_the_api_when_nothing_answers(app_factory, monkeypatch):
    port = free_port()  # nothing listens here
    monkeypatch.setenv("STUDIO_API_URL", f"http://127.0.0.1:{port}")
    get_settings.cache_clear()
    at = app_factory("owner", "pages/settings.py")
    [warning] = [w.value for w in at.warning if "webhook endpoint" in w.value]
    assert f"does not answer at http://127.0.0.1:{port}" in warning
    assert f"Start the API: `python -m engine api --port {port}`" in warning


def test_a_server_that_is_not_the_api_is_not_taken_for_it():
    with Receiver() as other:  # answers {"ok": true} to everything
        status = cs.webhook_endpoint(api_url=other.url, public_url=None)
    assert not status.reachable and "not the Studio Automations API" in status.message
    assert other.requests[0].path == "/api/health"


def test_a_channel_saved_twice_through_the_page_keeps_every_field(app_factory, studio):
    """The AppTest version of the browser test: the second save changes one field, the rest stays."""
    at = app_factory("owner", "pages/settings.py")
    at.toggle(key="settings_ch_sms_enabled").set_value(True)
    at.text_input(key="settings_ch_sms_accountSid").input("AC77")
    at.text_input(key="settings_ch_sms_messagingServiceSid").input("MG77")
    at.text_input(key="settings_ch_sms_authToken").input("apptest-token-77")
    at.button(key="FormSubmitter:settings_ch_form_sms-Save").click().run()
    assert not at.exception and any(s.value.startswith("Saved: switched on") for s in at.success)
    assert at.text_input(key="settings_ch_sms_messagingServiceSid").value == "MG77"  # what was stored
    assert at.text_input(key="settings_ch_sms_authToken_1").value == ""  # a fresh, empty secret field
    at.button(key="FormSubmitter:settings_ch_form_sms-Save").click().run()
    assert any(i.value == "Nothing changed." for i in at.info)
    at.text_input(key="settings_ch_sms_fromNumber").input("+4930999888")
    at.button(key="FormSubmitter:settings_ch_form_sms-Save").click().run()
    assert any(s.value == "Saved: Sender number." for s in at.success)
    with unit_of_work(studio["db"], read_only=True) as uow:
        view = cs.get_channel(uow=uow, actor=actor_for(studio, "owner"), channel="sms")
    assert view.enabled and view.values["messagingServiceSid"] == "MG77" and view.values["accountSid"] == "AC77"
    assert view.values["fromNumber"] == "+4930999888" and view.secrets["authToken"].set
