"""The web chat widget: ``GET /widget.js`` and the public chat routes it calls.

``<script src="https://api.example.com/widget.js" data-studio="wc_..."></script>`` on the
studio's website opens a chat box; messages are posted to ``/chat/<key>/messages`` (origin
allow-list, rate limit) and replies read back from the same URL. Both carry the conversation's
random token in ``X-Chat-Token`` (a header, so it is never in a URL or an access log); a wrong
or missing one gets the same 404 as a conversation that does not exist.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from engine.api.deps import Db
from engine.api.errors import error_response
from engine.api.limits import AnyQueryRoute
from engine.errors import InvalidInput, NotFound, PermissionDenied
from engine.inbound import webchat
from engine.services.channel_settings import tenant_for_chat_key
from engine.uow import unit_of_work
from engine.workflow.limits import sane_datetime

router = APIRouter(tags=["web chat"])
WIDGET = Path(__file__).with_name("static") / "widget.js"
_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Origin not on the studio's allow-list"},
    404: {"description": "Unknown chat key, or no conversation with this id and token"},
    429: {"description": "Rate limit: try again after Retry-After seconds"},
}
#: The conversation's random token (the widget makes it with crypto.getRandomValues).
ChatToken = Header(
    alias=webchat.TOKEN_HEADER,
    min_length=32,
    max_length=128,
    pattern=webchat.TOKEN_RE.pattern,
    description="The conversation's random token: the first message binds the conversation to it",
)


class ChatMessageIn(BaseModel):
    conversation_id: str = Field(alias="conversationId", min_length=8, max_length=64)
    client_message_id: str = Field(alias="clientMessageId", min_length=8, max_length=64)
    text: str = Field(min_length=1, max_length=webchat.MAX_TEXT)


class ChatAccepted(BaseModel):
    accepted: bool
    duplicate: bool


class ChatReply(BaseModel):
    id: str
    text: str
    at: str


def _cors(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Vary": "Origin",
        "Access-Control-Allow-Headers": f"Content-Type, {webchat.TOKEN_HEADER}",
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Max-Age": "600",
    }


def _guard(db, key: str, request: Request) -> tuple[str, str]:
    with unit_of_work(db, read_only=True) as uow:
        tenant_id = tenant_for_chat_key(uow=uow, key=key)
    return tenant_id, webchat.check_origin(db, tenant_id, request.headers.get("origin"))


def _refusal(exc: Exception) -> Response:
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", exc.message)
    if isinstance(exc, webchat.RateLimited):
        return error_response(429, "rate_limited", exc.message, headers={"Retry-After": str(int(exc.retry_after) + 1)})
    if isinstance(exc, InvalidInput):
        return error_response(422, "invalid", exc.message, field=exc.field)
    return error_response(403, "forbidden", getattr(exc, "message", str(exc)))


@router.get(
    "/widget.js",
    summary="The embeddable web chat script",
    response_class=Response,
    responses={200: {"content": {"application/javascript": {}}}},
)
def widget_js() -> Response:
    return Response(
        WIDGET.read_text(), media_type="application/javascript", headers={"Cache-Control": "public, max-age=300"}
    )


def chat_preflight(key: str, request: Request, db: Db) -> Response:
    try:
        _, origin = _guard(db, key, request)
    except (NotFound, PermissionDenied) as exc:
        return _refusal(exc)
    return Response(status_code=204, headers=_cors(origin))


# The browser's preflight carries the real request's query (conversationId, after).
router.add_api_route(
    "/chat/{key}/messages",
    chat_preflight,
    methods=["OPTIONS"],
    include_in_schema=False,
    route_class_override=AnyQueryRoute,
)


@router.post("/chat/{key}/messages", summary="A visitor's chat message", response_model=ChatAccepted, responses=_ERRORS)
async def chat_post(key: str, body: ChatMessageIn, request: Request, db: Db, token: str = ChatToken) -> Any:
    try:
        tenant_id, origin = await run_in_threadpool(_guard, db, key, request)
        out = await run_in_threadpool(
            lambda: webchat.post_message(
                db,
                tenant_id,
                conversation_id=body.conversation_id,
                token=token,
                text=body.text,
                client_message_id=body.client_message_id,
            )
        )
    except (NotFound, PermissionDenied, InvalidInput, webchat.RateLimited) as exc:
        response = _refusal(exc)
        if isinstance(exc, (InvalidInput, webchat.RateLimited, webchat.UnknownConversation)):
            # Past the origin check: the widget may read why (and start a new conversation).
            response.headers.update(_cors(request.headers.get("origin") or ""))
        return response
    return JSONResponse(out, headers=_cors(origin))


@router.get(
    "/chat/{key}/messages",
    summary="The studio's replies in a conversation",
    response_model=list[ChatReply],
    responses=_ERRORS,
)
def chat_replies(
    key: str,
    request: Request,
    db: Db,
    conversation_id: str = Query(alias="conversationId", min_length=8, max_length=64),
    # Within the calendar window every date filter accepts (a date near year 1 or 9999 in
    # another zone overflowed on its way to UTC: a 500).
    after: Annotated[datetime | None, AfterValidator(sane_datetime), Query()] = None,
    token: str = ChatToken,
) -> Any:
    try:
        tenant_id, origin = _guard(db, key, request)
        out = webchat.replies(db, tenant_id, conversation_id=conversation_id, token=token, after=after)
    except (NotFound, PermissionDenied, InvalidInput) as exc:
        response = _refusal(exc)
        if isinstance(exc, (InvalidInput, webchat.UnknownConversation)):
            response.headers.update(_cors(request.headers.get("origin") or ""))
        return response
    return JSONResponse(out, headers=_cors(origin))
