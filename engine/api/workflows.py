"""Workflow routes: the spec's create / update / run / list, plus get, delete, duplicate,
versions, rollback, import, export and validate. Each route is one service call."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from engine import domain, services
from engine.api.contract import JSON_VALUE, UPDATE, WORKFLOW, WORKFLOW_LIST, request_body
from engine.api.deps import CurrentActor, ReadUow, Uow
from engine.services.runs import ExecutionOut
from engine.workflow.limits import MAX_PAGE, MAX_VERSION
from engine.workflow.validation import validate

router = APIRouter(prefix="/api/workflows", tags=["workflows"])

SPEC_EXAMPLE = {
    "name": "Workflow Name",
    "description": "Optional description",
    "enabled": True,
    "trigger": {"type": "voice_call", "config": {}},
    "conditions": [],
    "actions": [{"id": "action-1", "type": "send_message", "config": {"message": "Hello!"}, "nextActionId": None}],
}


class CamelBody(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class UpdateRequest(BaseModel):
    """``workflowId`` plus the top-level keys to replace (name, description, enabled, trigger, conditions, actions)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"workflowId": "workflow-uuid", "name": "Updated Name", "enabled": False}]},
    )
    workflowId: Annotated[str, Field(min_length=1, max_length=64)]


class RunRequest(CamelBody):
    workflow_id: Annotated[str, Field(min_length=1, max_length=64)]
    trigger_data: dict[str, Any] = Field(
        default_factory=dict, description="what {{trigger.*}} sees: content, from, channel, ..."
    )
    dry_run: bool = Field(False, description="send nothing, call nothing, write no lead")
    bypass_conditions: bool = Field(False, description="run the actions even when the conditions do not hold")


class RollbackRequest(CamelBody):
    version: Annotated[int, Field(ge=1, le=MAX_VERSION)]


class DuplicateRequest(CamelBody):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


def _ok(**payload: Any) -> dict[str, Any]:
    return {"success": True, **payload}


def run_result(ex: ExecutionOut) -> dict[str, Any]:
    """The spec's ``result`` object, plus status, error, the condition explanation and the steps."""
    return {
        "success": domain.is_success(ex.status),
        "executionId": ex.id,
        "actionsExecuted": ex.actions_executed,
        "results": ex.results,
        "status": ex.status,
        "error": ex.error,
        "explanation": ex.explanation,
        "steps": [s.to_api() for s in ex.steps],
    }


@router.post("/create", status_code=201, summary="Create a workflow (spec)", openapi_extra=request_body(WORKFLOW))
def create_workflow(
    uow: Uow, actor: CurrentActor, definition: Annotated[dict[str, Any], Body(examples=[SPEC_EXAMPLE])]
) -> dict[str, Any]:
    """Validate and store a workflow definition. Every problem comes back at once with its JSON path (422)."""
    return _ok(workflow=services.create_workflow(uow=uow, actor=actor, data=definition).to_api())


@router.post("/update", summary="Update a workflow (spec)", openapi_extra=request_body(UPDATE))
def update_workflow(uow: Uow, actor: CurrentActor, body: UpdateRequest) -> dict[str, Any]:
    """Given top-level keys replace the stored ones; the result is validated as a whole."""
    changes = dict(body.model_extra or {})
    return _ok(
        workflow=services.update_workflow(uow=uow, actor=actor, workflow_id=body.workflowId, changes=changes).to_api()
    )


@router.post("/run", summary="Run a workflow now (spec)")
def run_workflow(uow: Uow, actor: CurrentActor, body: RunRequest) -> dict[str, Any]:
    """Run one workflow with the given trigger data; answers when it finished or parked (e.g. at a wait)."""
    ex = services.run_workflow(
        uow=uow,
        actor=actor,
        workflow_id=body.workflow_id,
        trigger_data=body.trigger_data,
        bypass_conditions=body.bypass_conditions,
        dry_run=body.dry_run,
    )
    return _ok(result=run_result(ex))


@router.get("/list", summary="List workflows (spec)")
def list_workflows(
    uow: ReadUow,
    actor: CurrentActor,
    enabled_only: Annotated[bool, Query(alias="enabledOnly")] = False,
    include_stats: Annotated[bool, Query(alias="includeStats")] = False,
    search: Annotated[str | None, Query(max_length=200, description="part of the name, any case")] = None,
    trigger_type: Annotated[str | None, Query(alias="triggerType", max_length=32)] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=services.MAX_PAGE_SIZE)] = 50,
) -> dict[str, Any]:
    """One page of the tenant's workflows by name; ``stats`` is filled when ``includeStats=true``."""
    result = services.list_workflows(
        uow=uow,
        actor=actor,
        enabled_only=enabled_only,
        include_stats=include_stats,
        search=search,
        trigger_type=trigger_type,
        page=page,
        page_size=page_size,
    )
    return _ok(
        workflows=[w.to_api() for w in result.items],
        stats=result.stats.to_api() if result.stats else None,
        total=result.total,
        page=result.page,
        pageSize=result.page_size,
    )


@router.post(
    "/import", status_code=201, summary="Import workflows (all or nothing)", openapi_extra=request_body(WORKFLOW_LIST)
)
def import_workflows(
    uow: Uow,
    actor: CurrentActor,
    items: Annotated[list[dict[str, Any]] | dict[str, Any], Body(examples=[[SPEC_EXAMPLE]])],
) -> dict[str, Any]:
    """A list of definitions (or one); one invalid item stores none, and problems are prefixed with its index."""
    items = items if isinstance(items, list) else [items]
    return _ok(workflows=[w.to_api() for w in services.import_workflows(uow=uow, actor=actor, items=items)])


@router.post(
    "/validate",
    summary="Check a definition without storing it",
    openapi_extra=request_body(JSON_VALUE, "a workflow definition; any JSON is checked and answered with its problems"),
)
def validate_workflow(actor: CurrentActor, definition: Annotated[Any, Body(examples=[SPEC_EXAMPLE])]) -> dict[str, Any]:
    """Always 200: ``valid`` says whether there are errors; warnings are listed too."""
    problems = validate(definition)
    return _ok(valid=not any(p.severity == "error" for p in problems), problems=[p.to_dict() for p in problems])


@router.get("/{workflow_id}", summary="One workflow")
def get_workflow(uow: ReadUow, actor: CurrentActor, workflow_id: str) -> dict[str, Any]:
    return _ok(workflow=services.get_workflow(uow=uow, actor=actor, workflow_id=workflow_id).to_api())


@router.delete("/{workflow_id}", summary="Delete a workflow")
def delete_workflow(uow: Uow, actor: CurrentActor, workflow_id: str) -> dict[str, Any]:
    """Pending waits and follow-ups are cancelled; past executions stay."""
    services.delete_workflow(uow=uow, actor=actor, workflow_id=workflow_id)
    return _ok(deleted=workflow_id)


@router.post("/{workflow_id}/duplicate", status_code=201, summary="Copy a workflow (disabled)")
def duplicate_workflow(
    uow: Uow, actor: CurrentActor, workflow_id: str, body: Annotated[DuplicateRequest | None, Body()] = None
) -> dict[str, Any]:
    name = body.name if body else None
    return _ok(workflow=services.duplicate_workflow(uow=uow, actor=actor, workflow_id=workflow_id, name=name).to_api())


@router.get("/{workflow_id}/versions", summary="Version history, newest first")
def list_versions(uow: ReadUow, actor: CurrentActor, workflow_id: str) -> dict[str, Any]:
    return _ok(versions=[v.to_api() for v in services.list_versions(uow=uow, actor=actor, workflow_id=workflow_id)])


@router.post("/{workflow_id}/rollback", summary="Make an old version current (as a new version)")
def rollback_workflow(uow: Uow, actor: CurrentActor, workflow_id: str, body: RollbackRequest) -> dict[str, Any]:
    return _ok(
        workflow=services.rollback_workflow(
            uow=uow, actor=actor, workflow_id=workflow_id, version=body.version
        ).to_api()
    )


@router.get("/{workflow_id}/export", summary="The importable JSON of one workflow")
def export_workflow(uow: ReadUow, actor: CurrentActor, workflow_id: str) -> dict[str, Any]:
    """The bare definition (what ``/import`` and ``python -m engine import`` take), not wrapped."""
    return services.export_workflows(uow=uow, actor=actor, workflow_id=workflow_id)[0]
