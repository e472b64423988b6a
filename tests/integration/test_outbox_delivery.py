"""Every message ends in a final state (issue 21): the outbox state machine against local
providers on 127.0.0.1, the real worker, the REST API and signed status webhooks. SQLite and
PostgreSQL.

* a permanent provider error (HTTP 401) fails the message at once, with the provider's error;
* transient errors retry with backoff ("retrying (attempt 3 of 5, next at 15:42)") and fail
  after five attempts; retry from failed works from the API;
* a lost answer (read timeout) is "outcome unknown", never sent again unless the owner says so;
  a WhatsApp status carrying our reference settles it, and so does a Twilio look-up;
* a status report that beats the provider's answer is kept;
* a worker that finds a message left "sending" (its sender died) never sends it again.
"""

from __future__ import annotations

import json
import time
import warnings
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from bench.provider import LoopbackProvider, Send
from engine import services
from engine.api import create_app
from engine.inbound.signatures import meta_signature
from engine.inbound.updates import StatusUpdate, apply_status_updates
from engine.messaging import outbox_states
from engine.messaging.delivery import Claim, _begin, _call
from engine.runner import Runner
from engine.security import auth
from engine.services import channel_settings as cs
from engine.settings import get_settings
from engine.store.models import DueStatus, DueWork, OutboxMessage
from engine.uow import unit_of_work
from engine.worker import Worker
from tests.servers import Receiver

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BERLIN = ZoneInfo("Europe/Berlin")
#: 15:00 today in Berlin: the worker's test clock; the API's clock (the wall clock) is on the same day.
NOW = datetime.combine(datetime.now(BERLIN).date(), dt_time(15, 0), BERLIN).astimezone(UTC)
APP_SECRET = "meta-app-secret-outbox-21"
MEMBER = "+4917612345678"


@pytest.fixture(autouse=True)
def operator_switches(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("STUDIO_ALLOW_PROVIDER_BASE_URL", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class Studio:
    """A studio whose WhatsApp (and SMS) go to a local provider; a worker on a test clock."""

    def __init__(self, db: Any, tenant_factory: Any, provider_url: str, *, timeout: float = 5.0) -> None:
        self.db, self.now = db, NOW
        self.tenant = tenant_factory(timezone="Europe/Berlin")
        self.actor = auth.system_actor(self.tenant.id)
        with unit_of_work(db) as uow:
            cs.save_channel(
                uow=uow,
                actor=self.actor,
                channel="whatsapp",
                enabled=True,
                values={"phoneNumberId": "1055"},
                secrets={"accessToken": "EAAG-token", "appSecret": APP_SECRET, "verifyToken": "v"},
            )
        with unit_of_work(db, read_only=True) as uow:
            channels = dict(services.get_tenant(uow=uow, actor=self.actor).settings["channels"])
        channels["whatsapp"] = {**channels["whatsapp"], "baseUrl": provider_url, "timeout": timeout}
        channels["sms"] = {
            "adapter": "twilio",
            "baseUrl": provider_url,
            "accountSid": "AC1",
            "authToken": "twilio-token",
            "fromNumber": "+4930123456",
            "timeout": timeout,
        }
        with unit_of_work(db) as uow:
            services.update_tenant_settings(uow=uow, actor=self.actor, settings={"channels": channels})
        with unit_of_work(db) as uow:
            self.hook = cs.webhook_id(uow=uow, actor=self.actor)
            for trigger, action in (("whatsapp_message", "send_whatsapp"), ("missed_call", "send_sms")):
                services.create_workflow(
                    uow=uow,
                    actor=self.actor,
                    data={
                        "name": f"Reply {trigger}",
                        "trigger": {"type": trigger, "config": {}},
                        "conditions": [],
                        "actions": [{"id": "r", "type": action, "config": {"message": "Re: {{trigger.content}}"}}],
                    },
                )
        self.runner = Runner(db, clock=lambda: self.now)
        self.worker = self.new_worker("w1")
        self.client = TestClient(create_app(db))
        with unit_of_work(db) as uow:
            _, secret = services.create_api_key(uow=uow, actor=self.actor, name="t", role="owner")
        self.headers = {"Authorization": f"Bearer {secret}"}

    def new_worker(self, name: str) -> Worker:
        return Worker(self.db, clock=lambda: self.now, runner=self.runner, name=name)

    def queue(self, text: str = "hallo", *, channel: str = "whatsapp", **more: Any) -> str:
        """One member message in, one reply queued (pending, with its deliver item); its id."""
        event = (
            {"triggerType": "whatsapp_message", "channel": "whatsapp", "from": MEMBER, "content": text}
            if channel == "whatsapp"
            else {"triggerType": "missed_call", "from": MEMBER, "content": text}
        ) | more
        [execution] = self.runner.ingest(self.tenant.id, event).execution_ids
        with self.db.connect() as conn:
            return conn.execute(sa.select(OutboxMessage.id).where(OutboxMessage.execution_id == execution)).scalar_one()

    def row(self, outbox_id: str) -> dict[str, Any]:
        with self.db.connect() as conn:
            found = outbox_states.load(conn, outbox_id)
        assert found is not None
        return found

    def item(self, outbox_id: str) -> dict[str, Any]:
        with self.db.connect() as conn:
            items = [
                dict(r)
                for r in conn.execute(sa.select(DueWork.__table__).where(DueWork.kind == "deliver")).mappings()
                if r["payload"].get("outboxId") == outbox_id
            ]
        return items[-1]

    def api_row(self, outbox_id: str) -> dict[str, Any]:
        messages = self.client.get("/api/outbox", headers=self.headers).json()["messages"]
        return next(m for m in messages if m["id"] == outbox_id)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


@pytest.fixture
def studio(db, tenant_factory, receiver):
    s = Studio(db, tenant_factory, receiver.url)
    yield s
    s.close()


def assert_nothing_stuck(db) -> None:
    """No message in progress without an open deliver item, none open once its item ended."""
    with db.connect() as conn:
        open_items = {
            r.payload.get("outboxId")
            for r in conn.execute(
                sa.select(DueWork.payload).where(
                    DueWork.kind == "deliver", DueWork.status.in_((DueStatus.PENDING, DueStatus.CLAIMED))
                )
            )
        }
        owed = set(
            conn.execute(
                sa.select(OutboxMessage.id).where(OutboxMessage.status.in_(sorted(outbox_states.IN_PROGRESS)))
            ).scalars()
        )
    assert owed == open_items


# --------------------------------------------------------------------------- permanent and transient


def test_a_permanent_error_fails_the_message_at_once_with_the_providers_error(studio, receiver):
    receiver.responses.append((401, {"error": {"message": "Invalid OAuth access token.", "code": 190}}, {}))
    msg = studio.queue()
    studio.worker.run_once()
    row = studio.row(msg)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "HTTP 401" in row["error"] and "Invalid OAuth access token" in row["error"] and "EAAG" not in row["error"]
    assert studio.item(msg)["status"] == DueStatus.FAILED
    assert studio.api_row(msg)["statusText"] == "failed after 1 attempt"
    assert len(receiver.requests) == 1
    studio.now += timedelta(hours=2)
    studio.worker.run_once()
    assert len(receiver.requests) == 1  # failed for good: nothing is sent again by itself
    assert_nothing_stuck(studio.db)


def test_transient_errors_retry_with_backoff_then_fail_and_retry_from_the_api_sends(studio, receiver):
    receiver.statuses = [503]
    msg = studio.queue()
    for attempt in range(1, 5):
        studio.worker.run_once()
        row, item = studio.row(msg), studio.item(msg)
        assert (row["status"], row["attempts"]) == ("retrying", attempt)
        assert "HTTP 503" in row["error"]
        assert row["next_attempt_at"] == item["due_at"] > studio.now and item["status"] == DueStatus.PENDING
        local = row["next_attempt_at"].astimezone(BERLIN)
        expected = f"retrying (attempt {attempt + 1} of 5, next at {local:%H:%M})"
        assert studio.api_row(msg)["statusText"] == expected
        assert_nothing_stuck(studio.db)
        studio.worker.run_once()  # not due yet: nothing happens
        assert len(receiver.requests) == attempt
        studio.now = row["next_attempt_at"]
    studio.worker.run_once()
    row = studio.row(msg)
    assert (row["status"], row["attempts"], len(receiver.requests)) == ("failed", 5, 5)
    assert "gave up after 5 attempts" in row["error"] and studio.item(msg)["status"] == DueStatus.FAILED
    assert_nothing_stuck(studio.db)

    receiver.responses.append((200, {"messages": [{"id": "wamid.AGAIN"}]}, {}))
    answer = studio.client.post(f"/api/outbox/{msg}/retry", headers=studio.headers)
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    assert studio.client.post(f"/api/outbox/{msg}/retry", headers=studio.headers).status_code == 409
    studio.now = max(studio.now, datetime.now(UTC))  # the API queued it on the wall clock
    studio.worker.run_once()
    row = studio.row(msg)
    assert (row["status"], row["provider_message_id"], row["attempts"]) == ("sent", "wamid.AGAIN", 1)
    assert [e["status"] for e in row["detail"]["deliveryEvents"]][-2:] == ["failed", "retry"]
    assert_nothing_stuck(studio.db)


def test_the_owners_decisions_are_tenant_and_role_checked(studio, tenant_factory, receiver):
    receiver.responses.append((401, {"error": {"message": "bad token", "code": 190}}, {}))
    msg = studio.queue()
    studio.worker.run_once()
    other = auth.system_actor(tenant_factory("other-studio").id)
    with unit_of_work(studio.db) as uow:
        _, other_key = services.create_api_key(uow=uow, actor=other, name="o", role="owner")
        _, analyst_key = services.create_api_key(uow=uow, actor=studio.actor, name="a", role="analyst")
    for route in ("retry", "mark-sent", "send-again"):
        url = f"/api/outbox/{msg}/{route}"
        assert studio.client.post(url, headers={"Authorization": f"Bearer {other_key}"}).status_code == 404
        assert studio.client.post(url, headers={"Authorization": f"Bearer {analyst_key}"}).status_code == 403
    # Only an unknown outcome is the owner's to settle.
    assert studio.client.post(f"/api/outbox/{msg}/mark-sent", headers=studio.headers).status_code == 409
    assert studio.client.post(f"/api/outbox/{msg}/send-again", headers=studio.headers).status_code == 409
    assert studio.row(msg)["status"] == "failed"


# --------------------------------------------------------------------------- lost answers


@pytest.fixture
def slow_studio(db, tenant_factory):
    with LoopbackProvider(delay=(1.0, 1.0)) as provider:
        s = Studio(db, tenant_factory, provider.url, timeout=0.3)
        yield s, provider
        s.close()


def test_a_lost_answer_is_unknown_never_resent_and_our_reference_settles_it(slow_studio, tenant_factory):
    studio, provider = slow_studio
    msg = studio.queue()
    studio.worker.run_once()
    row = studio.row(msg)
    assert (row["status"], row["attempts"], row["provider_message_id"]) == ("unknown", 1, None)
    assert "no answer within 0.3s" in row["error"] and studio.item(msg)["status"] == DueStatus.DONE
    assert studio.api_row(msg)["statusText"] == "outcome unknown"
    assert_nothing_stuck(studio.db)
    studio.now += timedelta(hours=3)
    studio.worker.run_once()
    assert provider.counts() == {msg: 1}  # our reference went along; never sent again by itself

    # Meta's status report carries our reference (biz_opaque_callback_data): it settles the message.
    wamid = provider.sends[0].provider_id
    body = _wa_status(wamid, "delivered", reference=msg)
    answer = studio.client.post(
        f"/hooks/{studio.hook}/whatsapp",
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(APP_SECRET, body)},
    )
    assert answer.status_code == 200
    row = studio.row(msg)
    assert (row["status"], row["provider_message_id"], row["error"]) == ("delivered", wamid, None)

    # A reference to another studio's message, in this studio's signed webhook, changes nothing there.
    other = Studio(studio.db, tenant_factory, provider.url)
    try:
        theirs = other.queue()
    finally:
        other.close()
    body = _wa_status("wamid.forged", "read", reference=theirs)
    signed = {"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(APP_SECRET, body)}
    assert studio.client.post(f"/hooks/{studio.hook}/whatsapp", content=body, headers=signed).status_code == 200
    assert (other.row(theirs)["status"], other.row(theirs)["provider_message_id"]) == ("pending", None)
    assert_nothing_stuck(studio.db)


def test_the_owner_settles_an_unknown_outcome_from_the_api(slow_studio):
    studio, provider = slow_studio
    first, second = studio.queue("eins"), studio.queue("zwei")
    studio.worker.run_once()
    assert studio.row(first)["status"] == studio.row(second)["status"] == "unknown"

    marked = studio.client.post(f"/api/outbox/{first}/mark-sent", headers=studio.headers)
    assert marked.status_code == 200 and marked.json()["status"] == "sent"
    again = studio.client.post(f"/api/outbox/{second}/send-again", headers=studio.headers)
    assert again.status_code == 200 and again.json()["status"] == "pending"
    provider.delay = (0.0, 0.0)
    studio.now = max(studio.now, datetime.now(UTC))  # the API queued it on the wall clock
    studio.worker.run_once()
    assert studio.row(second)["status"] == "sent" and provider.counts() == {first: 1, second: 2}
    assert [e["status"] for e in studio.row(second)["detail"]["deliveryEvents"]][-2:] == ["unknown", "send again"]
    assert_nothing_stuck(studio.db)


def test_a_status_report_that_beats_the_answer_is_kept(db, tenant_factory):
    holder: dict[str, Any] = {}

    def report_first(send: Send) -> None:  # Meta's webhook arrives before its answer to our POST
        apply_status_updates(db, holder["tenant"], [StatusUpdate(send.provider_id, "delivered", reference=send.key)])

    with LoopbackProvider(delay=(0.0, 0.0), before_answer=report_first) as provider:
        studio = Studio(db, tenant_factory, provider.url)
        holder["tenant"] = studio.tenant.id
        try:
            msg = studio.queue()
            studio.worker.run_once()
        finally:
            studio.close()
    row = studio.row(msg)
    assert (row["status"], row["provider_message_id"]) == ("delivered", "wamid.loop1")
    assert studio.item(msg)["status"] == DueStatus.DONE
    assert_nothing_stuck(db)


def test_a_message_left_sending_by_a_dead_worker_is_unknown_and_a_twilio_look_up_settles_it(db, tenant_factory):
    with LoopbackProvider(delay=(0.0, 0.0)) as provider:
        studio = Studio(db, tenant_factory, provider.url)
        try:
            wa, sms_got, sms_lost = (
                studio.queue("wa"),
                studio.queue("a", channel="sms"),
                studio.queue("b", channel="sms"),
            )
            # Worker w1 marks each "sending"; it dies after its request reached the provider (wa,
            # sms_got: the answer is lost with it) or just before the request (sms_lost).
            dead = studio.new_worker("w1")
            for item in dead.claim() + dead.claim() + dead.claim():
                begun = _begin(db, item.payload["outboxId"], dead.clock, Claim(item.id, "w1", dead.claim_lease))
                assert not isinstance(begun, str)
                if item.payload["outboxId"] != sms_lost:
                    _call(begun, studio.now)  # the provider gets it; nothing is recorded
            assert {studio.row(m)["status"] for m in (wa, sms_got, sms_lost)} == {"sending"}

            studio.now += dead.claim_lease + timedelta(seconds=1)  # w1's leases ran out
            studio.new_worker("w2").run_once()
        finally:
            studio.close()
    assert studio.row(wa)["status"] == "unknown"  # Meta offers no look-up: the owner decides
    got = studio.row(sms_got)
    assert (got["status"], got["provider_message_id"], got["error"]) == ("sent", "SMloop2", None)
    assert got["detail"]["deliveryEvents"][-1]["by"] == "look-up"
    lost = studio.row(sms_lost)
    assert lost["status"] == "unknown" and "lists no such message" in lost["detail"]["deliveryEvents"][-1]["lookup"]
    assert provider.counts() == {wa: 1, "Re: a": 1}  # nothing was sent again
    assert provider.lookups == 2
    assert_nothing_stuck(db)


def _wa_status(wamid: str, status: str, *, reference: str) -> bytes:
    st = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": MEMBER.lstrip("+"),
        "biz_opaque_callback_data": reference,
    }
    value = {"messaging_product": "whatsapp", "statuses": [st]}
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "W", "changes": [{"field": "messages", "value": value}]}],
        }
    ).encode()


def test_the_frequency_cap_counts_delivered_and_read_messages(studio, receiver):
    """Before issue 21 the cap counted sent but not delivered or read messages, so a member got
    more than the cap once their messages were reported delivered."""
    with unit_of_work(studio.db) as uow:
        services.update_tenant_settings(uow=uow, actor=studio.actor, settings={"frequencyCap": 1})
    receiver.responses.append((200, {"messages": [{"id": "wamid.CAP1"}]}, {}))
    first = studio.queue("eins")
    studio.worker.run_once()
    assert apply_status_updates(studio.db, studio.tenant.id, [StatusUpdate("wamid.CAP1", "read")]) == 1
    # An event the member sent an hour ago (not a direct reply, which the cap exempts).
    second = studio.queue("zwei", receivedAt=(studio.now - timedelta(hours=1)).isoformat())
    assert studio.row(first)["status"] == "read"
    row = studio.row(second)
    assert row["status"] == "suppressed" and "frequency cap" in row["error"]
