"""Tenant B never sees, changes or learns about tenant A's workflows."""

from __future__ import annotations

import pytest

from engine import services
from engine.errors import NotFound
from engine.uow import unit_of_work
from tests.uow import in_uow


@pytest.fixture
def a_workflow(db, actor, spec_examples):
    """Tenant A's stored workflow (with two versions and some runs)."""
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=spec_examples[1])
    with unit_of_work(db) as uow:
        services.update_workflow(uow=uow, actor=actor, workflow_id=wf.id, changes={"name": "A's secret CRM hook"})
    with unit_of_work(db, read_only=True) as uow:
        return services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id)


OPERATIONS = {
    "get": lambda db, b, wid: in_uow(db, services.get_workflow, actor=b, workflow_id=wid),
    "update": lambda db, b, wid: in_uow(
        db, services.update_workflow, actor=b, workflow_id=wid, changes={"name": "hijacked"}
    ),
    "disable": lambda db, b, wid: in_uow(db, services.set_enabled, actor=b, workflow_id=wid, enabled=False),
    "delete": lambda db, b, wid: in_uow(db, services.delete_workflow, actor=b, workflow_id=wid),
    "duplicate": lambda db, b, wid: in_uow(db, services.duplicate_workflow, actor=b, workflow_id=wid),
    "versions": lambda db, b, wid: in_uow(db, services.list_versions, actor=b, workflow_id=wid),
    "rollback": lambda db, b, wid: in_uow(db, services.rollback_workflow, actor=b, workflow_id=wid, version=1),
    "export": lambda db, b, wid: in_uow(db, services.export_workflows, actor=b, workflow_id=wid),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_another_tenants_workflow_is_not_found_and_left_untouched(db, actor, other_actor, a_workflow, operation):
    with pytest.raises(NotFound) as exc:
        OPERATIONS[operation](db, other_actor, a_workflow.id)
    # The same answer as for an id that never existed: nothing about A leaks.
    with pytest.raises(NotFound) as unknown:
        OPERATIONS[operation](db, other_actor, "f" * 32)
    assert exc.value.message == unknown.value.message.replace("f" * 32, a_workflow.id)
    assert "A's" not in exc.value.message and actor.tenant_id not in exc.value.message
    with unit_of_work(db, read_only=True) as uow:
        after = services.get_workflow(uow=uow, actor=actor, workflow_id=a_workflow.id)
    assert (after.name, after.enabled, after.version) == ("A's secret CRM hook", True, 2)
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=other_actor).total == 0


def test_lists_and_stats_only_count_the_own_tenant(db, actor, other_actor, a_workflow, spec_examples):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=other_actor, data=spec_examples[2])
    with unit_of_work(db, read_only=True) as uow:
        b_page = services.list_workflows(uow=uow, actor=other_actor, include_stats=True)
    assert [w.name for w in b_page.items] == [spec_examples[2]["name"]]
    assert b_page.total == 1 and b_page.stats.total_workflows == 1
    assert all(w.tenant_id == other_actor.tenant_id for w in b_page.items)
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=other_actor, enabled_only=True).total == 1
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=other_actor, search="secret").total == 0
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=other_actor, trigger_type="lead_created").total == 0
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=other_actor, page=2, page_size=1).items == []


def test_stats_ignore_the_other_tenants_counters(db, actor, other_actor, a_workflow):
    from sqlmodel import Session

    from engine.store.models import Execution

    with Session(db) as s:
        s.add_all(
            Execution(
                tenant_id=actor.tenant_id,
                workflow_id=a_workflow.id,
                workflow_name=a_workflow.name,
                status="succeeded" if i < 90 else "failed",
            )
            for i in range(100)
        )
        s.commit()
    with unit_of_work(db, read_only=True) as uow:
        other = services.workflow_stats(uow=uow, actor=other_actor).to_api()
    assert {k: other[k] for k in ("totalWorkflows", "enabledWorkflows", "totalExecutions", "successRate")} == {
        "totalWorkflows": 0,
        "enabledWorkflows": 0,
        "totalExecutions": 0,
        "successRate": 0.0,
    }
    with unit_of_work(db, read_only=True) as uow:
        assert services.workflow_stats(uow=uow, actor=actor).total_executions == 100


def test_export_of_all_workflows_is_only_the_own_tenants(db, actor, other_actor, a_workflow, spec_examples):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=other_actor, data=spec_examples[3])
    with unit_of_work(db, read_only=True) as uow:
        assert services.export_workflows(uow=uow, actor=other_actor) == [spec_examples[3]]
    with unit_of_work(db, read_only=True) as uow:
        assert [d["name"] for d in services.export_workflows(uow=uow, actor=actor)] == ["A's secret CRM hook"]


def test_the_same_definition_in_two_tenants_is_two_independent_workflows(db, actor, other_actor, spec_examples):
    with unit_of_work(db) as uow:
        a = services.create_workflow(uow=uow, actor=actor, data=spec_examples[0])
    with unit_of_work(db) as uow:
        b = services.create_workflow(uow=uow, actor=other_actor, data=spec_examples[0])
    with unit_of_work(db) as uow:
        services.delete_workflow(uow=uow, actor=other_actor, workflow_id=b.id)
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=actor, workflow_id=a.id).version == 1
