"""Use cases shared by the UI, the REST API and the CLI. Every function takes an Actor.

A workflow of another tenant is "not found", never "forbidden": ids don't leak. Lists and
stats are SQL pages and aggregates over indexed columns, so they stay fast with tens of
thousands of workflows in a tenant.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlmodel import Session, col, func, select

from engine import domain
from engine.errors import InvalidInput, NotFound, ValidationFailed
from engine.security.auth import ADMIN, EDIT, READ, Actor
from engine.store import rollups
from engine.store.models import (
    DueStatus,
    DueWork,
    Tenant,
    Workflow,
    WorkflowVersion,
)
from engine.tenant_settings import patched
from engine.uow import UnitOfWork
from engine.workflow.limits import MAX_PAGE, MAX_VERSION
from engine.workflow.schedule import next_fire_time
from engine.workflow.validation import Problem, parse_workflow

__all__ = [
    "WorkflowOut",
    "WorkflowStats",
    "WorkflowPage",
    "VersionOut",
    "TenantOut",
    "definition_of",
    "create_tenant",
    "list_tenants",
    "get_tenant",
    "find_tenant",
    "update_tenant_settings",
    "create_workflow",
    "update_workflow",
    "set_enabled",
    "delete_workflow",
    "duplicate_workflow",
    "get_workflow",
    "list_workflows",
    "workflow_stats",
    "list_versions",
    "rollback_workflow",
    "export_workflows",
    "import_workflows",
    "UPDATABLE",
    "MAX_PAGE_SIZE",
]

UPDATABLE = ("name", "description", "enabled", "trigger", "conditions", "actions")
MAX_PAGE_SIZE = 500


class Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class WorkflowOut(Out):
    """A stored workflow: the definition plus id, tenant, timestamps and run counters."""

    id: str
    tenant_id: str
    name: str
    description: str | None = None
    enabled: bool
    trigger: dict
    conditions: list
    actions: list
    version: int
    created_at: datetime
    updated_at: datetime
    run_count: int = 0
    success_count: int = 0
    error_count: int = 0
    skipped_count: int = 0
    in_progress_count: int = 0
    last_run_at: datetime | None = None
    next_fire_at: datetime | None = None
    warnings: list[dict] = Field(default_factory=list)

    @property
    def definition(self) -> dict[str, Any]:
        """The importable JSON (what export writes)."""
        return definition_of(self.model_dump(mode="json", by_alias=True))

    @property
    def success_rate(self) -> float | None:
        return domain.success_rate(self.success_count, self.error_count)


class WorkflowStats(Out):
    total_workflows: int
    enabled_workflows: int
    total_executions: int
    success_rate: float
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    in_progress: int = 0
    cancelled: int = 0


class WorkflowPage(Out):
    items: list[WorkflowOut]
    total: int
    page: int
    page_size: int
    stats: WorkflowStats | None = None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


class VersionOut(Out):
    version: int
    created_at: datetime
    created_by: str | None
    note: str | None
    definition: dict


class TenantOut(Out):
    id: str
    slug: str
    name: str
    timezone: str
    settings: dict


def definition_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """Only the keys of the workflow format, in the spec's order."""
    keys = ("name", "description", "enabled", "trigger", "conditions", "actions")
    return {k: data[k] for k in keys if k in data and not (k == "description" and data[k] is None)}


def _to_out(row: Workflow, warnings: Sequence[Problem] = ()) -> WorkflowOut:
    d = row.definition
    return WorkflowOut(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        description=row.description,
        enabled=row.enabled,
        trigger=d["trigger"],
        conditions=d.get("conditions", []),
        actions=d["actions"],
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        run_count=row.run_count,
        success_count=row.success_count,
        error_count=row.error_count,
        last_run_at=row.last_run_at,
        next_fire_at=row.next_fire_at,
        warnings=[p.to_dict() for p in warnings],
    )


# --------------------------------------------------------------------------- tenants


def create_tenant(
    *, uow: UnitOfWork, slug: str, name: str, timezone: str = "Europe/Berlin", settings: dict | None = None
) -> TenantOut:
    """A new studio. (Not tenant-scoped: only the CLI and set-up call it.)"""
    _check_tenant_fields(slug, name)
    _check_timezone(timezone)
    s = uow.session
    if s.exec(select(Tenant).where(Tenant.slug == slug)).first():
        raise InvalidInput(f"a tenant with slug {slug!r} already exists", field="slug")
    tenant = Tenant(slug=slug, name=name, timezone=timezone, settings=settings or {})
    s.add(tenant)
    s.flush()
    # Every studio gets its own webhook signing secret (receivers verify X-Studio-Signature),
    # encrypted at rest like every other secret; owners see a new one once, when they rotate it.
    s.add(_signing_secret_row(tenant.id))
    return TenantOut.model_validate(tenant)


def _signing_secret_row(tenant_id: str) -> Any:
    from engine.security.secrets import encrypt
    from engine.services.studio_settings import SIGNING
    from engine.store.models import TenantSecret

    return TenantSecret(tenant_id=tenant_id, name=SIGNING, ciphertext=encrypt("whsec_" + secrets.token_hex(24)))


_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _check_tenant_fields(slug: str, name: str) -> None:
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise InvalidInput(
            f"use 1-63 lower-case letters, digits and dashes, starting with a letter or digit (got {slug!r})",
            field="slug",
        )
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or "\x00" in name:
        raise InvalidInput("a name of 1-200 characters is required", field="name")


def list_tenants(*, uow: UnitOfWork) -> list[TenantOut]:
    """Every studio, by slug. (Not tenant-scoped: only the CLI and set-up call it.)"""
    s = uow.session
    return [TenantOut.model_validate(t) for t in s.exec(select(Tenant).order_by(Tenant.slug)).all()]


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            f"unknown timezone {name!r} (use an IANA name such as Europe/Berlin)", field="timezone"
        ) from exc


def get_tenant(*, uow: UnitOfWork, actor: Actor) -> TenantOut:
    s = uow.session
    tenant = s.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return TenantOut.model_validate(tenant)


def find_tenant(*, uow: UnitOfWork, slug_or_id: str) -> TenantOut:
    """Look a tenant up by slug or id (CLI)."""
    s = uow.session
    tenant = s.exec(select(Tenant).where((Tenant.slug == slug_or_id) | (Tenant.id == slug_or_id))).first()
    if tenant is None:
        raise NotFound(f"tenant {slug_or_id!r} not found")
    return TenantOut.model_validate(tenant)


def update_tenant_settings(
    *, uow: UnitOfWork, actor: Actor, timezone: str | None = None, name: str | None = None, settings: dict | None = None
) -> TenantOut:
    actor.require(ADMIN)
    if timezone:
        _check_timezone(timezone)
    s = uow.session
    tenant = s.get(Tenant, actor.tenant_id, with_for_update=settings is not None, populate_existing=True)
    if tenant is None:
        raise NotFound("tenant not found")
    tenant.timezone = timezone or tenant.timezone
    tenant.name = name or tenant.name
    if settings is not None:  # only these keys change, checked by the typed model (engine/tenant_settings.py)
        tenant.settings = patched(tenant.settings, settings)[0]
    s.add(tenant)
    if timezone:
        _reschedule_cron(uow, actor)
    return TenantOut.model_validate(tenant)


# --------------------------------------------------------------------------- workflows


def _load(s: Session, actor: Actor, workflow_id: str, *, lock: bool = False) -> Workflow:
    stmt = select(Workflow).where(Workflow.id == workflow_id, Workflow.tenant_id == actor.tenant_id)
    if lock:
        stmt = stmt.with_for_update()
    row = s.exec(stmt).first()
    if row is None:
        raise NotFound(f"workflow {workflow_id} not found")
    return row


def _tenant_timezone(s: Session, tenant_id: str) -> str:
    return s.exec(select(Tenant.timezone).where(Tenant.id == tenant_id)).one()


def _apply(s: Session, row: Workflow, definition: dict[str, Any], now: datetime) -> None:
    """Copy a validated definition's indexed fields onto the row and plan its cron."""
    row.name = definition["name"]
    row.description = definition.get("description")
    row.enabled = definition.get("enabled", True)
    row.trigger_type = definition["trigger"]["type"]
    row.definition = definition
    row.next_fire_at = None
    if row.trigger_type == "time_based" and row.enabled:
        tz = _tenant_timezone(s, row.tenant_id)
        row.next_fire_at = next_fire_time(definition["trigger"]["config"]["schedule"], tz, now)


def _record_version(s: Session, row: Workflow, actor: Actor, note: str | None = None) -> None:
    s.add(
        WorkflowVersion(
            tenant_id=row.tenant_id,
            workflow_id=row.id,
            version=row.version,
            definition=copy.deepcopy(row.definition),
            created_by=actor.user_id,
            note=note,
        )
    )


def _validated(data: Any) -> tuple[dict[str, Any], list[Problem]]:
    definition, warnings = parse_workflow(data)
    return definition.to_json(), [p for p in warnings if p.severity == "warning"]


def create_workflow(*, uow: UnitOfWork, actor: Actor, data: dict[str, Any], note: str | None = None) -> WorkflowOut:
    """Validate and store a new workflow (version 1). Raises ValidationFailed with every problem."""
    actor.require(EDIT)
    definition, warnings = _validated(data)
    s = uow.session
    row = Workflow(tenant_id=actor.tenant_id, created_by=actor.user_id, name=definition["name"], trigger_type="")
    _apply(s, row, definition, uow.now())
    s.add(row)
    s.flush()
    _record_version(s, row, actor, note or "created")
    return _to_out(row, warnings)


def update_workflow(
    *, uow: UnitOfWork, actor: Actor, workflow_id: str, changes: dict[str, Any], note: str | None = None
) -> WorkflowOut:
    """Partial update as the spec's ``/update``: given top-level keys replace the stored ones."""
    actor.require(EDIT)
    unknown = sorted(set(changes) - set(UPDATABLE) - {"workflowId", "id"})
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(unknown)}; updatable: {', '.join(UPDATABLE)}", field=unknown[0]
        )
    s = uow.session
    row = _load(s, actor, workflow_id, lock=True)
    merged = {**row.definition, **{k: v for k, v in changes.items() if k in UPDATABLE}}
    definition, warnings = _validated(merged)
    if definition == row.definition:
        return _to_out(row, warnings)
    _apply(s, row, definition, uow.now())
    row.version += 1
    row.updated_at = uow.now()
    s.add(row)
    _record_version(s, row, actor, note)
    return _to_out(row, warnings)


def set_enabled(*, uow: UnitOfWork, actor: Actor, workflow_id: str, enabled: bool) -> WorkflowOut:
    return update_workflow(
        uow=uow,
        actor=actor,
        workflow_id=workflow_id,
        changes={"enabled": enabled},
        note="enabled" if enabled else "disabled",
    )


def delete_workflow(*, uow: UnitOfWork, actor: Actor, workflow_id: str) -> None:
    """Delete a workflow and its pending due work. Past executions stay (with its name)."""
    actor.require(EDIT)
    s = uow.session
    row = _load(s, actor, workflow_id, lock=True)
    s.exec(
        sa.update(DueWork)
        .where(col(DueWork.workflow_id) == row.id, col(DueWork.status) == DueStatus.PENDING)
        .values(status=DueStatus.CANCELLED)
    )
    s.delete(row)
    s.flush()  # its executions' workflow_id becomes NULL (ON DELETE SET NULL): so do their rollups
    rollups.forget_workflow(s.connection(), actor.tenant_id, row.id)


def duplicate_workflow(*, uow: UnitOfWork, actor: Actor, workflow_id: str, name: str | None = None) -> WorkflowOut:
    """A copy, disabled, named "<name> (copy)" unless a name is given."""
    original = get_workflow(uow=uow, actor=actor, workflow_id=workflow_id)
    definition = original.definition
    definition["name"] = name or f"{original.name} (copy)"[:200]
    definition["enabled"] = False
    return create_workflow(uow=uow, actor=actor, data=definition, note=f"duplicated from {workflow_id}")


def get_workflow(*, uow: UnitOfWork, actor: Actor, workflow_id: str) -> WorkflowOut:
    actor.require(READ)
    s = uow.session
    out = _to_out(_load(s, actor, workflow_id))
    _with_counts(s, actor, [out])
    return out


def list_workflows(
    *,
    uow: UnitOfWork,
    actor: Actor,
    enabled_only: bool = False,
    include_stats: bool = False,
    search: str | None = None,
    trigger_type: str | None = None,
    enabled: bool | None = None,
    page: int = 1,
    page_size: int = 50,
    order: str = "name",
) -> WorkflowPage:
    """One page of the tenant's workflows (by name, or most recently updated first)."""
    actor.require(READ)
    if not 1 <= page <= MAX_PAGE or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"page must be between 1 and {MAX_PAGE:,} and page size between 1 and {MAX_PAGE_SIZE}", field="page"
        )
    where = [col(Workflow.tenant_id) == actor.tenant_id]
    if enabled_only or enabled is True:
        where.append(col(Workflow.enabled) == sa.true())
    elif enabled is False:
        where.append(col(Workflow.enabled) == sa.false())
    if trigger_type:
        where.append(col(Workflow.trigger_type) == trigger_type)
    if search:
        search = search.replace("\x00", "")  # PostgreSQL cannot compare text with NUL
        pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(func.lower(col(Workflow.name)).like(pattern, escape="\\"))
    ordering = (
        (col(Workflow.updated_at).desc(), Workflow.id)
        if order == "updated"
        else (func.lower(Workflow.name), Workflow.id)
    )
    s = uow.session
    total = s.exec(select(func.count()).select_from(Workflow).where(*where)).one()
    rows = s.exec(
        select(Workflow).where(*where).order_by(*ordering).offset((page - 1) * page_size).limit(page_size)
    ).all()
    items = [_to_out(r) for r in rows]
    _with_counts(s, actor, items)
    stats = workflow_stats(uow=uow, actor=actor) if include_stats else None
    return WorkflowPage(items=items, total=total, page=page, page_size=page_size, stats=stats)


def workflow_stats(*, uow: UnitOfWork, actor: Actor) -> WorkflowStats:
    """The spec's stats, counted as ``engine.domain`` defines (skipped and waiting runs are runs;
    success rate = succeeded / (succeeded + failed); test and dry runs never count). SQL only."""
    actor.require(READ)
    wf_q = select(
        func.count(), func.coalesce(func.sum(sa.case((col(Workflow.enabled) == sa.true(), 1), else_=0)), 0)
    ).where(Workflow.tenant_id == actor.tenant_id)
    s = uow.session
    total, enabled = s.exec(wf_q).one()
    counts = domain.all_time_counts(s, actor.tenant_id).get(None) or dict.fromkeys(domain.COUNT_KEYS, 0)
    rate = domain.success_rate(counts["succeeded"], counts["failed"])
    return WorkflowStats(
        total_workflows=total,
        enabled_workflows=enabled,
        total_executions=counts["runs"],
        success_rate=rate or 0.0,
        succeeded=counts["succeeded"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        in_progress=counts["in_progress"],
        cancelled=counts["cancelled"],
    )


def _with_counts(s: Session, actor: Actor, items: list[WorkflowOut]) -> None:
    """Fill the cards' counters, counted as ``engine.domain`` defines (live rows plus pruned rollups)."""
    if not items:
        return
    found = domain.all_time_counts(s, actor.tenant_id, [w.id for w in items])
    for item in items:
        c = found.get(item.id)
        if c:
            item.run_count, item.success_count, item.error_count = c["runs"], c["succeeded"], c["failed"]
            item.skipped_count, item.in_progress_count = c["skipped"], c["in_progress"]
        else:
            item.run_count = item.success_count = item.error_count = item.skipped_count = item.in_progress_count = 0


# --------------------------------------------------------------------------- versions


def list_versions(*, uow: UnitOfWork, actor: Actor, workflow_id: str) -> list[VersionOut]:
    actor.require(READ)
    s = uow.session
    _load(s, actor, workflow_id)
    rows = s.exec(
        select(WorkflowVersion)
        .where(WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.tenant_id == actor.tenant_id)
        .order_by(col(WorkflowVersion.version).desc())
    ).all()
    return [VersionOut.model_validate(r) for r in rows]


def rollback_workflow(*, uow: UnitOfWork, actor: Actor, workflow_id: str, version: int) -> WorkflowOut:
    """Make an old version current again (as a new version, so nothing is lost)."""
    actor.require(EDIT)
    if not 1 <= version <= MAX_VERSION:
        raise NotFound(f"version {version} of workflow {workflow_id} not found")
    s = uow.session
    _load(s, actor, workflow_id)
    old = s.exec(
        select(WorkflowVersion).where(
            WorkflowVersion.workflow_id == workflow_id,
            WorkflowVersion.tenant_id == actor.tenant_id,
            WorkflowVersion.version == version,
        )
    ).first()
    if old is None:
        raise NotFound(f"version {version} of workflow {workflow_id} not found")
    definition = copy.deepcopy(old.definition)
    return update_workflow(
        uow=uow, actor=actor, workflow_id=workflow_id, changes=definition, note=f"rolled back to version {version}"
    )


# --------------------------------------------------------------------------- import / export


def export_workflows(*, uow: UnitOfWork, actor: Actor, workflow_id: str | None = None) -> list[dict[str, Any]]:
    """Definitions as importable JSON (one workflow, or every workflow of the tenant)."""
    actor.require(READ)
    if workflow_id:
        return [get_workflow(uow=uow, actor=actor, workflow_id=workflow_id).definition]
    s = uow.session
    rows = s.exec(
        select(Workflow.definition).where(Workflow.tenant_id == actor.tenant_id).order_by(func.lower(Workflow.name))
    ).all()
    return [definition_of(d) for d in rows]


def import_workflows(*, uow: UnitOfWork, actor: Actor, items: list[Any]) -> list[WorkflowOut]:
    """Import several definitions, all or nothing: one invalid item stores none."""
    actor.require(EDIT)
    if not isinstance(items, list) or not items:
        raise InvalidInput("expected a workflow object or a non-empty list of them", field="workflows")
    problems: list[Problem] = []
    parsed = []
    for i, item in enumerate(items):
        try:
            parsed.append(_validated(item))
        except ValidationFailed as exc:
            problems += [
                Problem(f"[{i}].{p.path}" if p.path else f"[{i}]", p.message, p.severity) for p in exc.problems
            ]
    if any(p.severity == "error" for p in problems):
        raise ValidationFailed(problems)
    out = []
    s = uow.session
    for definition, warnings in parsed:
        row = Workflow(tenant_id=actor.tenant_id, created_by=actor.user_id, name=definition["name"], trigger_type="")
        _apply(s, row, definition, uow.now())
        s.add(row)
        s.flush()
        _record_version(s, row, actor, "imported")
        out.append((row, warnings))
    return [_to_out(r, w) for r, w in out]


def _reschedule_cron(uow: UnitOfWork, actor: Actor) -> None:
    """After a timezone change, recompute the next fire time of every time_based workflow."""
    s = uow.session
    rows = s.exec(
        select(Workflow).where(
            Workflow.tenant_id == actor.tenant_id, Workflow.trigger_type == "time_based", Workflow.enabled == sa.true()
        )
    ).all()
    for row in rows:
        _apply(s, row, row.definition, uow.now())
        s.add(row)
