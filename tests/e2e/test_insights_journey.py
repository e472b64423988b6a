"""Real-browser journey of issue 11: events in, Insights counts them and shows the flow with
numbers; a failed webhook execution is replayed after its URL is fixed; a cancelled wait never
sends its follow-up; an analyst sees masked contacts and no replay button. Screenshots go to
test-artifacts/e2e (the final ones are copied to docs/screenshots/11-*.png)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from engine.uow import unit_of_work
from tests.e2e.conftest import (
    ANALYST,
    OWNER,
    ROOT,
    App,
    _create_analyst,
    _free_port,
    _stop,
    _wait_until_up,
    start_streamlit,
)
from tests.servers import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PHONE = "+4915112345678"


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory, chromium):
    """The app on a free port over a database this test can also write to (events, runs)."""
    tmp = tmp_path_factory.mktemp("e2e-insights")
    url = f"sqlite:///{tmp / 'studio.db'}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "STUDIO_DEMO_EMAIL": OWNER[0],
        "STUDIO_DEMO_PASSWORD": OWNER[1],
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run(
        [sys.executable, "-m", "engine", "init"], cwd=ROOT, env=env, check=True, timeout=120, capture_output=True
    )
    _create_analyst(env)
    port, log = _free_port(), tmp / "streamlit.log"
    with log.open("w") as out:
        proc = start_streamlit(port, env, out)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", proc, log)
        yield f"http://127.0.0.1:{port}", url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def scenario(studio_server):
    """Events in: three WhatsApp messages, one SMS whose webhook fails, one wait with a follow-up."""
    from engine import services
    from engine.security import auth
    from engine.store.db import get_engine

    _, url = studio_server
    db = get_engine(url)
    with unit_of_work(db, read_only=True) as uow:
        owner = auth.system_actor(services.find_tenant(uow=uow, slug_or_id="demo").id)
    broken, fixed = Receiver(statuses=[500]), Receiver(statuses=[200])
    with unit_of_work(db) as uow:
        services.update_tenant_settings(uow=uow, actor=owner, settings={"webhookAllowList": ["127.0.0.1"]})
    with unit_of_work(db) as uow:
        hook = services.create_workflow(
            uow=uow,
            actor=owner,
            data={
                "name": "SMS to CRM",
                "trigger": {"type": "sms_received", "config": {}},
                "conditions": [],
                "actions": [
                    {
                        "id": "hook",
                        "type": "call_webhook",
                        "onError": "stop",
                        "retry": {"maxAttempts": 1, "backoff": 1},
                        "config": {
                            "webhookUrl": broken.hook_url,
                            "method": "POST",
                            "body": {"from": "{{trigger.from}}"},
                        },
                    }
                ],
            },
        )
    with unit_of_work(db) as uow:
        nudge = services.create_workflow(
            uow=uow,
            actor=owner,
            data={
                "name": "Web chat nudge",
                "trigger": {"type": "web_chat", "config": {}},
                "conditions": [],
                "actions": [
                    {
                        "id": "later",
                        "type": "schedule_follow_up",
                        "config": {"delay": 3_600_000, "message": "Noch Fragen?"},
                    },
                    {"id": "wait-1", "type": "wait", "config": {"delay": 600_000}},
                    {"id": "thanks", "type": "send_sms", "config": {"message": "Danke"}},
                ],
            },
        )
    for text in ("Was kostet die 10er-Karte?", "Kann ich morgen zum Yoga kommen?", "Habt ihr Sonntag offen?"):
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
            event={"triggerType": "sms_received", "channel": "sms", "from": PHONE, "content": "Bitte zurückrufen"},
        ).execution_ids
    with unit_of_work(db) as uow:
        [waiting] = services.ingest_event(
            uow=uow,
            actor=owner,
            event={"triggerType": "web_chat", "channel": "web", "from": "jana@example.com", "content": "Hallo?"},
        ).execution_ids
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=owner, execution_id=failed).status == "failed"
    with unit_of_work(db, read_only=True) as uow:
        assert services.get_execution(uow=uow, actor=owner, execution_id=waiting).status == "waiting"
    yield {"db": db, "owner": owner, "hook": hook, "nudge": nudge, "failed": failed, "waiting": waiting, "fixed": fixed}
    broken.close()
    fixed.close()


@pytest.fixture
def app(page, studio_server, artifacts) -> App:
    return App(page, studio_server[0], artifacts)


def _workflow_names_in_table_order(db, owner) -> list[str]:
    """The per-workflow table lists the studio's workflows by name, as the database orders them."""
    import sqlalchemy as sa

    from engine.store.models import Workflow

    with db.connect() as conn:
        return list(
            conn.execute(
                sa.select(Workflow.name).where(Workflow.tenant_id == owner.tenant_id).order_by(Workflow.name)
            ).scalars()
        )


def test_insights_counts_the_events_and_shows_the_flow_with_numbers(app: App, scenario):
    app.login(*OWNER)
    page = app.page
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Insights").click()
    app.settle()
    page.get_by_role("heading", name="Insights").wait_for()
    tile = page.get_by_test_id("stMetric").filter(has_text="Inbound messages")
    assert "5" in tile.inner_text()
    assert "1" in page.get_by_test_id("stMetric").filter(has_text="Failures").inner_text()
    page.get_by_test_id("stVegaLiteChart").first.wait_for()
    assert page.get_by_test_id("stVegaLiteChart").count() >= 4
    # Select the "Web chat nudge" row of the per-workflow table: its flow graph with numbers appears.
    grid = page.locator("[class*='st-key-insights_workflows']").get_by_test_id("stDataFrame")
    grid.scroll_into_view_if_needed()
    app.settle()
    box = grid.bounding_box()
    names = _workflow_names_in_table_order(scenario["db"], scenario["owner"])
    row = names.index("Web chat nudge")
    page.mouse.click(box["x"] + 20, box["y"] + 35 * (row + 1) + 17)  # the row-selection column
    app.settle()
    page.get_by_text("the flow with the numbers of this range").wait_for()
    labels = page.locator("[class*='st-key-insights_card_flow'] svg text")
    labels.first.wait_for()
    graph = " ".join(labels.all_text_contents())
    assert "1 reached" in graph  # the one waiting execution reached the follow-up and the wait
    app.shot("11-insights-owner", height=2600)


def test_failed_webhook_replayed_after_fixing_its_url_succeeds(app: App, scenario):
    from engine import services

    wf = scenario["hook"]
    with unit_of_work(scenario["db"], read_only=True) as uow:
        definition = services.get_workflow(uow=uow, actor=scenario["owner"], workflow_id=wf.id).definition
    definition["actions"][0]["config"]["webhookUrl"] = scenario["fixed"].hook_url
    with unit_of_work(scenario["db"]) as uow:
        services.update_workflow(
            uow=uow, actor=scenario["owner"], workflow_id=wf.id, changes={"actions": definition["actions"]}
        )
    app.login(*OWNER)
    app.nav("Executions")
    app.select("Status", "failed")
    page = app.page
    app.click("Replay")
    dialog = page.get_by_test_id("stDialog")
    dialog.get_by_text("from the start").click()
    dialog.get_by_text("the current version").click()
    app.shot("11-replay-dialog")
    dialog.get_by_role("button", name="Replay now").click()
    app.settle()
    page.get_by_text("Replayed: the new execution").wait_for()
    assert "succeeded" in page.get_by_test_id("stAlert").first.inner_text()
    assert len(scenario["fixed"].requests) == 1


def test_a_cancelled_wait_never_sends_its_follow_up(app: App, scenario):
    from sqlmodel import Session, select

    from engine.store.models import OutboxMessage, utcnow
    from engine.worker import Worker

    app.login(*OWNER)
    app.nav("Executions")
    app.select("Status", "waiting")
    page = app.page
    app.click("Cancel")
    dialog = page.get_by_test_id("stDialog")
    app.fill("Reason", "booked by phone")
    # The detail of a waiting execution refreshes every 3 s: the open dialog and its text stay.
    page.wait_for_timeout(7_000)
    assert dialog.get_by_label("Reason").input_value() == "booked by phone"
    dialog.get_by_role("button", name="Cancel execution").click()
    app.settle()
    page.get_by_text("Cancelled. Its follow-ups will not fire.").wait_for()
    later = utcnow() + timedelta(hours=3)
    Worker(scenario["db"], clock=lambda: later, name="e2e-after-cancel").run_once()
    with Session(scenario["db"]) as s:
        bodies = [
            m.body for m in s.exec(select(OutboxMessage).where(OutboxMessage.execution_id == scenario["waiting"]))
        ]
    assert "Noch Fragen?" not in bodies and "Danke" not in bodies


def test_analyst_sees_masked_contacts_and_no_replay_button(app: App, scenario):
    app.login(*ANALYST)
    app.nav("Executions")
    page = app.page
    app.select("Status", "failed")
    text = page.get_by_test_id("stMain").inner_text()
    assert "+49 151 ****678" in text and PHONE not in text
    assert app.visible(page.get_by_role("button", name="Replay", exact=True)).count() == 0
    assert app.visible(page.get_by_role("button", name="Replay failed…")).count() == 0
    app.shot("11-executions-analyst-masked", height=1600)


def _click_row(app: App, row: int) -> None:
    """Tick the selection box of row ``row`` (0 = top) of the executions table."""
    grid = app.page.locator("[class*='st-key-executions_table']").get_by_test_id("stDataFrame")
    grid.scroll_into_view_if_needed()
    app.settle()
    box = grid.bounding_box()
    app.page.mouse.click(box["x"] + 20, box["y"] + 35 * (row + 1) + 17)
    app.settle()


def _row_of(db, owner, execution_id: str) -> int:
    from engine.services import operations

    with unit_of_work(db, read_only=True) as uow:
        page = operations.search_executions(uow=uow, actor=owner, filters=operations.ExecutionFilter(), page_size=25)
    return [e.id for e in page.items].index(execution_id)


def test_after_a_replay_the_detail_shows_the_new_execution_not_the_row_that_moved_up(app: App, scenario):
    """Issue 21: the selection follows the execution, not the row number; a replayed execution
    offers no second replay."""
    from engine import services

    db, owner = scenario["db"], scenario["owner"]
    with Receiver(statuses=[500, 200]) as crm:
        with unit_of_work(db) as uow:
            services.create_workflow(
                uow=uow,
                actor=owner,
                data={
                    "name": "Booking to CRM",
                    "trigger": {"type": "booking_created", "config": {}},
                    "conditions": [],
                    "actions": [
                        {
                            "id": "hook",
                            "type": "call_webhook",
                            "onError": "stop",
                            "retry": {"maxAttempts": 1, "backoff": 1},
                            "config": {"webhookUrl": crm.hook_url, "method": "POST", "body": {"x": 1}},
                        }
                    ],
                },
            )
        booking = {"triggerType": "booking_created", "from": PHONE, "data": {"className": "Yin"}}
        with unit_of_work(db) as uow:
            [failed] = services.ingest_event(uow=uow, actor=owner, event=booking).execution_ids
        # A newer execution that waits: the one the old row number pointed at after the replay.
        chat = {"triggerType": "web_chat", "channel": "web", "from": "lena@example.com", "content": "Hallo?"}
        with unit_of_work(db) as uow:
            services.ingest_event(uow=uow, actor=owner, event=chat)

        app.login(*OWNER)
        app.nav("Executions")
        page = app.page
        status = app.visible(page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Status", exact=True)))
        # the box says "All statuses", not "Choose an option" as if it were empty
        assert status.first.get_by_role("combobox").input_value() == "All statuses"
        card = page.locator("[class*='st-key-card_execution_detail']")
        row = _row_of(db, owner, failed)
        assert row >= 1
        _click_row(app, row)
        card.get_by_text("Booking to CRM").first.wait_for()
        app.visible(card.get_by_role("button", name="Replay", exact=True)).first.click()
        app.settle()
        dialog = page.get_by_test_id("stDialog")
        dialog.get_by_role("button", name="Replay now").click()
        app.settle()
        page.get_by_text("Replayed: the new execution").wait_for()
        assert "succeeded" in page.get_by_test_id("stAlert").first.inner_text()
        with unit_of_work(db, read_only=True) as uow:
            replay = services.get_execution(uow=uow, actor=owner, execution_id=failed).replayed_by
        assert replay is not None and len(crm.requests) == 2

        # The detail is the replay: its head, its origin, and no Cancel of some other execution.
        card.get_by_text(f"Replay of execution {failed}").wait_for()
        head = card.get_by_test_id("stMarkdown").first.inner_text()
        assert "Booking to CRM" in head and "succeeded" in head.lower(), head
        assert app.visible(card.get_by_role("button", name="Cancel", exact=True)).count() == 0
        app.shot("21-executions-after-replay", height=1600)

        # The original, picked again, names its replay and offers no second one.
        _click_row(app, _row_of(db, owner, failed))
        card.get_by_text(f"Replayed as execution {replay}").wait_for()
        assert app.visible(card.get_by_role("button", name="Replay", exact=True)).count() == 0
        app.visible(card.get_by_role("button", name="Open replay")).first.click()
        app.settle()
        card.get_by_text(f"Replay of execution {failed}").wait_for()
