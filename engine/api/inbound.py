"""Public provider webhooks: ``/hooks/<studio webhook id>/...`` (no API key; each checks the
provider's signature on the raw body before anything is stored).

Order of checks, the same on every route: unknown webhook id 404; bad or missing signature
(or e-mail token) 403 with a log line and nothing else; a body that is not the provider's
content type 415; a payload of another shape than the provider documents 422 or 200
"ignored", as that provider's retry rules call for (the PROVIDERS notes in
``engine/inbound/whatsapp.py``, ``twilio.py`` and ``email.py`` say which and why). Accepted
deliveries are answered 200 as soon as the events are stored (their workflows' local steps
committed, external steps handed to the worker).

Log lines name the provider, the studio and what was wrong, never the URL (the e-mail route
carries its secret in the path), a signature or a secret.

Providers call the URL the owner pasted into their console, query string included (Twilio
signs it with the query), so these routes take any query parameter.
"""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from engine.api.deps import Db
from engine.api.errors import error_response
from engine.api.limits import AnyQueryRoute
from engine.inbound import email as email_parser
from engine.inbound import signatures
from engine.inbound import twilio as twilio_parser
from engine.inbound import whatsapp as whatsapp_parser
from engine.inbound.payload import UnexpectedShape, json_body
from engine.inbound.service import apply_status_updates, ingest_events
from engine.services.channel_settings import secret_value, tenant_for_webhook
from engine.uow import unit_of_work

logger = logging.getLogger(__name__)


router = APIRouter(prefix="/hooks", tags=["provider webhooks"], route_class=AnyQueryRoute)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Bad or missing provider signature (or verify token)"},
    404: {"description": "Unknown studio webhook id"},
    415: {"description": "Signed body is not the provider's content type"},
}


class Accepted(BaseModel):
    """What a provider gets back for an accepted delivery."""

    received: int
    duplicates: int
    statuses: int
    #: Parts of the delivery not stored because of their shape (the server log says where).
    ignored: int = 0


def _forbidden(provider: str, tenant_id: str, why: str) -> Response:
    logger.warning("%s webhook for tenant %s refused: %s", provider, tenant_id, why)
    return error_response(403, "forbidden", "signature check failed")


def _unexpected_shape(provider: str, tenant_id: str, exc: UnexpectedShape) -> Response:
    logger.warning("%s webhook for tenant %s refused: unexpected payload: %s", provider, tenant_id, exc.message)
    return error_response(422, "invalid", exc.message, field=exc.field)


def _wrong_media_type(request: Request, expected: str, provider: str, tenant_id: str) -> Response | None:
    given = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if given == expected:
        return None
    logger.warning(
        "%s webhook for tenant %s refused: content type %r, not %s", provider, tenant_id, given[:60], expected
    )
    return error_response(415, "unsupported_media_type", f"send the body as {expected}", field="Content-Type")


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
    if mode != "subscribe" or not expected or not signatures.same(expected, verify_token):
        return _forbidden("whatsapp", tenant_id, "verify token does not match")
    return PlainTextResponse(challenge)


@router.post(
    "/{hook_id}/whatsapp",
    summary="WhatsApp Cloud API messages and statuses",
    response_model=Accepted,
    responses=_ERRORS,
)
async def whatsapp_webhook(hook_id: str, request: Request, db: Db) -> Any:
    """Checks ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the app secret).

    A signed delivery of an unexpected shape is answered 200 with ``ignored`` (Meta retries
    anything else for days; see ``engine/inbound/whatsapp.py``).
    """
    body = await request.body()
    tenant_id = await run_in_threadpool(_tenant, db, hook_id)
    secret = await run_in_threadpool(_secret, db, tenant_id, "channels.whatsapp.appSecret")
    if not signatures.check_meta_signature(secret, body, request.headers.get("x-hub-signature-256")):
        return _forbidden(
            "whatsapp", tenant_id, "bad or missing X-Hub-Signature-256" if secret else "no app secret configured"
        )
    if refused := _wrong_media_type(request, JSON, "whatsapp", tenant_id):
        return refused
    try:
        parsed = whatsapp_parser.parse(json_body(body))
    except UnexpectedShape as exc:
        parsed = whatsapp_parser.Parsed(ignored=[exc.message])
    if parsed.ignored:
        logger.warning("whatsapp webhook for tenant %s: ignored %s", tenant_id, "; ".join(parsed.ignored))
    counts = await run_in_threadpool(ingest_events, db, tenant_id, parsed.events)
    changed = await run_in_threadpool(apply_status_updates, db, tenant_id, parsed.updates)
    return Accepted(
        received=counts["events"], duplicates=counts["duplicates"], statuses=changed, ignored=len(parsed.ignored)
    )


# --------------------------------------------------------------------------- Twilio


def called_url(request: Request) -> str:
    """The URL Twilio called, as it signs it: scheme and host from ``STUDIO_PUBLIC_URL`` behind a
    proxy, else from the request (its Host header); the path and query exactly as sent."""
    from engine.settings import get_settings

    base = get_settings().public_url or f"{request.url.scheme}://{request.url.netloc}"
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    return base.rstrip("/") + path + (f"?{query}" if query else "")


async def _twilio(hook_id: str, request: Request, db) -> tuple[str, dict[str, str]] | Response:
    body = await request.body()
    tenant_id = await run_in_threadpool(_tenant, db, hook_id)
    token = await run_in_threadpool(_secret, db, tenant_id, "channels.sms.authToken")
    params = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    if not signatures.check_twilio_signature(
        token, called_url(request), params, request.headers.get("x-twilio-signature")
    ):
        return _forbidden(
            "twilio", tenant_id, "bad or missing X-Twilio-Signature" if token else "no auth token configured"
        )
    if refused := _wrong_media_type(request, FORM, "twilio", tenant_id):
        return refused
    return tenant_id, dict(params)


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="application/xml")


_TWIML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/xml": {}}, "description": "Empty TwiML"},
    422: {"description": "A signed form without the fields Twilio documents (named in the answer)"},
    **_ERRORS,
}


async def _twilio_event(hook_id: str, request: Request, db, parse) -> Response:
    """Check Twilio's signature, turn the form into an event with ``parse`` (None: nothing to
    store) and ingest it; Twilio gets an empty TwiML answer."""
    checked = await _twilio(hook_id, request, db)
    if isinstance(checked, Response):
        return checked
    tenant_id, form = checked
    try:
        event = parse(form)
    except UnexpectedShape as exc:
        return _unexpected_shape("twilio", tenant_id, exc)
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
    try:
        update = twilio_parser.message_status(form)
    except UnexpectedShape as exc:
        return _unexpected_shape("twilio", tenant_id, exc)
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
    responses={**_ERRORS, 422: {"description": "Not Postmark's inbound JSON: sender, MessageID or a type (named)"}},
)
async def email_webhook(hook_id: str, token: str, request: Request, db: Db) -> Any:
    """Authenticated by the secret in the URL (or as the basic-auth password with token ``-``)."""
    body = await request.body()
    tenant_id = await run_in_threadpool(_tenant, db, hook_id)
    expected = await run_in_threadpool(_secret, db, tenant_id, "inbound.emailToken")
    given = token if token != "-" else (_basic_password(request.headers.get("authorization")) or "")
    if not expected or not signatures.same(expected, given):
        return _forbidden("email", tenant_id, "wrong inbound e-mail token")
    if refused := _wrong_media_type(request, JSON, "email", tenant_id):
        return refused
    try:
        event = email_parser.email_event(json_body(body))
    except UnexpectedShape as exc:
        return _unexpected_shape("email", tenant_id, exc)
    counts = await run_in_threadpool(ingest_events, db, tenant_id, [event])
    return Accepted(received=counts["events"], duplicates=counts["duplicates"], statuses=0)
