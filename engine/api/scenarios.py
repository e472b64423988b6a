"""Routes for test-console scenarios: list them with their last result, run them all."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from engine.api.deps import CurrentActor, ReadUow, Uow
from engine.services import scenarios

router = APIRouter(prefix="/api", tags=["scenarios"])


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ErrorBody(_Camel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(_Camel):
    success: bool = False
    error: ErrorBody


class ScenarioItem(_Camel):
    id: str
    name: str
    channel: str
    status: str = Field(description="pass, fail or never run")
    steps: list[dict[str, Any]]
    expectations: list[dict[str, Any]]
    last_result: dict[str, Any]
    last_run_at: datetime | None


class ScenarioList(_Camel):
    success: bool = True
    scenarios: list[ScenarioItem]


class ScenarioRunItem(_Camel):
    scenario_id: str
    name: str
    passed: bool
    failures: list[str]
    checked: int
    ran_at: datetime
    draft: bool


class ScenarioRunResponse(_Camel):
    success: bool = True
    passed: int
    failed: int
    results: list[ScenarioRunItem]


class RunRequest(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    drafts: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="Unsaved workflow definitions by workflow id to run against; results are then not stored.",
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing, unknown or revoked API key"},
    403: {"model": ErrorResponse, "description": "the key's role may not do this (analysts only read)"},
}


@router.get(
    "/scenarios",
    summary="The studio's test-console scenarios with their last result",
    response_model=ScenarioList,
    response_model_by_alias=True,
    responses=ERRORS,
)
def list_scenarios(uow: ReadUow, actor: CurrentActor) -> Any:
    items = [
        ScenarioItem(
            id=s.id,
            name=s.name,
            channel=s.channel,
            status=s.status,
            steps=s.steps,
            expectations=s.expectations,
            last_result=s.last_result,
            last_run_at=s.last_run_at,
        )
        for s in scenarios.list_scenarios(uow=uow, actor=actor)
    ]
    return ScenarioList(scenarios=items)


@router.post(
    "/scenarios/run",
    summary="Replay every scenario in test mode and compare with its expectations",
    response_model=ScenarioRunResponse,
    response_model_by_alias=True,
    responses={
        **ERRORS,
        404: {"model": ErrorResponse, "description": "a draft's workflow is not this studio's"},
        422: {"model": ErrorResponse, "description": "a draft is not a valid workflow"},
    },
)
def run_scenarios(uow: Uow, actor: CurrentActor, body: Annotated[RunRequest | None, Body()] = None) -> Any:
    """Nothing is delivered or counted (test mode). With ``drafts`` the runs use those unsaved
    definitions and the stored last results are left alone."""
    results = scenarios.run_all(uow=uow, actor=actor, drafts=body.drafts if body else None)
    failed = sum(not r.passed for r in results)
    return ScenarioRunResponse(
        passed=len(results) - failed,
        failed=failed,
        results=[ScenarioRunItem.model_validate(r.model_dump()) for r in results],
    )
