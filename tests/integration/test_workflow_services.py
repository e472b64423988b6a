"""Workflow use cases on SQLite and PostgreSQL: CRUD, versions, import/export, lists, stats, roles."""

from __future__ import annotations

import copy

import pytest
from sqlmodel import Session, select

from engine import services
from engine.errors import InvalidInput, NotFound, PermissionDenied, ValidationFailed
from engine.security.auth import Actor
from engine.store.models import Execution, Workflow, WorkflowVersion
from engine.uow import unit_of_work
from tests.uow import in_uow


def simple(name: str, trigger: str = "whatsapp_message", enabled: bool = True, **extra) -> dict:
    return {
        "name": name,
        "enabled": enabled,
        "trigger": {"type": trigger, "config": {}},
        "conditions": [],
        "actions": [{"id": "send-1", "type": "send_whatsapp", "config": {"message": f"Hallo von {name}"}}],
        **extra,
    }


@pytest.fixture
def analyst(tenant) -> Actor:
    return Actor(tenant.id, role="analyst")


@pytest.fixture
def workflow(db, actor, spec_examples):
    """The spec's "After Hours Auto-Reply", stored."""
    with unit_of_work(db) as uow:
        return services.create_workflow(uow=uow, actor=actor, data=spec_examples[0])


def stored_versions(db, workflow_id: str) -> list[int]:
    with Session(db) as s:
        return sorted(s.exec(select(WorkflowVersion.version).where(WorkflowVersion.workflow_id == workflow_id)).all())


def set_counters(db, workflow_id: str, *, runs: int, ok: int, failed: int) -> None:
    """Store executions: ``ok`` succeeded, ``failed`` failed and the rest of ``runs`` skipped
    (runs are counted from executions as engine.domain defines them)."""
    with Session(db) as s:
        row = s.get(Workflow, workflow_id)
        statuses = ["succeeded"] * ok + ["failed"] * failed + ["skipped"] * (runs - ok - failed)
        s.add_all(
            Execution(tenant_id=row.tenant_id, workflow_id=row.id, workflow_name=row.name, status=st) for st in statuses
        )
        s.commit()


# --------------------------------------------------------------------------- create / get / update


def test_create_stores_the_definition_as_version_1(db, actor, spec_examples):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=spec_examples[0])
    assert wf.version == 1 and wf.tenant_id == actor.tenant_id
    assert wf.definition == spec_examples[0]
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=actor, workflow_id=wf.id).definition == spec_examples[0]
    assert stored_versions(db, wf.id) == [1]
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_versions(uow=uow, actor=actor, workflow_id=wf.id)[0].definition == spec_examples[0]


def test_create_rejects_an_invalid_definition_and_stores_nothing(db, actor):
    bad = simple("Broken")
    bad["actions"][0]["nextActionId"] = "ghost"
    with pytest.raises(ValidationFailed) as exc:
        with unit_of_work(db) as uow:
            services.create_workflow(uow=uow, actor=actor, data=bad)
    assert [p.path for p in exc.value.problems] == ["actions[0].nextActionId"]
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=actor).total == 0


def test_create_returns_warnings_but_stores_the_workflow(db, actor):
    data = simple("Unreachable")
    data["actions"][0]["nextActionId"] = None
    data["actions"].append({"id": "never", "type": "wait", "config": {"delay": 1000}})
    with unit_of_work(db) as uow:
        wf = services.create_workflow(uow=uow, actor=actor, data=data)
    assert [w["path"] for w in wf.warnings] == ["actions[1]"]


def test_partial_update_like_the_spec_bumps_the_version_and_keeps_the_rest(db, actor, workflow):
    with unit_of_work(db) as uow:
        updated = services.update_workflow(
            uow=uow,
            actor=actor,
            workflow_id=workflow.id,
            changes={"workflowId": workflow.id, "name": "Feierabend", "enabled": False},
        )
    assert (updated.name, updated.enabled, updated.version) == ("Feierabend", False, 2)
    assert updated.actions == workflow.actions and updated.trigger == workflow.trigger
    assert stored_versions(db, workflow.id) == [1, 2]
    with unit_of_work(db, read_only=True) as uow:
        fetched = services.get_workflow(uow=uow, actor=actor, workflow_id=workflow.id)
    assert (fetched.name, fetched.enabled, fetched.version) == ("Feierabend", False, 2)


def test_an_update_that_changes_nothing_keeps_the_version(db, actor, workflow):
    with unit_of_work(db) as uow:
        assert (
            services.update_workflow(
                uow=uow, actor=actor, workflow_id=workflow.id, changes={"name": workflow.name}
            ).version
            == 1
        )
    assert stored_versions(db, workflow.id) == [1]


def test_an_invalid_update_stores_nothing(db, actor, workflow):
    bad_actions = copy.deepcopy(workflow.actions) + [{"id": "x", "type": "teleport", "config": {}}]
    with pytest.raises(ValidationFailed) as exc:
        with unit_of_work(db) as uow:
            services.update_workflow(
                uow=uow, actor=actor, workflow_id=workflow.id, changes={"name": "Changed", "actions": bad_actions}
            )
    assert "actions[1].type" in {p.path for p in exc.value.problems}
    with unit_of_work(db, read_only=True) as uow:
        after = services.get_workflow(uow=uow, actor=actor, workflow_id=workflow.id)
    assert (after.name, after.version, after.definition) == (workflow.name, 1, workflow.definition)
    assert stored_versions(db, workflow.id) == [1]


def test_an_update_with_an_unknown_field_is_refused_naming_it(db, actor, workflow):
    with pytest.raises(InvalidInput, match="colour"):
        with unit_of_work(db) as uow:
            services.update_workflow(uow=uow, actor=actor, workflow_id=workflow.id, changes={"colour": "red"})


def test_enable_and_disable_each_record_a_version(db, actor, workflow):
    with unit_of_work(db) as uow:
        assert services.set_enabled(uow=uow, actor=actor, workflow_id=workflow.id, enabled=False).enabled is False
    with unit_of_work(db) as uow:
        assert services.set_enabled(uow=uow, actor=actor, workflow_id=workflow.id, enabled=True).enabled is True
    with unit_of_work(db, read_only=True) as uow:
        notes = [v.note for v in services.list_versions(uow=uow, actor=actor, workflow_id=workflow.id)]
    assert notes == ["enabled", "disabled", "created"]


def test_delete_removes_the_workflow_and_its_versions(db, actor, workflow):
    with unit_of_work(db) as uow:
        services.delete_workflow(uow=uow, actor=actor, workflow_id=workflow.id)
    with pytest.raises(NotFound):
        with unit_of_work(db, read_only=True) as uow:
            services.get_workflow(uow=uow, actor=actor, workflow_id=workflow.id)
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=actor).total == 0
    assert stored_versions(db, workflow.id) == []
    with pytest.raises(NotFound):
        with unit_of_work(db) as uow:
            services.delete_workflow(uow=uow, actor=actor, workflow_id=workflow.id)


def test_duplicate_creates_a_disabled_copy_with_its_own_history(db, actor, workflow):
    with unit_of_work(db) as uow:
        copy_ = services.duplicate_workflow(uow=uow, actor=actor, workflow_id=workflow.id)
    assert copy_.id != workflow.id
    assert (copy_.name, copy_.enabled, copy_.version) == ("After Hours Auto-Reply (copy)", False, 1)
    assert copy_.actions == workflow.actions and copy_.conditions == workflow.conditions
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=actor, workflow_id=workflow.id).enabled is True
    with unit_of_work(db) as uow:
        assert (
            services.duplicate_workflow(uow=uow, actor=actor, workflow_id=workflow.id, name="Wochenende").name
            == "Wochenende"
        )


def test_getting_an_unknown_id_is_not_found(db, actor):
    with pytest.raises(NotFound):
        with unit_of_work(db, read_only=True) as uow:
            services.get_workflow(uow=uow, actor=actor, workflow_id="0" * 32)


# --------------------------------------------------------------------------- versions


def test_rollback_makes_an_old_version_current_as_a_new_version(db, actor, workflow):
    with unit_of_work(db) as uow:
        services.update_workflow(uow=uow, actor=actor, workflow_id=workflow.id, changes={"name": "Zweite Fassung"})
    with unit_of_work(db) as uow:
        rolled = services.rollback_workflow(uow=uow, actor=actor, workflow_id=workflow.id, version=1)
    assert (rolled.name, rolled.version) == ("After Hours Auto-Reply", 3)
    with unit_of_work(db, read_only=True) as uow:
        versions = services.list_versions(uow=uow, actor=actor, workflow_id=workflow.id)
    assert [v.version for v in versions] == [3, 2, 1]
    assert versions[0].note == "rolled back to version 1"
    assert versions[0].definition == versions[2].definition


def test_rollback_to_a_missing_version_is_not_found(db, actor, workflow):
    with pytest.raises(NotFound, match="version 7"):
        with unit_of_work(db) as uow:
            services.rollback_workflow(uow=uow, actor=actor, workflow_id=workflow.id, version=7)


# --------------------------------------------------------------------------- lists and stats


@pytest.fixture
def many(db, actor):
    """12 workflows: names "Flow 00".."Flow 11"; even ones enabled; every third on missed_call."""
    with unit_of_work(db) as uow:
        return [
            services.create_workflow(
                uow=uow,
                actor=actor,
                data=simple(
                    f"Flow {i:02d}", trigger="missed_call" if i % 3 == 0 else "whatsapp_message", enabled=i % 2 == 0
                ),
            )
            for i in range(12)
        ]


def test_list_is_sorted_by_name_and_paginated(db, actor, many):
    with unit_of_work(db, read_only=True) as uow:
        first = services.list_workflows(uow=uow, actor=actor, page_size=5)
    with unit_of_work(db, read_only=True) as uow:
        second = services.list_workflows(uow=uow, actor=actor, page=2, page_size=5)
    with unit_of_work(db, read_only=True) as uow:
        last = services.list_workflows(uow=uow, actor=actor, page=3, page_size=5)
    assert [w.name for w in first.items] == [f"Flow {i:02d}" for i in range(5)]
    assert [w.name for w in second.items] == [f"Flow {i:02d}" for i in range(5, 10)]
    assert [w.name for w in last.items] == ["Flow 10", "Flow 11"]
    assert (second.total, second.page, second.pages) == (12, 2, 3)
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=actor, page=4, page_size=5).items == []


def test_list_enabled_only(db, actor, many):
    with unit_of_work(db, read_only=True) as uow:
        page = services.list_workflows(uow=uow, actor=actor, enabled_only=True)
    assert page.total == 6 and all(w.enabled for w in page.items)


def test_list_search_is_case_insensitive_and_treats_wildcards_literally(db, actor, many):
    with unit_of_work(db) as uow:
        services.create_workflow(uow=uow, actor=actor, data=simple("100% Rabatt_Aktion"))
    with unit_of_work(db, read_only=True) as uow:
        assert [w.name for w in services.list_workflows(uow=uow, actor=actor, search="flow 1").items] == [
            "Flow 10",
            "Flow 11",
        ]
    with unit_of_work(db, read_only=True) as uow:
        assert [w.name for w in services.list_workflows(uow=uow, actor=actor, search="%").items] == [
            "100% Rabatt_Aktion"
        ]
    with unit_of_work(db, read_only=True) as uow:
        assert [w.name for w in services.list_workflows(uow=uow, actor=actor, search="t_a").items] == [
            "100% Rabatt_Aktion"
        ]


def test_list_by_trigger_type(db, actor, many):
    with unit_of_work(db, read_only=True) as uow:
        page = services.list_workflows(uow=uow, actor=actor, trigger_type="missed_call")
    assert [w.name for w in page.items] == ["Flow 00", "Flow 03", "Flow 06", "Flow 09"]


def test_list_rejects_a_page_size_out_of_bounds(db, actor):
    with pytest.raises(InvalidInput):
        with unit_of_work(db, read_only=True) as uow:
            services.list_workflows(uow=uow, actor=actor, page_size=services.MAX_PAGE_SIZE + 1)
    with pytest.raises(InvalidInput):
        with unit_of_work(db, read_only=True) as uow:
            services.list_workflows(uow=uow, actor=actor, page=0)


def _spec_keys(stats: dict) -> dict:
    return {k: stats[k] for k in ("totalWorkflows", "enabledWorkflows", "totalExecutions", "successRate")}


def test_stats_aggregate_counters_across_the_tenant(db, actor, many):
    set_counters(db, many[0].id, runs=40, ok=38, failed=2)
    set_counters(db, many[1].id, runs=10, ok=9, failed=0)
    with unit_of_work(db, read_only=True) as uow:
        stats = services.workflow_stats(uow=uow, actor=actor)
    assert (stats.total_workflows, stats.enabled_workflows, stats.total_executions) == (12, 6, 50)
    assert stats.success_rate == pytest.approx(47 / 49, abs=1e-4)
    assert (stats.succeeded, stats.failed, stats.skipped) == (47, 2, 1)
    assert _spec_keys(stats.to_api()) == {
        "totalWorkflows": 12,
        "enabledWorkflows": 6,
        "totalExecutions": 50,
        "successRate": round(47 / 49, 4),
    }


def test_stats_of_an_empty_tenant_are_zero(db, actor):
    with unit_of_work(db, read_only=True) as uow:
        assert _spec_keys(services.workflow_stats(uow=uow, actor=actor).to_api()) == {
            "totalWorkflows": 0,
            "enabledWorkflows": 0,
            "totalExecutions": 0,
            "successRate": 0.0,
        }


def test_list_include_stats_returns_the_stats_with_the_page(db, actor, many):
    set_counters(db, many[2].id, runs=4, ok=3, failed=1)
    with unit_of_work(db, read_only=True) as uow:
        page = services.list_workflows(uow=uow, actor=actor, include_stats=True, page_size=2)
    with unit_of_work(db, read_only=True) as uow:
        assert page.stats == services.workflow_stats(uow=uow, actor=actor)
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=actor).stats is None
    with unit_of_work(db, read_only=True) as uow:
        flow_02 = services.get_workflow(uow=uow, actor=actor, workflow_id=many[2].id)
    assert (flow_02.run_count, flow_02.success_rate) == (4, 0.75)


# --------------------------------------------------------------------------- import / export


def test_import_of_the_spec_examples_stores_all_four(db, actor, spec_examples):
    with unit_of_work(db) as uow:
        imported = services.import_workflows(uow=uow, actor=actor, items=spec_examples)
    assert [w.name for w in imported] == [e["name"] for e in spec_examples]
    with unit_of_work(db, read_only=True) as uow:
        page = services.list_workflows(uow=uow, actor=actor, include_stats=True)
    assert page.total == 4 and page.stats.total_workflows == 4 and page.stats.enabled_workflows == 4


def test_import_is_all_or_nothing_and_prefixes_paths_with_the_item_index(db, actor, spec_examples):
    bad = copy.deepcopy(spec_examples[1])
    bad["actions"][0]["nextActionId"] = "ghost"
    with pytest.raises(ValidationFailed) as exc:
        with unit_of_work(db) as uow:
            services.import_workflows(uow=uow, actor=actor, items=[spec_examples[0], bad, spec_examples[2]])
    assert [p.path for p in exc.value.problems if p.severity == "error"] == ["[1].actions[0].nextActionId"]
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=actor).total == 0


def test_import_of_nothing_is_refused(db, actor):
    with pytest.raises(InvalidInput):
        with unit_of_work(db) as uow:
            services.import_workflows(uow=uow, actor=actor, items=[])


def test_export_then_import_into_another_tenant_gives_the_same_definitions(db, actor, other_actor, spec_examples):
    with unit_of_work(db) as uow:
        services.import_workflows(uow=uow, actor=actor, items=spec_examples)
    with unit_of_work(db, read_only=True) as uow:
        exported = services.export_workflows(uow=uow, actor=actor)
    assert sorted(exported, key=lambda d: d["name"]) == sorted(spec_examples, key=lambda d: d["name"])
    with unit_of_work(db) as uow:
        services.import_workflows(uow=uow, actor=other_actor, items=exported)
    with unit_of_work(db, read_only=True) as uow:
        assert services.export_workflows(uow=uow, actor=other_actor) == exported


def test_export_of_one_workflow_is_its_definition(db, actor, workflow, spec_examples):
    with unit_of_work(db, read_only=True) as uow:
        assert services.export_workflows(uow=uow, actor=actor, workflow_id=workflow.id) == [spec_examples[0]]


def test_time_based_workflows_get_a_next_fire_time(db, actor):
    with unit_of_work(db) as uow:
        wf = services.create_workflow(
            uow=uow,
            actor=actor,
            data=simple("Morgens", trigger="time_based")
            | {"trigger": {"type": "time_based", "config": {"schedule": "0 9 * * *"}}},
        )
    assert wf.next_fire_at is not None
    with unit_of_work(db) as uow:
        assert services.set_enabled(uow=uow, actor=actor, workflow_id=wf.id, enabled=False).next_fire_at is None


# --------------------------------------------------------------------------- roles


def test_an_analyst_can_read(db, analyst, workflow):
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_workflow(uow=uow, actor=analyst, workflow_id=workflow.id).name == workflow.name
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=analyst, include_stats=True).total == 1
    with unit_of_work(db, read_only=True) as uow:
        assert services.workflow_stats(uow=uow, actor=analyst).total_workflows == 1
    with unit_of_work(db, read_only=True) as uow:
        assert len(services.list_versions(uow=uow, actor=analyst, workflow_id=workflow.id)) == 1
    with unit_of_work(db, read_only=True) as uow:
        assert len(services.export_workflows(uow=uow, actor=analyst)) == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda db, a, wf: in_uow(db, services.create_workflow, actor=a, data=simple("Neu")),
        lambda db, a, wf: in_uow(db, services.update_workflow, actor=a, workflow_id=wf.id, changes={"name": "Neu"}),
        lambda db, a, wf: in_uow(db, services.set_enabled, actor=a, workflow_id=wf.id, enabled=False),
        lambda db, a, wf: in_uow(db, services.delete_workflow, actor=a, workflow_id=wf.id),
        lambda db, a, wf: in_uow(db, services.duplicate_workflow, actor=a, workflow_id=wf.id),
        lambda db, a, wf: in_uow(db, services.rollback_workflow, actor=a, workflow_id=wf.id, version=1),
        lambda db, a, wf: in_uow(db, services.import_workflows, actor=a, items=[simple("Neu")]),
    ],
    ids=["create", "update", "disable", "delete", "duplicate", "rollback", "import"],
)
def test_an_analyst_cannot_change_anything(db, actor, analyst, workflow, change):
    with pytest.raises(PermissionDenied):
        change(db, analyst, workflow)
    with unit_of_work(db, read_only=True) as uow:
        after = services.get_workflow(uow=uow, actor=actor, workflow_id=workflow.id)
    assert (after.name, after.enabled, after.version) == (workflow.name, True, 1)
    with unit_of_work(db, read_only=True) as uow:
        assert services.list_workflows(uow=uow, actor=actor).total == 1


def test_an_editor_can_change_workflows_but_not_tenant_settings(db, tenant, workflow):
    editor = Actor(tenant.id, role="editor")
    with unit_of_work(db) as uow:
        assert (
            services.update_workflow(
                uow=uow, actor=editor, workflow_id=workflow.id, changes={"name": "Vom Editor"}
            ).version
            == 2
        )
    with pytest.raises(PermissionDenied):
        with unit_of_work(db) as uow:
            services.update_tenant_settings(uow=uow, actor=editor, name="Umbenannt")
