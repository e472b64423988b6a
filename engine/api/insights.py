"""Routes for analysts and operations: ``GET /api/stats`` (the Insights page's numbers), per
workflow numbers, flow counts, conversions, CSV exports (streamed), replay and cancel, and one
member's timeline (``POST``: the contact travels in the body)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator, Field

from engine import domain
from engine.api.deps import CurrentActor, ReadUow, Uow
from engine.api.workflows import CamelBody
from engine.services import insights, operations
from engine.services.workflows import MAX_PAGE_SIZE

router = APIRouter(prefix="/api", tags=["insights"])


def _iso_day(value: Any) -> Any:
    """A ``BeforeValidator``: a day as ``YYYY-MM-DD`` text; pydantic would read ``0.0`` as a Unix timestamp."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]
From = Annotated[Day | None, Query(alias="from", description="first local day, YYYY-MM-DD (studio timezone)")]
To = Annotated[Day | None, Query(alias="to", description="last local day, YYYY-MM-DD (inclusive)")]
Range = Annotated[
    Literal["today", "7d", "30d", "month", "custom"],
    Query(alias="range", description="a preset; from/to (either alone is that one day) make it custom"),
]


class CsvResponse(StreamingResponse):
    """A streamed CSV download (documented as ``text/csv`` in the OpenAPI document)."""

    media_type = "text/csv"


_CSV: dict[int | str, dict[str, Any]] = {
    200: {"description": "CSV with a header row", "content": {"text/csv": {"schema": {"type": "string"}}}}
}


class ReplayRequest(CamelBody):
    from_step: Literal["failed", "start"] = Field(
        "failed", description="start again at the failed step or at the first"
    )
    version: Literal["original", "current"] = Field("original", description="the definition it ran, or the current one")


class CancelRequest(CamelBody):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


def _period(uow, actor, preset: str, first: date | None, last: date | None) -> insights.Period:
    """The period of ``range`` or ``from``/``to``; one of ``from``/``to`` alone is that one day
    (as in the executions search)."""
    tz = insights._tz(uow, actor)
    return insights.resolve_period(tz, preset, first=first or last, last=last or first)


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def _download(chunks: Iterator[str] | list[str], name: str) -> StreamingResponse:
    return CsvResponse(
        iter(chunks),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/stats", summary="KPIs for a date range, with the previous period and deltas")
def get_stats(
    uow: ReadUow, actor: CurrentActor, first: From = None, last: To = None, preset: Range = "30d"
) -> dict[str, Any]:
    """Counts as ``engine.domain`` defines them (test and dry runs never count), in the studio's
    timezone: ``from``/``to`` are local days (inclusive), or ``range`` is a preset."""
    return {
        "success": True,
        **insights.stats(uow=uow, actor=actor, first=first or last, last=last or first, preset=preset),
    }


@router.get("/stats/workflows", summary="Per workflow: runs, success rate, skipped, errors, median duration, trend")
def get_workflow_stats(
    uow: ReadUow, actor: CurrentActor, first: From = None, last: To = None, preset: Range = "30d"
) -> dict[str, Any]:
    p = _period(uow, actor, preset, first, last)
    return {"success": True, "workflows": insights.per_workflow(uow=uow, actor=actor, p=p)}


@router.get("/stats/workflows/{workflow_id}/flow", summary="How many executions reached each step, and how they ended")
def get_flow(
    uow: ReadUow, actor: CurrentActor, workflow_id: str, first: From = None, last: To = None, preset: Range = "30d"
) -> dict[str, Any]:
    p = _period(uow, actor, preset, first, last)
    return {"success": True, "steps": insights.flow_numbers(uow=uow, actor=actor, workflow_id=workflow_id, p=p)}


@router.get("/stats/workflows/{workflow_id}/conversions", summary="Conversion to a booking or lead within N days")
def get_conversions(
    uow: ReadUow,
    actor: CurrentActor,
    workflow_id: str,
    kind: Literal["booking", "lead"] = "booking",
    days: Annotated[int, Query(ge=1, le=90)] = 7,
    first: From = None,
    last: To = None,
    preset: Range = "30d",
) -> dict[str, Any]:
    p = _period(uow, actor, preset, first, last)
    return {
        "success": True,
        "conversions": insights.conversions(uow=uow, actor=actor, workflow_id=workflow_id, p=p, kind=kind, days=days),
    }


@router.get(
    "/stats/export.csv",
    summary="The KPI table or the per-workflow table as CSV",
    response_class=CsvResponse,
    responses=_CSV,
)
def export_stats(
    uow: ReadUow,
    actor: CurrentActor,
    table: Literal["kpis", "workflows"] = "kpis",
    first: From = None,
    last: To = None,
    preset: Range = "30d",
) -> StreamingResponse:
    p = _period(uow, actor, preset, first, last)
    if table == "workflows":
        rows = insights.per_workflow(uow=uow, actor=actor, p=p)
        keys = [
            "workflow",
            "runs",
            "succeeded",
            "successRate",
            "skipped",
            "errors",
            "inProgress",
            "medianDurationS",
            "lastRun",
        ]
        return _download([_csv([keys, *([r[k] for k in keys] for r in rows)])], "workflows.csv")
    k = insights.kpis(uow=uow, actor=actor, period=p)
    keys = [key for key, v in k["current"].items() if not isinstance(v, dict)]
    body = [
        ["kpi", "value", "previous", "delta"],
        *([key, k["current"][key], k["previous"][key], k["delta"][key]] for key in keys),
    ]
    return _download([_csv(body)], "kpis.csv")


def _filters(
    uow, actor, first, last, status, workflow_id, trigger, channel, intent, contact
) -> operations.ExecutionFilter:
    start = end = None
    if first or last:
        p = _period(uow, actor, "custom", first or last, last or first)
        start, end = p.start, p.end
    return operations.ExecutionFilter(
        start=start,
        end=end,
        status=status,
        workflow_id=workflow_id,
        trigger=trigger,
        channel=channel,
        intent=intent,
        contact=contact,
    )


# Built from the domain's filters so the two never drift; mypy cannot read a computed Literal.
Status = Annotated[Literal[(*domain.STATUS_FILTERS, domain.Outcome.IN_PROGRESS.value)] | None, Query()]  # type: ignore[valid-type]
Short = Annotated[str | None, Query(max_length=64)]
Contact = Annotated[str | None, Query(max_length=320, description="phone number or e-mail address of the member")]


@router.get("/executions/search", summary="Executions with every filter, keyset-paged (newest first)")
def search_executions(
    uow: ReadUow,
    actor: CurrentActor,
    first: From = None,
    last: To = None,
    status: Status = None,
    workflow_id: Annotated[str | None, Query(alias="workflowId", max_length=64)] = None,
    trigger: Short = None,
    channel: Short = None,
    intent: Short = None,
    contact: Contact = None,
    after: Annotated[str | None, Query(max_length=200)] = None,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> dict[str, Any]:
    f = _filters(uow, actor, first, last, status, workflow_id, trigger, channel, intent, contact)
    page = operations.search_executions(uow=uow, actor=actor, filters=f, after=after, page_size=page_size)
    return {
        "success": True,
        "executions": [e.to_api() for e in page.items],
        "nextCursor": page.next_cursor,
        "pageSize": page.page_size,
    }


@router.get(
    "/executions/export.csv",
    summary="Every filtered execution as CSV, streamed",
    response_class=CsvResponse,
    responses=_CSV,
)
def export_executions(
    uow: ReadUow,
    actor: CurrentActor,
    first: From = None,
    last: To = None,
    status: Status = None,
    workflow_id: Annotated[str | None, Query(alias="workflowId", max_length=64)] = None,
    trigger: Short = None,
    channel: Short = None,
    intent: Short = None,
    contact: Contact = None,
) -> StreamingResponse:
    f = _filters(uow, actor, first, last, status, workflow_id, trigger, channel, intent, contact)
    f.check()
    return _download(operations.iter_executions_csv(uow=uow, actor=actor, filters=f), "executions.csv")


@router.post("/executions/{execution_id}/replay", summary="Replay a failed execution (once)")
def replay_execution(
    uow: Uow, actor: CurrentActor, execution_id: str, body: ReplayRequest | None = None
) -> dict[str, Any]:
    body = body or ReplayRequest()
    out = operations.replay_execution(
        uow=uow, actor=actor, execution_id=execution_id, from_step=body.from_step, version=body.version
    )
    return {"success": True, "originalId": out.original_id, "execution": out.execution.to_api()}


@router.post("/executions/{execution_id}/cancel", summary="Cancel a waiting execution; its follow-ups never fire")
def cancel_execution(uow: Uow, actor: CurrentActor, execution_id: str, body: CancelRequest) -> dict[str, Any]:
    return {
        "success": True,
        "execution": operations.cancel_execution(
            uow=uow, actor=actor, execution_id=execution_id, reason=body.reason
        ).to_api(),
    }


class TimelineRequest(CamelBody):
    """The member, in the body: contacts never go in URLs (they would end up in access logs)."""

    contact: Annotated[str, Field(min_length=1, max_length=320, description="a phone number or an e-mail address")]


@router.post("/contacts/timeline", summary="Everything one member sent and received, and every execution, in order")
def contact_timeline(uow: ReadUow, actor: CurrentActor, body: TimelineRequest) -> dict[str, Any]:
    items = operations.contact_timeline(uow=uow, actor=actor, contact=body.contact)
    return {"success": True, "items": [{**i, "at": i["at"].isoformat()} for i in items]}
