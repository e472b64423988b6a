"""Provider payloads parsed by pydantic models of what each provider documents (PROVIDERS.md):
documented payloads become events and status updates; anything else is an UnexpectedShape that
names where it differs, without the payload's values."""

from __future__ import annotations

import json

import pytest

from engine.inbound import email, twilio, whatsapp
from engine.inbound.payload import UnexpectedShape, json_body

MEMBER = "4917612345678"


def _delivery(value: dict) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "WABA", "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp", **value}}]}
        ],
    }


def _message(**fields) -> dict:
    return {
        "from": MEMBER,
        "id": "wamid.A",
        "timestamp": "1767225600",
        "type": "text",
        "text": {"body": "Hallo"},
    } | fields


def test_whatsapp_documented_messages_become_events():
    payload = _delivery(
        {
            "metadata": {"display_phone_number": "4930123456", "phone_number_id": "1055"},
            "contacts": [{"profile": {"name": "Mia"}, "wa_id": MEMBER}],
            "messages": [
                _message(),
                _message(id="wamid.B", type="button", text=None, button={"text": "Ja", "payload": "YES"}),
                _message(
                    id="wamid.C",
                    type="interactive",
                    text=None,
                    interactive={"type": "list_reply", "list_reply": {"id": "r1", "title": "Yin Yoga"}},
                ),
                _message(
                    id="wamid.D",
                    type="image",
                    text=None,
                    image={"id": "m1", "mime_type": "image/jpeg", "caption": "Plan"},
                ),
                _message(
                    id="wamid.E",
                    type="location",
                    text=None,
                    location={"latitude": 52.5, "longitude": 13.4, "name": "Studio"},
                ),
                _message(id="wamid.F", type="reaction", text=None, reaction={"emoji": "👍"}),
            ],
        }
    )
    parsed = whatsapp.parse(payload)
    assert parsed.ignored == [] and parsed.updates == []
    assert [e["content"] for e in parsed.events] == [
        "Hallo",
        "Ja",
        "Yin Yoga",
        "[image] Plan",
        "[location] Studio",
        "[reaction]",
    ]
    first = parsed.events[0]
    assert first["from"] == "+" + MEMBER and first["idempotencyKey"] == "whatsapp:wamid.A"
    assert first["receivedAt"] == "2026-01-01T00:00:00+00:00" and first["data"]["contactName"] == "Mia"
    assert parsed.events[1]["data"]["buttonPayload"] == "YES"
    assert parsed.events[4]["data"]["latitude"] == 52.5


def test_whatsapp_status_carries_our_reference_and_the_error():
    status = {
        "id": "wamid.OUT",
        "status": "failed",
        "timestamp": "1767225600",
        "recipient_id": MEMBER,
        "biz_opaque_callback_data": "outbox:01234567",
        "errors": [{"code": 131026, "title": "Message undeliverable", "error_data": {"details": "incapable"}}],
    }
    parsed = whatsapp.parse(_delivery({"statuses": [status, {"id": "wamid.X", "status": "read"}]}))
    first, second = parsed.updates
    assert first.provider_message_id == "wamid.OUT" and first.status == "failed"
    assert first.reference == "outbox:01234567"
    assert first.error == "Message undeliverable incapable (code 131026)"
    assert first.at == "2026-01-01T00:00:00+00:00"
    assert second.reference is None and second.error is None and second.at is None


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"entry": ["x"]}, "entry[0]"),
        ({"entry": {"a": 1}}, "entry"),
        (_delivery({"messages": [_message(text="plain")]}), "entry[0].changes[0].value.messages[0].text"),
        (_delivery({"contacts": [{"wa_id": MEMBER, "profile": "x"}]}), "entry[0].changes[0].value.contacts[0].profile"),
        (_delivery({"messages": [_message(**{"from": 491})]}), "entry[0].changes[0].value.messages[0].from"),
        (_delivery({"messages": [_message(**{"from": "not a number"})]}), "entry[0].changes[0].value.messages[0].from"),
        (_delivery({"statuses": [{"id": "w", "status": "read", "errors": [{"code": "x"}]}]}), "errors[0].code"),
        (_delivery({"messages": [_message(location={"latitude": "north"}, type="location")]}), "location.latitude"),
        ([], "body"),
        ("text", "body"),
    ],
)
def test_whatsapp_unexpected_shapes_name_where(payload, where):
    with pytest.raises(UnexpectedShape) as err:
        whatsapp.parse(payload)
    assert where in err.value.message
    assert "plain" not in err.value.message and "not a number" not in err.value.message  # no values


def test_whatsapp_message_the_runner_would_refuse_is_skipped_the_rest_kept():
    bad_time = _message(id="wamid.T", timestamp="9999999999")  # the year 2286
    nul = _message(id="wamid.N", text={"body": "a\x00b"})
    parsed = whatsapp.parse(_delivery({"messages": [bad_time, _message(), nul]}))
    assert [e["idempotencyKey"] for e in parsed.events] == ["whatsapp:wamid.A"]
    assert len(parsed.ignored) == 2 and parsed.ignored[0].startswith("entry[0].changes[0].value.messages[0]: ")


def test_unknown_fields_are_ignored_and_a_huge_timestamp_is_stamped_on_arrival():
    parsed = whatsapp.parse(_delivery({"messages": [_message(timestamp="1" * 40, new_field={"x": 1})], "other": [1]}))
    assert len(parsed.events) == 1 and "receivedAt" not in parsed.events[0]


def test_email_documented_mail_prefers_the_stripped_reply():
    event = email.email_event(
        {
            "From": "Mia <Mia@Example.org>",
            "FromName": "Mia",
            "To": "hallo@studio.test",
            "Subject": "Preise",
            "MessageID": "73e6d360",
            "TextBody": "Was kostet ein Monat?\n> quoted",
            "StrippedTextReply": "Was kostet ein Monat?",
            "Headers": [{"Name": "X-Spam", "Value": "No"}],
            "Attachments": [],
        }
    )
    assert event["from"] == "mia@example.org" and event["content"] == "Was kostet ein Monat?"
    assert event["idempotencyKey"] == "email:73e6d360" and event["data"]["subject"] == "Preise"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"FromFull": {"Email": 123}, "MessageID": "m"}, "FromFull.Email"),
        ({"From": ["a@b.c"], "MessageID": "m"}, "From"),
        ({"From": "a@b.c"}, "MessageID"),
        ({"From": "a@b.c", "MessageID": "   "}, "MessageID"),
        ({"From": "nobody", "MessageID": "m"}, "FromFull.Email"),
        ({"From": "a@b.c", "MessageID": "m", "TextBody": {"x": 1}}, "TextBody"),
        ({"From": "a" * 400 + "@b.c", "MessageID": "m"}, "from"),
        (["a@b.c"], "body"),
    ],
)
def test_email_unexpected_shapes_name_the_field(payload, field):
    with pytest.raises(UnexpectedShape) as err:
        email.email_event(payload)
    assert err.value.message.startswith(field) or err.value.field == field


SMS = {
    "MessageSid": "SM1",
    "AccountSid": "AC1",
    "From": "+4917611112222",
    "To": "+4930123456",
    "Body": "Hi",
    "NumMedia": "0",
}


def test_twilio_documented_forms():
    assert twilio.sms_event(SMS)["content"] == "Hi"
    old_names = {"SmsSid": "SM2", "From": "+4917611112222"}
    assert twilio.sms_event(old_names)["idempotencyKey"] == "twilio:SM2"
    call = {"CallSid": "CA1", "CallStatus": "no-answer", "From": "+4917633334444", "To": "+4930123456"}
    assert twilio.call_status_event(call)["triggerType"] == "missed_call"
    assert twilio.call_status_event({**call, "Direction": "inbound"}) is not None
    assert twilio.call_status_event({**call, "Direction": "outbound-api"}) is None  # we called them
    assert twilio.call_status_event({**call, "CallStatus": "completed"}) is None
    assert twilio.transcription_event({"CallSid": "CA1", "TranscriptionStatus": "failed"}) is None
    update = twilio.message_status({"SmsSid": "SM9", "SmsStatus": "undelivered", "ErrorCode": "30003"})
    assert (update.provider_message_id, update.status, update.error) == ("SM9", "undelivered", "Twilio error 30003")


@pytest.mark.parametrize(
    ("parse", "form", "field"),
    [
        (twilio.sms_event, {**SMS, "NumMedia": "²"}, "NumMedia"),
        (twilio.sms_event, {**SMS, "NumMedia": "11"}, "NumMedia"),
        (twilio.sms_event, {k: v for k, v in SMS.items() if k != "From"}, "From"),
        (twilio.sms_event, {k: v for k, v in SMS.items() if k != "MessageSid"}, "MessageSid"),
        (twilio.sms_event, {**SMS, "Body": "a\x00b"}, "content"),
        (twilio.call_status_event, {"CallStatus": "busy", "From": "+49"}, "CallSid"),
        (twilio.message_status, {"MessageSid": "SM1"}, "MessageStatus"),
    ],
)
def test_twilio_unexpected_forms_name_the_field(parse, form, field):
    with pytest.raises(UnexpectedShape) as err:
        parse(form)
    assert field in err.value.message


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe{",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": "x\\u0000"}',
        b"[" * 5000 + b"]" * 5000,
        b"1" * 5000,
    ],
)
def test_json_bodies_beyond_the_limits_are_unexpected_shapes(body):
    with pytest.raises(UnexpectedShape) as err:
        json_body(body)
    assert err.value.field


def test_json_body_within_the_limits():
    value = {"emoji": "🧘", "n": 1.5, "deep": [[[]]]}
    assert json_body(json.dumps(value).encode()) == value


def test_other_webhook_fields_and_objects_of_the_same_app_are_left_alone():
    template_update = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {"event": "APPROVED", "message_template_id": 12, "messages": "not ours"},
                    }
                ],
            }
        ],
    }
    parsed = whatsapp.parse(template_update)
    assert parsed.events == [] and parsed.updates == [] and parsed.ignored == []
    instagram = {"object": "instagram", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {}}]}]}
    assert whatsapp.parse(instagram).ignored == ["object: not a WhatsApp Business Account delivery"]
