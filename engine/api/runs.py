"""Routes for what runs: inbound events, executions with their steps, the outbox, bookings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

from engine import services
from engine.api import insights
from engine.api.contract import EVENT, request_body
from engine.api.deps import CurrentActor, ReadUow, Uow
from engine.api.workflows import CamelBody
from engine.errors import InvalidInput
from engine.workflow.limits import DATE_PATTERN, MAX_PAGE, sane_datetime, text_datetime

router = APIRouter(prefix="/api", tags=["runs"])

EVENT_EXAMPLE = {
    "triggerType": "whatsapp_message",
    "channel": "whatsapp",
    "content": "Was kostet die 10er-Karte?",
    "from": "+4915112345678",
}


class BookingRequest(CamelBody):
    member_name: Annotated[str, Field(min_length=1, max_length=200)]
    class_name: Annotated[str, Field(min_length=1, max_length=200)]
    starts_at: Annotated[AwareDatetime, BeforeValidator(text_datetime), AfterValidator(sane_datetime)] = Field(
        description="ISO 8601 with an offset, e.g. 2025-11-24T18:00:00+01:00 (between 1970 and 2200)",
        json_schema_extra={"pattern": DATE_PATTERN},
    )
    member_contact: Annotated[str, Field(max_length=320)] | None = None
    lead_id: Annotated[str, Field(min_length=1, max_length=32)] | None = None


def _page(items: list, total: int, page: int, page_size: int, key: str) -> dict[str, Any]:
    return {"success": True, key: [i.to_api() for i in items], "total": total, "page": page, "pageSize": page_size}


PageNo = Annotated[int, Query(ge=1, le=MAX_PAGE)]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=services.MAX_PAGE_SIZE)]


@router.post("/events", summary="Ingest an inbound event", openapi_extra=request_body(EVENT))
def ingest_event(
    uow: ReadUow,
    actor: CurrentActor,
    event: Annotated[dict[str, Any], Body(examples=[EVENT_EXAMPLE])],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> dict[str, Any]:
    """Store the event, then run every enabled workflow it matches.

    With an ``Idempotency-Key`` header (or ``idempotencyKey`` in the body) a repeated delivery
    stores nothing new and answers with the first event's executions (``duplicate: true``);
    the same key with a different event answers 422. ``intent`` / ``intentConfidence`` are the
    message's detected intent (``null`` for events without text).
    """
    if idempotency_key:
        if event.get("idempotencyKey") not in (None, idempotency_key):
            raise InvalidInput("differs from the Idempotency-Key header", field="idempotencyKey")
        event = {**event, "idempotencyKey": idempotency_key}
    result = services.ingest_event(uow=uow, actor=actor, event=event)
    return {
        "success": True,
        "eventId": result.event_id,
        "executionIds": result.execution_ids,
        "duplicate": result.duplicate,
        "intent": result.intent,
        "intentConfidence": result.intent_confidence,
    }


@router.get("/executions", summary="Executions, newest first")
def list_executions(
    uow: ReadUow,
    actor: CurrentActor,
    workflow_id: Annotated[str | None, Query(alias="workflowId", max_length=64)] = None,
    status: insights.Status = None,
    page: PageNo = 1,
    page_size: PageSize = 50,
    first: insights.From = None,
    last: insights.To = None,
    trigger: insights.Short = None,
    channel: insights.Short = None,
    intent: insights.Short = None,
    contact: insights.Contact = None,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """With ``from``, ``to``, ``trigger``, ``channel``, ``intent``, ``contact`` or ``after`` (a cursor),
    the list is keyset-paged like ``/api/executions/search`` (``nextCursor``); otherwise numbered pages."""
    if any((first, last, trigger, channel, intent, contact, after)) or status == "test":
        return insights.search_executions(
            uow, actor, first, last, status, workflow_id, trigger, channel, intent, contact, after, page_size
        )
    result = services.list_executions(
        uow=uow, actor=actor, workflow_id=workflow_id, status=status, page=page, page_size=page_size
    )
    return _page(result.items, result.total, result.page, result.page_size, "executions")


@router.get("/executions/{execution_id}", summary="One execution with its step trace")
def get_execution(uow: ReadUow, actor: CurrentActor, execution_id: str) -> dict[str, Any]:
    return {
        "success": True,
        "execution": services.get_execution(uow=uow, actor=actor, execution_id=execution_id).to_api(),
    }


@router.get("/outbox", summary="Messages the workflows sent or recorded, newest first")
def list_outbox(
    uow: ReadUow,
    actor: CurrentActor,
    execution_id: Annotated[str | None, Query(alias="executionId", max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    page: PageNo = 1,
    page_size: PageSize = 50,
) -> dict[str, Any]:
    result = services.list_outbox(
        uow=uow, actor=actor, execution_id=execution_id, status=status, page=page, page_size=page_size
    )
    return _page(result.items, result.total, result.page, result.page_size, "messages")


@router.post("/bookings", status_code=201, summary="Record a booking (emits booking_created)")
def create_booking(uow: Uow, actor: CurrentActor, body: BookingRequest) -> dict[str, Any]:
    booking, result = services.create_booking(
        uow=uow,
        actor=actor,
        member_name=body.member_name,
        class_name=body.class_name,
        starts_at=body.starts_at,
        member_contact=body.member_contact,
        lead_id=body.lead_id,
    )
    return {
        "success": True,
        "booking": booking.to_api(),
        "eventId": result.event_id,
        "executionIds": result.execution_ids,
    }
