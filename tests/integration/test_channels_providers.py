"""WhatsApp Cloud API and Twilio adapters against a local fake provider on 127.0.0.1."""

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx
import pytest

from engine.channels.base import OutgoingMessage
from engine.channels.registry import adapter_for
from engine.channels.twilio import TwilioSettings, TwilioSmsAdapter
from engine.channels.whatsapp import NO_TEMPLATE_ERROR, WhatsAppCloudAdapter, WhatsAppSettings
from engine.errors import InvalidRecipient, OutcomeUnknown, PermanentError, RetryableError

TOKEN = "EAAG-very-secret-token"
TWILIO_TOKEN = "twilio-secret-auth-token"
NOW = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)


class FakeProvider:
    """Records requests; ``reply = (status, headers, json_or_bytes, delay)``."""

    def __init__(self):
        self.requests = []
        self.reply = (200, {}, {}, 0)
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                provider.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers, payload, delay = provider.reply
                if delay:
                    time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider():
    p = FakeProvider()
    yield p
    p.close()


def wa_adapter(provider, template=None, timeout=5.0):
    settings = WhatsAppSettings(
        base_url=provider.url, phone_number_id="1055", access_token=TOKEN, template_name=template, timeout=timeout
    )
    return WhatsAppCloudAdapter(settings)


MSG = OutgoingMessage(channel="whatsapp", recipient="0151 23456789", body="Hallo Anna, Grüße!")


# ------------------------------------------------------------------ WhatsApp


def test_whatsapp_free_text_inside_window(provider):
    provider.reply = (
        200,
        {},
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "4915123456789"}],
            "messages": [{"id": "wamid.HBgM123"}],
        },
        0,
    )
    result = wa_adapter(provider, template="reminder").send(MSG, last_inbound_at=NOW - timedelta(hours=23), now=NOW)
    assert result.status == "sent" and result.provider_message_id == "wamid.HBgM123"
    assert result.detail == {"type": "text"}
    (req,) = provider.requests
    assert req["path"] == "/v21.0/1055/messages"
    assert req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == {
        "messaging_product": "whatsapp",
        "to": "4915123456789",
        "type": "text",
        "text": {"body": "Hallo Anna, Grüße!"},
    }


@pytest.mark.parametrize("last_inbound", [None, NOW - timedelta(hours=24), NOW - timedelta(days=3)])
def test_whatsapp_template_outside_window(provider, last_inbound):
    provider.reply = (200, {}, {"messages": [{"id": "wamid.T"}]}, 0)
    result = wa_adapter(provider, template="class_reminder").send(MSG, last_inbound_at=last_inbound, now=NOW)
    assert result.status == "sent" and result.provider_message_id == "wamid.T"
    assert result.detail["type"] == "template" and result.detail["template"] == "class_reminder"
    assert "24-hour" in result.detail["reason"]
    assert json.loads(provider.requests[0]["body"]) == {
        "messaging_product": "whatsapp",
        "to": "4915123456789",
        "type": "template",
        "template": {"name": "class_reminder", "language": {"code": "de"}},
    }


def test_whatsapp_suppressed_without_template(provider):
    result = wa_adapter(provider).send(MSG, last_inbound_at=NOW - timedelta(days=2), now=NOW)
    assert result.status == "suppressed" and result.error == NO_TEMPLATE_ERROR
    assert provider.requests == []


def test_whatsapp_invalid_recipient(provider):
    with pytest.raises(InvalidRecipient):
        wa_adapter(provider).send(OutgoingMessage("whatsapp", "kein telefon", "x"), last_inbound_at=NOW, now=NOW)
    assert provider.requests == []


def test_whatsapp_4xx_permanent_with_meta_message(provider):
    provider.reply = (
        400,
        {},
        {
            "error": {
                "message": "(#131030) Recipient phone number not in allowed list",
                "type": "OAuthException",
                "code": 131030,
                "error_data": {"details": "Add recipient to allowed list"},
                "fbtrace_id": "Abc",
            }
        },
        0,
    )
    with pytest.raises(PermanentError) as info:
        wa_adapter(provider).send(MSG, last_inbound_at=NOW, now=NOW)
    assert not isinstance(info.value, RetryableError)
    assert "Recipient phone number not in allowed list" in str(info.value)
    assert "Add recipient" in str(info.value) and "400" in str(info.value)
    assert info.value.details["provider_code"] == 131030


def test_whatsapp_token_never_in_error(provider):
    provider.reply = (401, {}, {"error": {"message": f"Invalid OAuth access token {TOKEN}", "code": 190}}, 0)
    with pytest.raises(PermanentError) as info:
        wa_adapter(provider).send(MSG, last_inbound_at=NOW, now=NOW)
    assert TOKEN not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [(429, {"Retry-After": "30"}, 30.0), (500, {}, None), (503, {"Retry-After": "5"}, 5.0)],
)
def test_whatsapp_retryable_statuses(provider, status, headers, retry_after):
    provider.reply = (status, headers, {"error": {"message": "try later", "code": 2}}, 0)
    with pytest.raises(RetryableError) as info:
        wa_adapter(provider).send(MSG, last_inbound_at=NOW, now=NOW)
    assert info.value.retry_after == retry_after
    assert TOKEN not in str(info.value)


def test_whatsapp_throttling_code_on_400_is_retryable(provider):
    provider.reply = (400, {}, {"error": {"message": "Rate limit hit", "code": 130429}}, 0)
    with pytest.raises(RetryableError):
        wa_adapter(provider).send(MSG, last_inbound_at=NOW, now=NOW)


def test_whatsapp_timeout_and_connection_errors(provider):
    # No answer in time: Meta got the request and may send it ("late"), so sending again could
    # send twice: the outcome is unknown, not retryable. No connection at all: retryable.
    provider.reply = (200, {}, {"messages": [{"id": "late"}]}, 1.0)
    with pytest.raises(OutcomeUnknown, match="no answer within 0.2s"):
        wa_adapter(provider, timeout=0.2).send(MSG, last_inbound_at=NOW, now=NOW)
    assert len(provider.requests) == 1
    settings = WhatsAppSettings(base_url="http://127.0.0.1:1", phone_number_id="1", access_token=TOKEN)
    with pytest.raises(RetryableError) as info:
        WhatsAppCloudAdapter(settings).send(MSG, last_inbound_at=NOW, now=NOW)
    assert TOKEN not in str(info.value)


def test_whatsapp_naive_datetime_rejected(provider):
    with pytest.raises(ValueError):
        wa_adapter(provider).send(MSG, last_inbound_at=datetime(2025, 6, 10), now=NOW)


def test_whatsapp_injected_client_via_registry(provider):
    provider.reply = (200, {}, {"messages": [{"id": "wamid.R"}]}, 0)
    tenant = {
        "channels": {
            "whatsapp": {
                "adapter": "whatsapp_cloud",
                "baseUrl": provider.url,
                "apiVersion": "v22.0",
                "phoneNumberId": "77",
                "accessToken": TOKEN,
            }
        }
    }
    with httpx.Client() as client:
        adapter = adapter_for("whatsapp", tenant, client=client, allow_base_url_override=True)
        result = adapter.send(MSG, last_inbound_at=NOW - timedelta(minutes=5), now=NOW)
    assert result.provider_message_id == "wamid.R"
    assert provider.requests[0]["path"] == "/v22.0/77/messages"


# ------------------------------------------------------------------ Twilio


def twilio(provider, timeout=5.0):
    return TwilioSmsAdapter(
        TwilioSettings(
            base_url=provider.url,
            account_sid="AC123",
            auth_token=TWILIO_TOKEN,
            from_number="+4930123456",
            timeout=timeout,
        )
    )


SMS = OutgoingMessage(channel="sms", recipient="whatsapp:+49 151 23456789", body="Kurs morgen 9:00 – bis dann!")


def test_twilio_sends_form_with_basic_auth(provider):
    provider.reply = (201, {}, {"sid": "SM0123", "status": "queued"}, 0)
    result = twilio(provider).send(SMS)
    assert result.status == "sent" and result.provider_message_id == "SM0123"
    assert result.detail == {"status": "queued"}
    (req,) = provider.requests
    assert req["path"] == "/2010-04-01/Accounts/AC123/Messages.json"
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    expected_auth = base64.b64encode(f"AC123:{TWILIO_TOKEN}".encode()).decode()
    assert req["headers"]["Authorization"] == f"Basic {expected_auth}"
    assert parse_qs(req["body"].decode()) == {
        "To": ["+4915123456789"],
        "From": ["+4930123456"],
        "Body": ["Kurs morgen 9:00 – bis dann!"],
    }


def test_twilio_invalid_number_from_provider(provider):
    provider.reply = (
        400,
        {},
        {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400},
        0,
    )
    with pytest.raises(InvalidRecipient, match="21211"):
        twilio(provider).send(SMS)


def test_twilio_auth_error_permanent(provider):
    provider.reply = (401, {}, {"code": 20003, "message": "Authenticate", "status": 401}, 0)
    with pytest.raises(PermanentError) as info:
        twilio(provider).send(SMS)
    assert not isinstance(info.value, (RetryableError, InvalidRecipient))
    assert "Authenticate" in str(info.value) and TWILIO_TOKEN not in str(info.value)


@pytest.mark.parametrize(("status", "headers", "retry_after"), [(429, {"Retry-After": "12"}, 12.0), (502, {}, None)])
def test_twilio_retryable(provider, status, headers, retry_after):
    provider.reply = (status, headers, b"<html>bad gateway</html>", 0)
    with pytest.raises(RetryableError) as info:
        twilio(provider).send(SMS)
    assert info.value.retry_after == retry_after


def test_twilio_timeout(provider):
    provider.reply = (201, {}, {"sid": "SMlate"}, 1.0)
    with pytest.raises(OutcomeUnknown, match="no answer within 0.2s"):
        twilio(provider, timeout=0.2).send(SMS)
