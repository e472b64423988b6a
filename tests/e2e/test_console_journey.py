"""Real-browser journey through the test console: the spec's manual tests, a missed call whose
follow-up arrives after "Skip all", a saved scenario, and the builder showing that scenario
fail against an unsaved change before saving. Screenshots go to test-artifacts/e2e."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import OWNER, App
from tests.e2e.test_browser_journey import _menu_item

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def app(page, app_url, artifacts) -> App:
    return App(page, app_url, artifacts)


def _say(app: App, channel: str, text: str) -> None:
    app.select("Channel", channel)
    field = app.visible(app.page.get_by_label("Message", exact=True)).first
    field.fill(text)
    app.click("Send")


def test_console_spec_manual_tests_time_travel_and_scenarios(app: App):
    page = app.page
    app.login(*OWNER)
    app.nav("Test console")
    page.get_by_role("heading", name="Test console").wait_for()

    # "Ich möchte einen Trainingsplan" on voice: intent, the workflow runs, the reply bubble.
    _say(app, "Voice call (transcript)", "Ich möchte einen Trainingsplan")
    page.get_by_text("training_plan", exact=False).first.wait_for()
    page.get_by_text("Trainingsplan auf Anfrage — succeeded").first.wait_for()
    page.locator(".sa-out").filter(has_text="Trainingsplan").first.wait_for()
    app.shot("10-console-training-plan-voice", height=1500)

    # The same on WhatsApp, then "Hallo": the others show why they were skipped.
    _say(app, "WhatsApp", "Ich möchte einen Trainingsplan")
    page.get_by_text("Trainingsplan auf Anfrage — succeeded").first.wait_for()
    _say(app, "WhatsApp", "Hallo")
    page.get_by_text("Trainingsplan auf Anfrage — skipped: listens for intent training_plan").first.wait_for()
    page.get_by_text("Listening to other triggers (not considered)").first.wait_for()
    app.shot("10-console-hallo-decisions", height=1500)

    # New conversation; a missed call; its follow-up only after "Skip all".
    app.click("New conversation")
    page.get_by_text("No messages yet").wait_for()
    app.visible(page.get_by_text("Missed call", exact=True)).first.click()
    app.settle()
    app.click("Send")
    page.get_by_text("continue at step send-1").first.wait_for()
    assert page.locator(".sa-out").count() == 0
    app.shot("10-console-missed-call-waiting", height=1400)
    app.click("Skip all")
    page.locator(".sa-out").filter(has_text="Anruf leider verpasst").first.wait_for()
    app.shot("10-console-missed-call-after-skip", height=1400)

    # Save it as a scenario.
    app.click("Save as scenario")
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name", exact=True).fill("Missed call gets a WhatsApp")
    dialog.get_by_label("Name", exact=True).press("Tab")
    app.settle()
    dialog.get_by_role("button", name="Save scenario").click()
    app.settle()
    page.get_by_text("Saved scenario").first.wait_for()
    app.click("Run all")
    page.get_by_text("Missed call gets a WhatsApp · pass").first.wait_for()
    app.shot("10-console-scenarios", height=1800)

    # Change the workflow in the builder: the scenario fails against the unsaved draft.
    app.nav("Workflows")
    app.fill("Search", "Verpasster Anruf")
    _menu_item(app, "Verpasster Anruf: WhatsApp nach 5 Minuten", "Edit").click()
    app.settle()
    page.get_by_role("heading", name="Edit · Verpasster Anruf: WhatsApp nach 5 Minuten").wait_for()
    app.tab("⑤ Review & save")
    page.get_by_text("Scenarios: 5 pass, 0 fail").first.wait_for()
    app.tab("④ Actions")
    message = app.visible(page.get_by_label("Message", exact=True)).first
    message.fill("Schön, dass du dich meldest.")
    message.press("Tab")
    app.settle()
    app.tab("⑤ Review & save")
    page.get_by_text("Scenarios: 3 pass, 2 fail").first.wait_for()
    page.get_by_text("What differs").first.click()
    app.settle()
    app.shot("10-builder-scenarios-fail-on-draft", height=1600)
    app.click("Save workflow")
    page.get_by_role("dialog").get_by_text("Save anyway?", exact=False).wait_for()
    app.shot("10-builder-confirm-save")
    page.get_by_role("dialog").get_by_role("button", name="Keep editing").click()
    app.settle()


def test_stop_in_the_console_opts_the_test_conversation_out_and_start_back_in(app: App):
    """Issue 21: STOP shows the reply as suppressed with the reason, the next one too; START opts in
    again; no real member's opt-out is written."""
    from engine.messaging.optout import list_opt_outs
    from engine.security.auth import system_actor
    from engine.services import find_tenant
    from engine.store.db import get_engine
    from engine.uow import unit_of_work

    page = app.page
    app.login(*OWNER)
    app.nav("Test console")
    app.click("New conversation")
    page.get_by_text("No messages yet").wait_for()
    replies, held = page.locator(".sa-out"), page.locator(".sa-out.sa-held")

    _say(app, "WhatsApp", "Hallo")
    replies.first.wait_for()
    assert held.count() == 0

    _say(app, "WhatsApp", "STOP")
    page.get_by_text("Opt-out word: automated messages to this contact are suppressed").wait_for()
    held.first.wait_for()
    assert "Not sent: test conversation opted out: the contact wrote STOP on whatsapp" in held.first.inner_text()
    page.get_by_text("This test conversation opted out").wait_for()
    app.shot("21-console-stop-suppressed", height=1500)

    _say(app, "WhatsApp", "Wann habt ihr offen?")
    page.wait_for_function("() => document.querySelectorAll('.sa-out.sa-held').length === 2")
    assert replies.count() == 3

    _say(app, "WhatsApp", "START")
    page.get_by_text("Opt-in word: automated messages to this contact go out again.").wait_for()
    page.wait_for_function("() => document.querySelectorAll('.sa-out').length === 4")
    assert held.count() == 2  # the reply to START goes out
    assert page.get_by_text("This test conversation opted out").count() == 0
    _say(app, "WhatsApp", "Hallo")
    page.wait_for_function("() => document.querySelectorAll('.sa-out').length === 5")
    assert held.count() == 2

    db = get_engine(app.database_url)
    with unit_of_work(db, read_only=True) as uow:
        actor = system_actor(find_tenant(uow=uow, slug_or_id="demo").id)
        assert list_opt_outs(uow=uow, actor=actor, opted_out_only=False) == []
