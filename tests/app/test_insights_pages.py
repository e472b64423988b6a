"""The Insights and Executions pages per role, on the seeded studio with real runs."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from engine import services
from engine.services import operations
from engine.uow import unit_of_work
from tests.app.conftest import actor_for

PHONE = "+4915112345678"


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture
def runs(studio):
    """Two real events through the seeded workflows, plus one failing webhook execution."""
    db, owner = studio["db"], actor_for(studio, "owner")
    with unit_of_work(db) as uow:
        services.update_tenant_settings(uow=uow, actor=owner, settings={"webhookAllowList": ["127.0.0.1"]})
    with unit_of_work(db) as uow:
        wf = services.create_workflow(
            uow=uow,
            actor=owner,
            data={
                "name": "CRM hook",
                "trigger": {"type": "sms_received", "config": {}},
                "conditions": [],
                "actions": [
                    {
                        "id": "hook",
                        "type": "call_webhook",
                        "onError": "stop",
                        "retry": {"maxAttempts": 1, "backoff": 1},
                        "config": {"webhookUrl": "http://127.0.0.1:9/down", "method": "POST", "timeout": 1},
                    }
                ],
            },
        )
    for text in ("Was kostet die 10er-Karte?", "Ich möchte einen Probetermin"):
        with unit_of_work(db) as uow:
            services.ingest_event(
                uow=uow,
                actor=owner,
                event={"triggerType": "whatsapp_message", "channel": "whatsapp", "from": PHONE, "content": text},
            )
    with unit_of_work(db) as uow:
        [failed] = services.ingest_event(
            uow=uow,
            actor=owner,
            event={"triggerType": "sms_received", "channel": "sms", "from": PHONE, "content": "Hallo"},
        ).execution_ids
    return {"failed": failed, "workflow": wf.id}


@pytest.mark.parametrize("role", ["owner", "editor", "analyst"])
def test_insights_counts_and_charts_for_every_role(app_factory, runs, role):
    at = app_factory(role, "pages/insights.py")
    _ok(at)
    assert at.title[0].value == "Insights"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Inbound messages"] == "3" and metrics["Failures"] == "1"
    assert int(metrics["Executions"]) >= 3
    assert any("CRM hook" in df.value.to_csv() for df in at.dataframe)


def test_insights_range_switch_keeps_working(app_factory, runs):
    at = app_factory("analyst", "pages/insights.py")
    at.session_state["insights_range"] = "today"
    at.run()
    _ok(at)
    assert {m.label: m.value for m in at.metric}["Failures"] == "1"


def test_executions_page_shows_replay_for_editors_only(app_factory, runs, studio):
    editor = app_factory("editor", "pages/executions.py")
    _ok(editor)
    keys = [b.key for b in editor.button]
    assert "executions_replay" in keys and "executions_bulk" in keys
    analyst = app_factory("analyst", "pages/executions.py")
    _ok(analyst)
    keys = [b.key for b in analyst.button]
    assert "executions_replay" not in keys and "executions_bulk" not in keys and "executions_cancel" not in keys
    contacts = [df.value.to_csv() for df in analyst.dataframe]
    assert any("+49 151 ****678" in c for c in contacts) and not any(PHONE in c for c in contacts)


def test_executions_filters_status_test_and_contact(app_factory, runs):
    at = app_factory("owner", "pages/executions.py")
    at.selectbox(key="executions_status").set_value("test").run()
    _ok(at)
    assert any("No executions match" in i.value for i in at.info)
    at.selectbox(key="executions_status").set_value("failed").run()
    _ok(at)
    assert len(at.dataframe[0].value) == 1
    at.text_input(key="executions_contact").set_value("0151 12345678").run()
    _ok(at)


def test_cancel_and_replay_through_the_services_the_page_calls(studio, runs):
    db, editor = studio["db"], actor_for(studio, "editor")
    with unit_of_work(db, read_only=True) as uow:
        page = operations.search_executions(uow=uow, actor=editor, filters=operations.ExecutionFilter(status="failed"))
    assert [e.id for e in page.items] == [runs["failed"]]


def test_owner_turns_on_contact_details_for_analysts(app_factory, runs, studio):
    owner = app_factory("owner", "pages/settings.py")
    _ok(owner)
    owner.toggle(key="settings_analysts_contacts").set_value(True).run()
    _ok(owner)
    with unit_of_work(studio["db"], read_only=True) as uow:
        assert services.get_tenant(uow=uow, actor=actor_for(studio, "owner")).settings["analystsSeeContacts"] is True
    analyst = app_factory("analyst", "pages/executions.py")
    assert any(PHONE in df.value.to_csv() for df in analyst.dataframe)


def test_a_link_to_one_execution_opens_its_detail(app_factory, runs, studio):
    with unit_of_work(studio["db"], read_only=True) as uow:
        oldest = services.list_executions(uow=uow, actor=actor_for(studio, "owner"), page_size=100).items[-1]
    assert oldest.id != runs["failed"]  # not the newest, which the page shows anyway
    at = app_factory("owner")
    at.query_params["id"] = oldest.id
    at.switch_page("pages/executions.py").run()
    _ok(at)
    heads = [m.value for m in at.markdown if m.value.startswith("**")]
    assert any(oldest.workflow_name in h for h in heads) and not any("CRM hook" in h for h in heads), heads


def test_a_replayed_execution_offers_its_replay_not_a_second_one(app_factory, runs, studio):
    """Issue 21: once replayed, the detail names the replay and has no Replay button; the page
    opens the replay (by id) after "Open replay"."""
    db, editor = studio["db"], actor_for(studio, "editor")
    with unit_of_work(db) as uow:
        replay = operations.replay_execution(uow=uow, actor=editor, execution_id=runs["failed"]).execution
    at = app_factory("editor")
    at.query_params["id"] = runs["failed"]
    at.switch_page("pages/executions.py").run()
    _ok(at)
    keys = [b.key for b in at.button]
    assert "executions_replay" not in keys and "executions_open_replay" in keys
    assert any(f"Replayed as execution `{replay.id}`" in c.value for c in at.caption)
    at.button(key="executions_open_replay").click().run()
    _ok(at)
    assert any(f"Replay of execution `{runs['failed']}`" in c.value for c in at.caption)
    assert "executions_open_replay" not in [b.key for b in at.button]


def test_an_open_execution_that_is_gone_falls_back_to_the_newest_with_a_note(app_factory, runs, studio):
    at = app_factory("owner")
    at.query_params["id"] = "0" * 32
    at.switch_page("pages/executions.py").run()
    _ok(at)
    assert any("was not found" in w.value for w in at.warning)
    heads = [m.value for m in at.markdown if m.value.startswith("**")]
    assert any("CRM hook" in h for h in heads), heads  # the newest: the failed webhook run
    at.run()  # the note is said once; the page goes on with the newest
    _ok(at)
    assert not any("was not found" in w.value for w in at.warning)
def test_messages_nobody_received_are_recorded_not_delivered(app_factory, runs):
    """The demo studio has no provider connected: its replies are recorded, and Insights says so
    instead of counting them as delivered (issue 21)."""
    at = app_factory("owner", "pages/insights.py")
    _ok(at)
    [table] = [df.value for df in at.dataframe if "Recorded (no provider)" in df.value.columns]
    whatsapp = table.set_index("Channel").loc["whatsapp"]
    assert whatsapp["Recorded (no provider)"] >= 2
    assert whatsapp["Delivered"] == whatsapp["Sent"] == whatsapp["Read"] == 0
