"""The Outbox page (issue 21): statuses in words, retry of a failed message, and the owner's
decision on a message whose outcome is unknown; analysts see no buttons."""

from __future__ import annotations

from engine import services
from engine.messaging import outbox_states
from engine.messaging.delivery import queue_message
from engine.runner import tenant_context
from engine.security import auth
from engine.store.models import Tenant, utcnow
from engine.uow import unit_of_work


def _messages(studio) -> dict[str, str]:
    """Two WhatsApp messages of the demo studio: one whose provider answer was lost, one failed."""
    db = studio["db"]
    owner = auth.system_actor(studio["tenant_id"])
    whatsapp = {"adapter": "whatsapp_cloud", "phoneNumberId": "1055", "accessToken": "t"}
    with unit_of_work(db) as uow:
        services.update_tenant_settings(uow=uow, actor=owner, settings={"channels": {"whatsapp": whatsapp}})
    ids = {}
    for name, text in (("unknown", "Bis Montag!"), ("failed", "Dein Kurs fällt aus")):
        with unit_of_work(db) as uow:
            tenant = tenant_context(uow.session.get(Tenant, studio["tenant_id"]))
            out = queue_message(
                uow,
                tenant=tenant,
                execution_id=None,
                step_id=f"page-{name}",
                channel="whatsapp",
                recipient="+4917612345678",
                body=text,
                subject=None,
                now=utcnow(),
            )
        ids[name] = out["outboxId"]
    with unit_of_work(db) as uow:  # the worker's moves: a send whose answer was lost, a refused one
        conn = uow.connection()
        row = outbox_states.load(conn, ids["unknown"])
        outbox_states.move(conn, row, "sending", attempts=1, sending_at=utcnow())
        outbox_states.move(conn, {**row, "status": "sending"}, "unknown", error="WhatsApp Cloud API: no answer")
        row = outbox_states.load(conn, ids["failed"])
        outbox_states.move(conn, row, "sending", attempts=1)
        outbox_states.move(conn, {**row, "status": "sending"}, "failed", error="HTTP 401: bad token")
    return ids


def _open(app_factory, role: str, message_id: str):
    at = app_factory(role, "pages/outbox.py")
    at.query_params["message"] = message_id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _status(studio, message_id: str) -> str:
    with studio["db"].connect() as conn:
        row = outbox_states.load(conn, message_id)
    assert row is not None
    return row["status"]


def test_the_owner_marks_an_unknown_outcome_as_sent(app_factory, studio):
    ids = _messages(studio)
    at = _open(app_factory, "owner", ids["unknown"])
    assert any("outcome unknown" in m.value for m in at.markdown)
    assert any("answer to this send was lost" in w.value for w in at.warning)
    at.button(key="outbox_mark_sent").click().run()
    assert not at.exception
    assert _status(studio, ids["unknown"]) == "sent"
    assert any("Marked as sent" in s.value for s in at.success)


def test_the_owner_sends_an_unknown_outcome_again_and_retries_a_failed_one(app_factory, studio):
    ids = _messages(studio)
    at = _open(app_factory, "owner", ids["unknown"])
    at.button(key="outbox_send_again").click().run()
    assert _status(studio, ids["unknown"]) == "pending"
    at = _open(app_factory, "owner", ids["failed"])
    assert any("failed after 1 attempt" in m.value for m in at.markdown)
    at.button(key="outbox_retry").click().run()
    assert _status(studio, ids["failed"]) == "pending"


def test_analysts_see_the_status_but_no_buttons(app_factory, studio):
    ids = _messages(studio)
    at = _open(app_factory, "analyst", ids["unknown"])
    assert any("outcome unknown" in m.value for m in at.markdown)
    keys = {b.key for b in at.button}
    assert not keys & {"outbox_mark_sent", "outbox_send_again", "outbox_retry"}
