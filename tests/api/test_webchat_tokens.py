"""Web chat conversations belong to the browser holding their random token (issue 21): the first
message binds it, every read and write checks it, and a wrong or missing token learns nothing
(the same 404 as a conversation that does not exist). SQLite and PostgreSQL."""

from __future__ import annotations

import secrets

import pytest
from cryptography.fernet import Fernet
from sqlmodel import Session, select

from engine import services
from engine.inbound import webchat
from engine.services import channel_settings as cs
from engine.services.runs import runner_for
from engine.settings import get_settings
from engine.store.models import EventRecord, WebChatConversation
from engine.uow import unit_of_work

SITE = "https://www.yoga-nord.example"


@pytest.fixture(autouse=True)
def secret_key(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _studio(db, actor) -> str:
    """The studio's chat key, with a web_chat workflow that answers and ``SITE`` allowed."""
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Chat answer",
                "trigger": {"type": "web_chat", "config": {}},
                "conditions": [],
                "actions": [
                    {
                        "id": "reply",
                        "type": "send_message",
                        "config": {"message": "Namaste: {{trigger.content}}"},
                        "nextActionId": None,
                    }
                ],
            },
        )
        webchat.save_web_chat(uow=uow, actor=actor, allowed_origins=[SITE])
    with unit_of_work(db) as uow:
        return cs.chat_key(uow=uow, actor=actor)


def _token() -> str:
    return secrets.token_hex(32)


def _post(client, key: str, conversation: str, token: str | None, text: str = "Gibt es Yin Yoga?"):
    headers = {"Origin": SITE}
    if token is not None:
        headers["X-Chat-Token"] = token
    body = {"conversationId": conversation, "clientMessageId": "m" + secrets.token_hex(8), "text": text}
    return client.post(f"/chat/{key}/messages", json=body, headers=headers)


def _read(client, key: str, conversation: str, token: str | None):
    headers = {"Origin": SITE}
    if token is not None:
        headers["X-Chat-Token"] = token
    return client.get(f"/chat/{key}/messages", params={"conversationId": conversation}, headers=headers)


def _events(db) -> int:
    with Session(db) as s:
        return len(s.exec(select(EventRecord)).all())


def test_only_the_token_that_started_a_conversation_reads_and_writes_it(db, actor, client):
    key = _studio(db, actor)
    conversation, token = "c" + secrets.token_hex(16), _token()
    first = _post(client, key, conversation, token)
    assert first.status_code == 200 and first.json() == {"accepted": True, "duplicate": False}
    assert first.headers["access-control-allow-origin"] == SITE
    replies = _read(client, key, conversation, token)
    assert replies.status_code == 200
    assert [r["text"] for r in replies.json()] == ["Namaste: Gibt es Yin Yoga?"]

    unknown = _read(client, key, "c" + secrets.token_hex(16), _token())
    wrong = _read(client, key, conversation, _token())
    assert wrong.status_code == unknown.status_code == 404
    assert (
        wrong.json()
        == unknown.json()
        == {
            "success": False,
            "error": {"code": "not_found", "message": "conversation not found: start a new one"},
        }
    )
    assert "Namaste" not in wrong.text
    missing = _read(client, key, conversation, None)
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "X-Chat-Token"
    assert _read(client, key, conversation, "short").status_code == 422

    before = _events(db)
    assert _post(client, key, conversation, _token(), "Ich bin jemand anderes").status_code == 404
    assert _post(client, key, conversation, None, "Ohne Token").status_code == 422
    assert _events(db) == before  # nothing of the refused writes was stored
    assert _post(client, key, conversation, token, "Und morgen?").status_code == 200
    assert [r["text"] for r in _read(client, key, conversation, token).json()] == [
        "Namaste: Gibt es Yin Yoga?",
        "Namaste: Und morgen?",
    ]


def test_only_hashes_are_stored(db, actor, client):
    key = _studio(db, actor)
    conversation, token = "c" + secrets.token_hex(16), _token()
    assert _post(client, key, conversation, token).status_code == 200
    with Session(db) as s:
        rows = s.exec(select(WebChatConversation)).all()
    assert len(rows) == 1 and rows[0].tenant_id == actor.tenant_id
    stored = rows[0].model_dump_json()
    assert token not in stored and conversation not in stored


def test_a_conversation_from_before_tokens_cannot_be_claimed(db, actor, client):
    """Its id is visible to the studio's staff (the contact of its executions): whoever learns it
    must not be able to bind a token to it and read what the studio answered."""
    key = _studio(db, actor)
    legacy = "cLegacy" + secrets.token_hex(8)
    runner_for(db).ingest(
        actor.tenant_id,
        {
            "triggerType": "web_chat",
            "channel": "web",
            "from": f"web:{legacy}",
            "content": "Meine Telefonnummer ist 0176",
        },
    )
    attacker = _token()
    assert _post(client, key, legacy, attacker).status_code == 404
    assert _read(client, key, legacy, attacker).status_code == 404
    with Session(db) as s:
        assert s.exec(select(WebChatConversation)).all() == []


def test_conversations_do_not_cross_studios(db, actor, other_actor, client):
    key_a, key_b = _studio(db, actor), _studio(db, other_actor)
    conversation, token = "c" + secrets.token_hex(16), _token()
    assert _post(client, key_a, conversation, token, "Nur für Studio A").status_code == 200
    # The same id and token at studio B are another conversation: none of A's replies show.
    assert _read(client, key_b, conversation, token).status_code == 404
    assert _post(client, key_b, conversation, token, "Hallo B").status_code == 200
    texts_b = [r["text"] for r in _read(client, key_b, conversation, token).json()]
    assert texts_b == ["Namaste: Hallo B"]
    texts_a = [r["text"] for r in _read(client, key_a, conversation, token).json()]
    assert texts_a == ["Namaste: Nur für Studio A"]


def test_preflight_allows_the_token_header(db, actor, client):
    key = _studio(db, actor)
    # A preflight repeats the real request's query string.
    r = client.options(
        f"/chat/{key}/messages?conversationId=c0123456789abcdef&after=2026-01-01T00:00:00Z",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-chat-token",
        },
    )
    assert r.status_code == 204 and "X-Chat-Token" in r.headers["access-control-allow-headers"]


@pytest.mark.parametrize("after", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "0001-01-01"])
def test_reading_after_a_date_at_the_calendars_edge_is_refused_not_a_500(db, actor, client, after):
    key = _studio(db, actor)
    conversation, token = "c" + secrets.token_hex(16), _token()
    assert _post(client, key, conversation, token).status_code == 200
    r = client.get(
        f"/chat/{key}/messages",
        params={"conversationId": conversation, "after": after},
        headers={"Origin": SITE, "X-Chat-Token": token},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "after"
    ok = client.get(
        f"/chat/{key}/messages",
        params={"conversationId": conversation, "after": "2026-01-01T00:00:00+14:00"},
        headers={"Origin": SITE, "X-Chat-Token": token},
    )
    assert ok.status_code == 200
