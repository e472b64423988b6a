"""Public provider webhooks: ``/hooks/<studio webhook id>/...`` (no API key; each checks the
provider's signature on the raw body before anything is stored).

A bad or missing signature is answered 403 with a log line and nothing else; an unknown
webhook id 404. Accepted deliveries are answered 200 as soon as the events are stored (their
workflows' local steps committed, external steps handed to the worker).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from engine.api.deps import Db
from engine.api.errors import error_response
from engine.inbound import email as email_parser
from engine.inbound import signatures
from engine.inbound import twilio as twilio_parser
from engine.inbound import whatsapp as whatsapp_parser
from engine.inbound.service import apply_status_updates, ingest_events
from engine.services.channel_settings import secret_value, tenant_for_webhook
from engine.uow import unit_of_work

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/hooks", tags=["provider webhooks"])

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Signed body is not JSON"},
    403: {"description": "Bad or missing provider signature (or verify token)"},
    404: {"description": "Unknown studio webhook id"},
}


class Accepted(BaseModel):
    """What a provider gets back for an accepted delivery."""

    received: int
    duplicates: int
    statuses: int


def _forbidden(provider: str, tenant_id: str, why: str) -> Response:
    logger.warning("%s webhook for tenant %s refused: %s", provider, tenant_id, why)
    return error_response(403, "forbidden", "signature check failed")


def _tenant(db, hook_id: str) -> str:
    with unit_of_work(db, read_only=True) as uow:
        return tenant_for_webhook(uow=uow, hook_id=hook_id)


def _secret(db, tenant_id: str, name: str) -> str | None:
    with unit_of_work(db, read_only=True) as uow:
        return secret_value(uow=uow, tenant_id=tenant_id, name=name)


# --------------------------------------------------------------------------- WhatsApp


@router.get(
    "/{hook_id}/whatsapp",
    summary="WhatsApp Cloud API verification handshake",
    response_class=PlainTextResponse,
    responses=_ERRORS,
)
def whatsapp_verify(
    hook_id: str,
    db: Db,
    mode: str = Query("", alias="hub.mode"),
    verify_token: str = Query("", alias="hub.verify_token"),
    challenge: str = Query("", alias="hub.challenge", max_length=200),
) -> Response:
    """Meta calls this once when the callback URL is saved: echo ``hub.challenge`` if the token fits."""
    tenant_id = _tenant(db, hook_id)
    expected = _secret(db, tenant_id, "channels.whatsapp.verifyToken")
    if mode != "subscribe" or not expected or not hmac.compare_digest(expected.encode(), verify_token.encode()):
        return _forbidden("whatsapp", tenant_id, "verify token does not match")
    return PlainTextResponse(challenge)


@router.post(
    "/{hook_id}/whatsapp",
    summary="WhatsApp Cloud API messages and statuses",
    response_model=Accepted,
    responses=_ERRORS,
)
async def whatsapp_webhook(hook_id: str, request: Request, db: Db) -> Any:
    """Checks ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the app secret)."""
    body = await request.body()
    tenant_id = await run_in_threadpool(_tenant, db, hook_id)
    secret = await run_in_threadpool(_secret, db, tenant_id, "channels.whatsapp.appSecret")
    if not signatures.check_meta_signature(secret, body, request.headers.get("x-hub-signature-256")):
        return _forbidden(
            "whatsapp", tenant_id, "bad or missing X-Hub-Signature-256" if secret else "no app secret configured"
        )
    try:
        payload = json.loads(body)
    except ValueError:
        return error_response(400, "invalid", "body is not JSON", field="body")
    events, updates = whatsapp_parser.parse(payload)
    counts = await run_in_threadpool(ingest_events, db, tenant_id, events)
    changed = await run_in_threadpool(apply_status_updates, db, tenant_id, updates)
    return Accepted(received=counts["events"], duplicates=counts["duplicates"], statuses=changed)


# --------------------------------------------------------------------------- Twilio


def _public_url(request: Request) -> str:
    """The URL Twilio called (``STUDIO_PUBLIC_URL`` + path behind a proxy, else the request URL)."""
    from engine.settings import get_settings

    base = get_settings().public_url
    if base:
        url = base.rstrip("/") + request.url.path
        return url + (f"?{request.url.query}" if request.url.query else "")
    return str(request.url)


async def _twilio(hook_id: str, request: Request, db) -> tuple[str, dict[str, str]] | Response:
    body = await request.body()
    tenant_id = await run_in_threadpool(_tenant, db, hook_id)
    token = await run_in_threadpool(_secret, db, tenant_id, "channels.sms.authToken")
    params = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    if not signatures.check_twilio_signature(
        token, _public_url(request), params, request.headers.get("x-twilio-signature")
    ):
        return _forbidden(
            "twilio", tenant_id, "bad or missing X-Twilio-Signature" if token else "no auth token configured"
        )
    return tenant_id, dict(params)


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="application/xml")


_TWIML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/xml": {}}, "description": "Empty TwiML"},
    **_ERRORS,
}


async def _twilio_event(hook_id: str, request: Request, db, parse) -> Response:
    """Check Twilio's signature, turn the form into an event with ``parse`` (None: nothing to
    store) and ingest it; Twilio gets an empty TwiML answer."""
    checked = await _twilio(hook_id, request, db)
    if isinstance(checked, Response):
        return checked
    tenant_id, form = checked
    event = parse(form)
    if event:
        await run_in_threadpool(ingest_events, db, tenant_id, [event])
    return _twiml()


@router.post("/{hook_id}/twilio/sms", summary="Twilio inbound SMS", response_class=Response, responses=_TWIML)
async def twilio_sms(hook_id: str, request: Request, db: Db) -> Response:
    """An inbound SMS becomes ``sms_received`` (replies go out through the workflow, not TwiML)."""
    return await _twilio_event(hook_id, request, db, twilio_parser.sms_event)


@router.post(
    "/{hook_id}/twilio/call-status", summary="Twilio call status callback", response_class=Response, responses=_TWIML
)
async def twilio_call_status(hook_id: str, request: Request, db: Db) -> Response:
    """``no-answer``, ``busy``, ``failed`` or ``canceled`` becomes ``missed_call`` with the caller."""
    return await _twilio_event(hook_id, request, db, twilio_parser.call_status_event)


@router.post(
    "/{hook_id}/twilio/transcription",
    summary="Twilio transcription callback",
    response_class=Response,
    responses=_TWIML,
)
async def twilio_transcription(hook_id: str, request: Request, db: Db) -> Response:
    """A finished transcription becomes a ``voice_call`` event with the transcript."""
    return await _twilio_event(hook_id, request, db, twilio_parser.transcription_event)


@router.post(
    "/{hook_id}/twilio/message-status",
    summary="Twilio message status callback",
    response_class=Response,
    responses=_TWIML,
)
async def twilio_message_status(hook_id: str, request: Request, db: Db) -> Response:
    """Updates the outbox message with Twilio's ``MessageSid`` (delivered, failed with the error code...)."""
    checked = await _twilio(hook_id, request, db)
    if isinstance(checked, Response):
        return checked
    tenant_id, form = checked
    update = twilio_parser.message_status(form)
    if update:
        await run_in_threadpool(apply_status_updates, db, tenant_id, [update])
    return _twiml()


# --------------------------------------------------------------------------- e-mail


def _basic_password(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        return base64.b64decode(header[6:].strip()).decode().split(":", 1)[1]
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


@router.post(
    "/{hook_id}/email/{token}",
    summary="Inbound e-mail (Postmark inbound JSON)",
    response_model=Accepted,
    responses={**_ERRORS, 422: {"description": "Sender or MessageID missing"}},
)
async def email_webhook(hook_id: str, token: str, request: Request, db: Db) -> Any:
    """Authenticated by the secret in the URL (or as the basic-auth password with token ``-``)."""
    body = await request.body()
    tenant_id = await run_in_threadpool(_tenant, db, hook_id)
    expected = await run_in_threadpool(_secret, db, tenant_id, "inbound.emailToken")
    given = token if token != "-" else (_basic_password(request.headers.get("authorization")) or "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        return _forbidden("email", tenant_id, "wrong inbound e-mail token")
    try:
        payload = json.loads(body)
    except ValueError:
        return error_response(400, "invalid", "body is not JSON", field="body")
    event = email_parser.email_event(payload)
    counts = await run_in_threadpool(ingest_events, db, tenant_id, [event])
    return Accepted(received=counts["events"], duplicates=counts["duplicates"], statuses=0)
