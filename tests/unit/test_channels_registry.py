import httpx
import pytest

from engine.channels.base import ChannelAdapter, DeliveryResult, OutboxOnlyAdapter, OutgoingMessage
from engine.channels.registry import adapter_for
from engine.channels.smtp import SmtpAdapter
from engine.channels.twilio import TwilioSmsAdapter
from engine.channels.whatsapp import WhatsAppCloudAdapter
from engine.errors import InvalidInput

TENANT = {
    "channels": {
        "email": {
            "adapter": "smtp",
            "host": "mail.example.com",
            "fromAddress": "info@studio.de",
            "fromName": "Yoga Studio",
            "security": "tls",
            "port": 465,
            "username": "u",
            "password": "pw",
        },
        "whatsapp": {
            "adapter": "whatsapp_cloud",
            "phone_number_id": "1055",
            "accessToken": "tok",
            "templateName": "reminder",
        },
        "sms": {"adapter": "twilio", "accountSid": "AC1", "auth_token": "t", "fromNumber": "+4930123456"},
    }
}


def test_delivery_result_defaults_and_validation():
    r = DeliveryResult(status="sent")
    assert r.detail == {} and r.provider_message_id is None
    assert DeliveryResult(status="sent").detail is not r.detail
    with pytest.raises(ValueError):
        DeliveryResult(status="delivered")


def test_outbox_only_adapter_records():
    adapter = OutboxOnlyAdapter()
    assert isinstance(adapter, ChannelAdapter)
    result = adapter.send(OutgoingMessage("web", "contact-1", "Hallo"), now=None)
    assert result.status == "recorded"
    assert result.detail["channel"] == "web"


@pytest.mark.parametrize("channel", ["voice", "whatsapp", "email", "web", "sms"])
def test_missing_config_gives_outbox(channel):
    assert isinstance(adapter_for(channel, {}), OutboxOnlyAdapter)
    assert isinstance(adapter_for(channel, {"channels": {}}), OutboxOnlyAdapter)
    assert isinstance(adapter_for(channel, None), OutboxOnlyAdapter)


def test_web_and_voice_always_outbox():
    settings = {"channels": {"web": {"adapter": "smtp"}, "voice": {"adapter": "twilio"}}}
    assert isinstance(adapter_for("web", settings), OutboxOnlyAdapter)
    assert isinstance(adapter_for("voice", settings), OutboxOnlyAdapter)


def test_configured_adapters_camel_and_snake_case():
    email = adapter_for("email", TENANT)
    assert isinstance(email, SmtpAdapter) and email.name == "smtp"
    assert email.settings.from_address == "info@studio.de" and email.settings.security == "tls"
    assert email.settings.password.get_secret_value() == "pw"
    client = httpx.Client()
    try:
        wa = adapter_for("whatsapp", TENANT, client=client)
        assert isinstance(wa, WhatsAppCloudAdapter) and wa.client is client
        assert wa.settings.phone_number_id == "1055" and wa.settings.template_name == "reminder"
        sms = adapter_for("sms", TENANT, client=client)
        assert isinstance(sms, TwilioSmsAdapter) and sms.settings.account_sid == "AC1"
    finally:
        client.close()


def test_explicit_outbox_adapter():
    assert isinstance(adapter_for("sms", {"channels": {"sms": {"adapter": "outbox"}}}), OutboxOnlyAdapter)


def test_unknown_channel_and_adapter():
    with pytest.raises(InvalidInput, match="unknown channel"):
        adapter_for("fax", TENANT)
    with pytest.raises(InvalidInput, match="unknown adapter 'mailgun'"):
        adapter_for("email", {"channels": {"email": {"adapter": "mailgun"}}})


def test_invalid_settings_do_not_echo_secrets():
    settings = {"channels": {"sms": {"adapter": "twilio", "authToken": "SUPERSECRET", "timeout": "soon"}}}
    with pytest.raises(InvalidInput) as info:
        adapter_for("sms", settings)
    message = str(info.value)
    assert "accountSid" in message and "timeout" in message
    assert "SUPERSECRET" not in message and "soon" not in message


def test_base_url_needs_explicit_permission():
    settings = {"channels": {"sms": {**TENANT["channels"]["sms"], "baseUrl": "http://10.0.0.1"}}}
    with pytest.raises(InvalidInput, match="base_url"):
        adapter_for("sms", settings)
    adapter = adapter_for("sms", settings, allow_base_url_override=True)
    assert adapter.settings.base_url == "http://10.0.0.1"
