"""Issue 21: no inbound route answers 5xx, whatever a correctly signed sender throws at it.

Hypothesis builds arbitrary JSON (any nesting, NaN and Infinity, NUL and other control
characters, huge numbers, non-ASCII), documented provider payloads with one part replaced by
such a value, and arbitrary Twilio forms and query strings; each is signed as the provider signs
(Meta's HMAC-SHA256 of the body, Twilio's HMAC-SHA1 of the full URL and the form, Postmark's
token in the URL, the web chat's key, allowed origin and conversation token) and posted to every
inbound route: WhatsApp (messages and handshake), Twilio SMS, call status, transcription and
message status, inbound e-mail, web chat (post and read). No answer is a 5xx, nothing is logged
as unhandled, and no secret, token or signature reaches the server's log. A workflow per trigger
replies, so what is accepted runs through the runner too. SQLite and PostgreSQL; bounded by
``PROPERTY_EXAMPLES`` (default 25) per property; and for each drawn value, every part of a
documented payload (every Twilio field) in turn gets it, so no field is left to luck.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import services
from engine.inbound import webchat
from engine.inbound.signatures import meta_signature, twilio_signature
from engine.services import channel_settings as cs
from engine.settings import get_settings
from engine.uow import unit_of_work

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "25"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: "Every part gets the value": one example is a request per part of the documented payload.
EACH_PART = settings(SETTINGS, max_examples=max(3, EXAMPLES // 5))
APP_SECRET = "meta-app-secret-prop-0123456789"
VERIFY = "verify-token-prop-42"
TWILIO_TOKEN = "twilio-auth-token-prop-abcdef"
SITE = "https://www.studio-prop.example"
MEMBER = "4917612345678"

# --------------------------------------------------------------------------- strategies

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["", "\x00", "a\x00b", "STOP", "START", "é" * 3, "🧘", "+4917612345678", "1" * 40, "-1", "NaN", "{{ trigger }}"]
)
NUMBER = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -1, 2**63, 1e308, 9999999999, 32503680000])
)
SCALAR = st.none() | st.booleans() | NUMBER | TEXT
JSON = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=25
)
DEEP = st.integers(min_value=30, max_value=120).map(lambda n: json.loads("[" * n + "]" * n))
ANY = JSON | DEEP
#: What replaces a part of a documented payload: a value of another type, within the limits
#: (values beyond them are ANY's job; here they would hide the part that was changed).
PLAIN_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
PLAIN = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
CONFUSED = st.one_of(
    PLAIN,
    PLAIN_TEXT,
    st.lists(PLAIN | PLAIN_TEXT, min_size=1, max_size=3),
    st.dictionaries(PLAIN_TEXT, PLAIN | PLAIN_TEXT, min_size=1, max_size=3),
)


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every part of ``value`` (objects, lists and leaves, not the root)."""
    found = [path] if path else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found += _paths(child, (*path, key))
    return found


def _at(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


def _plant(template: Any, path: tuple, value: Any) -> Any:
    copy = json.loads(json.dumps(template))
    _at(copy, path[:-1])[path[-1]] = value
    return copy


def planted(template: Any) -> st.SearchStrategy[Any]:
    """``template`` with one part replaced by a value of another shape, or a key added."""
    objects = [p for p in [(), *_paths(template)] if isinstance(_at(template, p), dict)]
    replaced = st.builds(lambda p, v: _plant(template, p, v), st.sampled_from(_paths(template)), CONFUSED)
    added = st.builds(
        lambda p, k, v: _plant(template, (*p, k), v) if p else {**template, k: v},
        st.sampled_from(objects),
        PLAIN_TEXT,
        CONFUSED,
    )
    return replaced | added


def every_part(template: Any, value: Any) -> list[Any]:
    """``template`` once per part, that part replaced by ``value``."""
    return [_plant(template, path, value) for path in _paths(template)]


def _wa_template(text: str = "Wann ist Yoga?", wamid: str = "wamid.PROP") -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "4930123456", "phone_number_id": "1055"},
                            "contacts": [{"profile": {"name": "Mia"}, "wa_id": MEMBER}],
                            "messages": [
                                {
                                    "from": MEMBER,
                                    "id": wamid,
                                    "timestamp": "1767225600",
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                            "statuses": [
                                {
                                    "id": "wamid.OUT",
                                    "status": "delivered",
                                    "timestamp": "1767225600",
                                    "recipient_id": MEMBER,
                                    "biz_opaque_callback_data": "ref-1",
                                    "errors": [{"code": 131026, "title": "x", "error_data": {"details": "y"}}],
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


POSTMARK = {
    "From": "Mia <mia@example.org>",
    "FromName": "Mia",
    "FromFull": {"Email": "mia@example.org", "Name": "Mia"},
    "To": "hallo@studio.test",
    "Subject": "Preise",
    "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
    "Date": "Fri, 1 Aug 2025 16:45:32 -04:00",
    "TextBody": "Was kostet ein Monat?",
    "HtmlBody": "<p>Was kostet ein Monat?</p>",
    "StrippedTextReply": "Was kostet ein Monat?",
    "Headers": [{"Name": "X-Spam-Status", "Value": "No"}],
    "Attachments": [],
}
TWILIO_KEYS = [
    "MessageSid",
    "SmsSid",
    "AccountSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "MediaUrl0",
    "CallSid",
    "CallStatus",
    "Direction",
    "TranscriptionSid",
    "TranscriptionText",
    "TranscriptionStatus",
    "RecordingSid",
    "RecordingUrl",
    "MessageStatus",
    "SmsStatus",
    "ErrorCode",
    "ErrorMessage",
]
TWILIO_BASE = {
    "MessageSid": "SMPROP",
    "AccountSid": "AC123",
    "From": "+4917611112222",
    "To": "+4930123456",
    "Body": "Probetraining?",
    "NumMedia": "0",
    "CallSid": "CAPROP",
    "CallStatus": "no-answer",
    "TranscriptionSid": "TRPROP",
    "TranscriptionText": "Ich möchte buchen",
    "TranscriptionStatus": "completed",
    "MessageStatus": "delivered",
}
FORM_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40) | st.sampled_from(
    ["", "\x00", "²", "٣", " 1", "1e3", "11", "-1", "no-answer", "busy", "failed", "+49", "9" * 5000, "outbound-api"]
)
FORMS = st.builds(
    lambda base, extra, drop: {k: v for k, v in {**(TWILIO_BASE if base else {}), **extra}.items() if k not in drop},
    st.booleans(),
    st.dictionaries(st.sampled_from(TWILIO_KEYS) | FORM_TEXT, FORM_TEXT, min_size=1, max_size=6),
    st.sets(st.sampled_from(TWILIO_KEYS), max_size=3),
)
WHATSAPP = st.one_of(planted(_wa_template()), TEXT.map(_wa_template), ANY)
EMAILS = st.one_of(planted(POSTMARK), TEXT.map(lambda text: POSTMARK | {"StrippedTextReply": text}), ANY)
QUERIES = st.dictionaries(FORM_TEXT.filter(bool), FORM_TEXT, max_size=3)
TWILIO_ROUTES = st.sampled_from(["sms", "call-status", "transcription", "message-status"])
CONTENT_TYPES = st.sampled_from(["application/json"] * 6 + ["text/plain", "application/x-www-form-urlencoded", ""])
FORM_TYPES = st.sampled_from(
    ["application/x-www-form-urlencoded"] * 6 + ["application/json", "multipart/form-data", ""]
)
#: Each example gets message ids of its own: a repeated id would only exercise the duplicate check.
_serial = itertools.count()


def _fresh(body: bytes, *ids: str) -> bytes:
    n = next(_serial)
    for old in ids:
        body = body.replace(f'"{old}"'.encode(), f'"{old}-{n}"'.encode())
    return body


# --------------------------------------------------------------------------- the studio


@dataclass
class Studio:
    hook: str
    email_path: str
    chat_key: str
    #: Everything that must never show in the server's log.
    secrets: list[str] = field(default_factory=list)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _reply_to(trigger: str, action: str, config: dict) -> dict:
    return {
        "name": f"Answer {trigger}",
        "trigger": {"type": trigger, "config": {}},
        "conditions": [],
        "actions": [{"id": "reply", "type": action, "config": config, "nextActionId": None}],
    }


@pytest.fixture
def studio(db, actor) -> Studio:
    with unit_of_work(db) as uow:
        for channel, values, secret_values in (
            (
                "whatsapp",
                {"phoneNumberId": "1055"},
                {"accessToken": "EAAG-prop", "appSecret": APP_SECRET, "verifyToken": VERIFY},
            ),
            ("sms", {"accountSid": "AC123", "fromNumber": "+4930123456"}, {"authToken": TWILIO_TOKEN}),
            ("email", {"host": "127.0.0.1", "port": 2525, "security": "none", "fromAddress": "hallo@studio.test"}, {}),
        ):
            cs.save_channel(uow=uow, actor=actor, channel=channel, enabled=True, values=values, secrets=secret_values)
        message = {"message": "Danke: {{trigger.content}}"}
        for data in (
            _reply_to("whatsapp_message", "send_whatsapp", message),
            _reply_to("sms_received", "send_sms", message),
            _reply_to("missed_call", "send_sms", {"message": "Verpasst", "recipient": "{{trigger.from}}"}),
            _reply_to("voice_call", "send_sms", {"message": "Danke", "recipient": "{{trigger.from}}"}),
            _reply_to("email_received", "send_email", {**message, "subject": "Re: {{trigger.subject}}"}),
            _reply_to("web_chat", "send_message", message),
        ):
            services.create_workflow(uow=uow, actor=actor, data=data)
        webchat.save_web_chat(uow=uow, actor=actor, allowed_origins=[SITE])
    with unit_of_work(db) as uow:
        urls = cs.callback_urls(uow=uow, actor=actor, base_url="http://testserver")
        key = cs.chat_key(uow=uow, actor=actor)
    hook = urls["whatsapp"].split("/hooks/")[1].split("/")[0]
    email_path = urls["email"].removeprefix("http://testserver")
    token = email_path.rsplit("/", 1)[1]
    return Studio(hook, email_path, key, secrets=[APP_SECRET, VERIFY, TWILIO_TOKEN, "EAAG-prop", token])


@pytest.fixture
def server_log(caplog):
    """The server's log records (the test client's own lines about its URLs left out)."""
    caplog.set_level(logging.DEBUG)
    return lambda: [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore", "hypothesis"))]


def _check_log(records, studio: Studio) -> None:
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in records)
    assert "unhandled error" not in text
    for secret in studio.secrets:
        assert secret not in text


def _ok(r, what) -> None:
    assert r.status_code < 500, (what, r.status_code, r.text[:500])


def _body(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


# --------------------------------------------------------------------------- the properties


def test_whatsapp_never_answers_5xx(db, client, studio, server_log):
    @SETTINGS
    @given(WHATSAPP, CONTENT_TYPES)
    def post(value, content_type):
        body = _fresh(_body(value), "wamid.PROP")
        signature = meta_signature(APP_SECRET, body)
        studio.secrets.append(signature)
        headers = {"X-Hub-Signature-256": signature}
        if content_type:
            headers["Content-Type"] = content_type
        r = client.post(f"/hooks/{studio.hook}/whatsapp", content=body, headers=headers)
        _ok(r, value)
        if content_type == "application/json":
            assert r.status_code == 200, r.text  # Meta retries anything else: shapes are "ignored"

    post()

    @EACH_PART
    @given(CONFUSED)
    def each_part(value):
        for payload in every_part(_wa_template(), value):
            body = _fresh(_body(payload), "wamid.PROP")
            signature = meta_signature(APP_SECRET, body)
            studio.secrets.append(signature)
            headers = {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}
            r = client.post(f"/hooks/{studio.hook}/whatsapp", content=body, headers=headers)
            assert r.status_code == 200, (payload, r.status_code, r.text[:500])

    each_part()

    @SETTINGS
    @given(st.dictionaries(FORM_TEXT, FORM_TEXT, max_size=4), st.sampled_from(["subscribe", "", "x"]), FORM_TEXT)
    def handshake(query, mode, challenge):
        params = {**query, "hub.mode": mode, "hub.verify_token": VERIFY, "hub.challenge": challenge}
        _ok(client.get(f"/hooks/{studio.hook}/whatsapp", params=params), params)

    handshake()
    _check_log(server_log(), studio)


def test_twilio_never_answers_5xx(db, client, studio, server_log):
    @SETTINGS
    @given(TWILIO_ROUTES, FORMS, QUERIES, FORM_TYPES)
    def post(route, form, query, content_type):
        n = next(_serial)
        form = {k: f"{v}-{n}" if v in ("SMPROP", "CAPROP", "TRPROP") else v for k, v in form.items()}
        url = f"http://testserver/hooks/{studio.hook}/twilio/{route}"
        if query:
            url += "?" + urlencode(query)
        signature = twilio_signature(TWILIO_TOKEN, url, form.items())
        studio.secrets.append(signature)
        headers = {"X-Twilio-Signature": signature}
        if content_type:
            headers["Content-Type"] = content_type
        r = client.post(url, content=urlencode(form), headers=headers)
        _ok(r, (route, form, query))
        if content_type == "application/x-www-form-urlencoded":
            assert r.status_code in (200, 422), r.text  # the signature over the full URL held

    post()

    @EACH_PART
    @given(FORM_TEXT)
    def each_field(value):
        for route in ("sms", "call-status", "transcription", "message-status"):
            for key in TWILIO_KEYS:
                form = {**TWILIO_BASE, "MessageSid": f"SM{next(_serial)}", key: value}
                url = f"http://testserver/hooks/{studio.hook}/twilio/{route}"
                signature = twilio_signature(TWILIO_TOKEN, url, form.items())
                studio.secrets.append(signature)
                headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
                r = client.post(url, content=urlencode(form), headers=headers)
                assert r.status_code in (200, 422), (route, key, value, r.status_code, r.text[:500])

    each_field()
    _check_log(server_log(), studio)


def test_email_never_answers_5xx(db, client, studio, server_log):
    @SETTINGS
    @given(EMAILS, CONTENT_TYPES)
    def post(value, content_type):
        headers = {"Content-Type": content_type} if content_type else {}
        r = client.post(studio.email_path, content=_fresh(_body(value), POSTMARK["MessageID"]), headers=headers)
        _ok(r, value)
        if content_type == "application/json":
            assert r.status_code in (200, 422), r.text

    post()

    @EACH_PART
    @given(CONFUSED)
    def each_part(value):
        for payload in every_part(POSTMARK, value):
            r = client.post(studio.email_path, content=_fresh(_body(payload), POSTMARK["MessageID"]), headers=JSON_TYPE)
            assert r.status_code in (200, 422), (payload, r.status_code, r.text[:500])

    each_part()
    _check_log(server_log(), studio)


JSON_TYPE = {"Content-Type": "application/json"}
CHAT_TEMPLATE = {"conversationId": "cPROP0123456789", "clientMessageId": "mPROP0123456789", "text": "Hallo Studio"}


def test_web_chat_never_answers_5xx(db, client, studio, server_log):
    conversations = st.uuids().map(lambda u: "c" + u.hex)

    @SETTINGS
    @given(st.one_of(planted(CHAT_TEMPLATE), ANY), conversations, CONTENT_TYPES)
    def post(value, conversation, content_type):
        if isinstance(value, dict) and value.get("conversationId") == CHAT_TEMPLATE["conversationId"]:
            value = {**value, "conversationId": conversation}  # a fresh one: the rate limit is per conversation
        token = secrets.token_hex(32)
        studio.secrets.append(token)
        headers = {"Origin": SITE, "X-Chat-Token": token}
        if content_type:
            headers["Content-Type"] = content_type
        r = client.post(f"/chat/{studio.chat_key}/messages", content=_body(value), headers=headers)
        _ok(r, value)
        read = client.get(
            f"/chat/{studio.chat_key}/messages",
            params={"conversationId": value.get("conversationId") if isinstance(value, dict) else conversation},
            headers={"Origin": SITE, "X-Chat-Token": token},
        )
        _ok(read, value)
        if r.status_code == 200:
            assert read.status_code == 200

    post()

    # Reads of a conversation that exists, with its token (else nothing reaches the database).
    own, own_token = "c" + secrets.token_hex(16), secrets.token_hex(32)
    studio.secrets.append(own_token)
    started = client.post(
        f"/chat/{studio.chat_key}/messages",
        json={"conversationId": own, "clientMessageId": "m0123456789", "text": "Hallo"},
        headers={"Origin": SITE, "X-Chat-Token": own_token},
    )
    assert started.status_code == 200, started.text
    dates = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | st.sampled_from(
        ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "0001-01-01", "-1", "1e20"]
    )

    @SETTINGS
    @given(
        st.dictionaries(st.sampled_from(["conversationId", "x"]) | FORM_TEXT, FORM_TEXT, max_size=2),
        dates | FORM_TEXT,
        st.just(own_token) | FORM_TEXT,
    )
    def read(query, after, token):
        query = {"conversationId": own, "after": after, **query}
        headers = {"Origin": SITE}
        if token.isascii() and token.isprintable():
            headers["X-Chat-Token"] = token
        _ok(client.get(f"/chat/{studio.chat_key}/messages", params=query, headers=headers), query)

    read()
    _check_log(server_log(), studio)
