"""Routes for the data lifecycle: retention settings, a member's data (export, erase) and opt-outs.

Contacts travel in request bodies, never in URLs, so phone numbers and addresses do not end
up in access logs. Export and erasure need an owner key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from engine.api.deps import CurrentActor, ReadUow, Uow
from engine.api.workflows import CamelBody
from engine.lifecycle import privacy, retention
from engine.lifecycle.retention import MAX_DAYS
from engine.messaging import optout
from engine.messaging.optout import MAX_WORD

router = APIRouter(prefix="/api", tags=["privacy"])


def _exactly_one_contact(schema: dict[str, Any]) -> None:
    """The schema says what the service checks: exactly one of phone or email, as text."""
    schema["oneOf"] = [
        {"required": ["phone"], "not": {"required": ["email"]}},
        {"required": ["email"], "not": {"required": ["phone"]}},
    ]


#: Some visible character and no NUL (which the API refuses in any text; the schema says so).
_VISIBLE = r"^[^\x00]*[^\s\x00][^\x00]*$"
_Word = Annotated[str, Field(min_length=1, max_length=MAX_WORD, pattern=_VISIBLE)]
_Days = Annotated[int, Field(ge=1, le=MAX_DAYS)]


class ContactRequest(CamelBody):
    """Exactly one of ``phone`` or ``email``."""

    model_config = CamelBody.model_config | {"json_schema_extra": _exactly_one_contact}

    # Text when given (null is refused, as documented); absent is None.
    phone: Annotated[str, Field(max_length=64, pattern=_VISIBLE)] = None  # type: ignore[assignment]
    email: Annotated[str, Field(max_length=320, pattern=_VISIBLE)] = None  # type: ignore[assignment]


class EraseRequest(ContactRequest):
    confirm: bool = Field(description="must be true: erasure cannot be undone", json_schema_extra={"const": True})


class RetentionRequest(CamelBody):
    details_days: _Days = Field(description="days to keep steps' input/output, message bodies, event payloads")
    summary_days: _Days = Field(
        description="days to keep execution, message and event rows (counts survive as rollups); at least detailsDays"
    )


class OptOutRequest(CamelBody):
    contact: Annotated[str, Field(min_length=1, max_length=320)]
    opted_out: bool


class OptWordsRequest(CamelBody):
    stop_words: Annotated[list[_Word], Field(min_length=1, max_length=20)]
    start_words: Annotated[list[_Word], Field(min_length=1, max_length=20, description="none of the stopWords")]


@router.get("/settings/retention", summary="How long the studio keeps execution details and summaries")
def get_retention(uow: ReadUow, actor: CurrentActor) -> dict[str, Any]:
    return {"success": True, "retention": retention.get_retention(uow=uow, actor=actor).to_api()}


@router.put("/settings/retention", summary="Set the studio's retention (owners)")
def set_retention(uow: Uow, actor: CurrentActor, body: RetentionRequest) -> dict[str, Any]:
    out = retention.set_retention(uow=uow, actor=actor, details_days=body.details_days, summary_days=body.summary_days)
    return {"success": True, "retention": out.to_api()}


@router.post("/contacts/export", summary="Everything stored about one member, as one JSON document (owners)")
def export_contact(uow: Uow, actor: CurrentActor, body: ContactRequest) -> dict[str, Any]:
    return {"success": True, "export": privacy.export_contact(uow=uow, actor=actor, phone=body.phone, email=body.email)}


@router.post("/contacts/erase", summary="Anonymise one member everywhere (owners; cannot be undone)")
def erase_contact(uow: Uow, actor: CurrentActor, body: EraseRequest) -> dict[str, Any]:
    from engine.errors import InvalidInput

    if not body.confirm:
        raise InvalidInput("must be true: erasure cannot be undone (export first if needed)", field="confirm")
    return {
        "success": True,
        "erasure": privacy.erase_contact(uow=uow, actor=actor, phone=body.phone, email=body.email).to_api(),
    }


@router.get("/contacts/erasures", summary="Erasures done: who, when, which contact hash (owners)")
def list_erasures(
    uow: ReadUow, actor: CurrentActor, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    return {"success": True, "erasures": [e.to_api() for e in privacy.list_erasures(uow=uow, actor=actor, limit=limit)]}


@router.get("/contacts/opt-outs", summary="Members who opted out of automated messages")
def list_opt_outs(uow: ReadUow, actor: CurrentActor) -> dict[str, Any]:
    return {"success": True, "optOuts": [o.to_api() for o in optout.list_opt_outs(uow=uow, actor=actor)]}


@router.post("/contacts/opt-outs", summary="Mark a member opted out or in by hand (owners)")
def set_opt_out(uow: Uow, actor: CurrentActor, body: OptOutRequest) -> dict[str, Any]:
    return {
        "success": True,
        "optOut": optout.set_opt_out(uow=uow, actor=actor, contact=body.contact, opted_out=body.opted_out).to_api(),
    }


@router.put("/settings/opt-out-words", summary="The studio's own opt-out and opt-in words (owners)")
def set_opt_words(uow: Uow, actor: CurrentActor, body: OptWordsRequest) -> dict[str, Any]:
    return {
        "success": True,
        **optout.set_opt_words(uow=uow, actor=actor, stop_words=body.stop_words, start_words=body.start_words),
    }
