"""What the runner passes around: the run being driven, the event as workflows see it, and the
small pure helpers of the state machine (no database here)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from engine.ai.language import detect_language
from engine.errors import EngineError, InvalidInput, NotFound, PermanentError, RetryableError, TemplateError
from engine.store.db import json_dumps
from engine.store.runs import tenant_row
from engine.tenant_settings import BusinessHours, settings_of
from engine.workflow.definitions import MESSAGE_TRIGGER_CHANNELS, Event, WorkflowDefinition

#: create_lead -> lead_created -> ... stops here, with the reason recorded.
MAX_CHAIN_DEPTH = 5
#: Retries for a retryable failure when the action has no ``retry`` policy of its own.
DEFAULT_RETRY_ATTEMPTS = 3
DEFAULT_BACKOFF = 30.0
MAX_BACKOFF = 3600.0
INTENT_MARKERS = ('"intent_match"', '"confidence_threshold"', '"intent":')


class LeaseLost(EngineError):
    """Another worker took over this execution; this one stops without writing."""


@dataclass
class IngestResult:
    event_id: str
    execution_ids: list[str]
    duplicate: bool = False
    #: The event's intent as stored (given, or detected because a matching workflow asked for it).
    intent: str | None = None
    intent_confidence: float | None = None


@dataclass
class Run:
    """An execution being driven (what the loop needs, loaded once)."""

    id: str
    tenant: dict[str, Any]
    workflow_id: str | None
    definition: WorkflowDefinition
    context: dict[str, Any]
    current: str | None
    token: str
    mode: str
    depth: int
    actions_executed: int = 0
    failed_steps: list[str] = field(default_factory=list)
    emitted: list[dict[str, Any]] = field(default_factory=list)
    #: The status its local steps stopped in (waiting, succeeded, ...); None: it goes on.
    stopped: str | None = None
    #: A test-console run: messages stay in the outbox, counters and caps are untouched,
    #: webhooks and remote AI are simulated unless ``real_calls``.
    test: bool = False
    real_calls: bool = False
    #: When the execution started (the hour its Insights rollups are counted in).
    started_at: datetime | None = None

    @property
    def dry_run(self) -> bool:
        return self.mode == "dry_run"


@dataclass
class Candidate:
    """A workflow an event may start (from the store, or a console draft)."""

    id: str
    name: str
    version: int
    definition: dict
    trigger_type: str

    @cached_property
    def definition_text(self) -> str:
        return json_dumps(self.definition)


_definitions: dict[tuple[str | None, int], WorkflowDefinition] = {}


def resumed_run(ex: Mapping[str, Any], tenant: dict[str, Any], token: str) -> Run:
    """The :class:`Run` that continues a stored execution (a row's columns by name) under a new
    lease ``token``. A test-console run stays one."""
    context = dict(ex["context"] or {})
    return Run(
        ex["id"],
        tenant,
        ex["workflow_id"],
        parse_definition(ex["workflow_id"], ex["workflow_version"], ex["definition"]),
        context,
        ex["current_action_id"],
        token,
        ex["mode"],
        ex["depth"],
        ex["actions_executed"],
        list(context.get("failedSteps", [])),
        test=bool(ex["is_test"]),
        real_calls=bool(context.get("testRealCalls")),
        started_at=ex["started_at"],
    )


def parse_definition(workflow_id: str | None, version: int, raw: dict) -> WorkflowDefinition:
    """Parsed definition, cached per (workflow, version): a version's definition never changes."""
    key = (workflow_id, version)
    found = _definitions.get(key)
    if found is None:
        if len(_definitions) > 2048:
            _definitions.clear()
        found = _definitions[key] = WorkflowDefinition.model_validate(raw)
    return found


def trigger_data(event: dict[str, Any]) -> dict[str, Any]:
    """What ``{{trigger.*}}`` and conditions see: the event's fields plus its free data."""
    data = dict(event["data"] or {})
    data.update(
        {
            "type": event["trigger_type"],
            "channel": event["channel"],
            "content": event["content"],
            "from": event["sender"],
            "intent": event["intent"],
            "intentConfidence": event["intent_confidence"],
            "customFields": event["custom_fields"] or {},
            "receivedAt": event["received_at"].isoformat(),
            "eventId": event["id"],
        }
    )
    data.setdefault("leadId", None)
    data.setdefault("bookingId", None)
    if "language" not in data:  # the member's language (de/en) for replies, None = the studio's
        data["language"] = detect_language(event["content"]) if event["content"] else None
    return data


def tenant_context(tenant: Any) -> dict[str, Any]:
    """The tenant as the runner and executors see it (a Tenant row or a mapping of its columns)."""
    get = tenant.__getitem__ if isinstance(tenant, Mapping) else lambda k: getattr(tenant, k)
    return {
        "id": get("id"),
        "slug": get("slug"),
        "name": get("name"),
        "timezone": get("timezone"),
        "settings": settings_of(get("settings")),
        "tz": ZoneInfo(get("timezone")),
    }


_PRIVATE_TENANT_KEYS = ("settings", "tz", "public")


def load_tenant(target: Any, tenant_id: str) -> dict[str, Any]:
    """The tenant as executors see it (see :func:`tenant_context`); NotFound if there is none."""
    row = tenant_row(target, tenant_id)
    if row is None:
        raise NotFound("tenant not found")
    return tenant_context(row)


def template_context(run_context: dict[str, Any], tenant: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What templates see: the run's context, ``tenant`` without its settings, and ``now``."""
    public = tenant.get("public")
    if public is None:
        public = tenant["public"] = {k: v for k, v in tenant.items() if k not in _PRIVATE_TENANT_KEYS}
    return {**run_context, "tenant": public, "now": now.astimezone(tenant["tz"]).isoformat(timespec="seconds")}


def builtin_classifier() -> Callable[[str], Any] | None:
    """The built-in offline intent classifier (None if the AI package is unavailable)."""
    try:
        from engine.ai.intent import classify
    except ImportError:  # pragma: no cover
        return None
    return classify


def parse_event(event: dict[str, Any] | Event) -> Event:
    if isinstance(event, Event):
        return event.model_copy()
    if not isinstance(event, dict):
        raise InvalidInput("an event must be a JSON object", field="event")
    try:
        return Event.model_validate(event)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = ".".join(str(p) for p in err["loc"]) or "event"
        raise InvalidInput(err["msg"], field=path) from exc


_EVENT_KEYS = {
    "channel",
    "content",
    "from",
    "intent",
    "intentConfidence",
    "leadId",
    "bookingId",
    "customFields",
    "receivedAt",
    "idempotencyKey",
}


def event_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Split manual trigger data into event fields and free data (``{{trigger.anything}}``)."""
    fields = {k: v for k, v in data.items() if k in _EVENT_KEYS}
    extra = {k: v for k, v in data.items() if k not in _EVENT_KEYS and k not in ("triggerType", "type")}
    if extra:
        fields["data"] = {**extra, **(data.get("data") or {})}
    return fields


def with_drafts(ev: Event, found: list[Candidate], drafts: dict[str, dict[str, Any]]) -> list[Candidate]:
    """The candidates with draft definitions in place of the stored ones (a draft may change
    the trigger type or be disabled). The caller checked that the drafts' workflows are the tenant's."""
    trigger_type = str(ev.trigger_type)
    wanted = {trigger_type} | ({"intent_detected"} if ev.trigger_type in MESSAGE_TRIGGER_CHANNELS else set())
    out = [c for c in found if c.id not in drafts]
    for workflow_id, definition in drafts.items():
        draft_type = (definition.get("trigger") or {}).get("type")
        if definition.get("enabled", True) is not False and draft_type in wanted:
            # A version of its own (negative, from the content) keeps the parse cache apart from saved versions.
            version = -(zlib.crc32(json_dumps(definition).encode()) % 2_000_000_000) - 1
            out.append(Candidate(workflow_id, str(definition.get("name") or ""), version, definition, draft_type))
    return out


def trigger_matches(definition: WorkflowDefinition, event: dict[str, Any]) -> bool:
    config = definition.trigger.config
    fields = config.__dict__  # declared fields (a missing attribute would raise inside pydantic)
    channel = fields.get("channel")
    if channel and event["channel"] and channel != event["channel"]:
        return False
    intent = fields.get("intent")
    return not (intent and event["intent"] != intent)


def run_context(trigger: dict[str, Any], real_calls: bool = False) -> dict[str, Any]:
    """A new execution's context: its trigger, no results yet, the lead as far as the trigger knows it."""
    context: dict[str, Any] = {"trigger": trigger, "results": {}, "lead": lead_stub(trigger)}
    if real_calls:
        context["testRealCalls"] = True  # a resumed test run keeps calling for real
    return context


def hours(tenant: dict[str, Any]) -> BusinessHours | None:
    """The studio's business hours (for ``outside_business_hours`` conditions)."""
    return settings_of(tenant.get("settings")).business_hours


def lead_stub(trigger: dict) -> dict:
    """Templates may use ``{{lead.*}}``; before a lead is loaded it holds what the trigger knows."""
    return {
        "id": trigger.get("leadId"),
        "name": trigger.get("name") or trigger.get("from"),
        "phone": None,
        "email": None,
        "customFields": trigger.get("customFields") or {},
    }


def next_in_line(definition: WorkflowDefinition, action) -> str | None:
    if action.has_explicit_next:
        return action.next_action_id
    ids = [a.id for a in definition.actions]
    pos = ids.index(action.id)
    return ids[pos + 1] if pos + 1 < len(ids) else None


def retry_delay(action, exc: Exception, attempt: int) -> float | None:
    """Seconds until the next attempt, or None when the failure is final."""
    if isinstance(exc, (PermanentError, TemplateError, InvalidInput)):
        return None
    policy = action.retry
    if policy is None and not isinstance(exc, RetryableError):
        return None
    max_attempts = policy.max_attempts if policy else DEFAULT_RETRY_ATTEMPTS
    if attempt >= max_attempts:
        return None
    base, cap = (policy.backoff, policy.max_backoff) if policy else (DEFAULT_BACKOFF, MAX_BACKOFF)
    from engine.outbound.retry import backoff_delay

    return backoff_delay(attempt, base=base, cap=cap, retry_after=getattr(exc, "retry_after", None))


def jsonable(value: Any) -> Any:
    """Make step input/output safe for a JSON column (datetimes and odd types become text)."""
    try:
        json_dumps(value)
        return value
    except TypeError:
        return json.loads(json.dumps(value, default=str))
