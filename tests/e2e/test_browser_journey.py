"""Real-browser journeys: build a branching workflow, find it, switch it off and on, delete
it through the dialog; an analyst sees no edit controls. Screenshots go to test-artifacts/e2e."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from engine.uow import unit_of_work
from tests.e2e.conftest import ANALYST, OWNER, App

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NAME = "Class Question Router"
MISSED_CALL = "Verpasster Anruf: WhatsApp nach 5 Minuten"  # the demo studio's missed-call workflow


@pytest.fixture
def app(page, app_url, artifacts) -> App:
    return App(page, app_url, artifacts)


def _row(app: App, name: str):
    title = app.page.locator(".sa-title").get_by_text(name, exact=True)
    return app.page.locator("[class*='st-key-card_wf_']").filter(has=title)


def _menu_item(app: App, workflow: str, item: str):
    """Open a workflow's "⋯" menu and return its ``item`` entry.

    The menu opens in the browser alone (no rerun). The toggle is clicked again only when
    the menu is observably still closed (a click that landed while Streamlit replaced the
    row can be lost): never a second blind click that would close a menu that was just slow.
    """
    toggle = _row(app, workflow).get_by_test_id("stMenuButtonButton").first
    entry = app.page.get_by_role("menuitem", name=item, exact=True)
    for _ in range(3):
        app.settle()
        if toggle.get_attribute("aria-expanded") != "true":
            toggle.click()
        try:
            entry.wait_for(timeout=10_000)
            return entry
        except PlaywrightTimeout:
            continue
    entry.wait_for()
    return entry


def _flip(app: App, workflow: str, now: str, then: str) -> None:
    """Flip a workflow's on/off switch labelled ``now`` and wait for the saved state ``then``.

    The browser flips the switch's checked state at once; only a click that observably did
    not flip it (lost while Streamlit replaced the row) is repeated.
    """
    switch = _row(app, workflow).get_by_role("switch", name=now)
    for _ in range(3):
        app.settle()
        before = switch.is_checked()
        switch.click(force=True)  # the input hides behind its label
        try:
            expect(switch).to_be_checked(checked=not before, timeout=5_000)
            break
        except AssertionError:
            if _row(app, workflow).get_by_role("switch", name=then).count():
                break  # already saved and re-rendered with the new label
    app.settle()
    _row(app, workflow).get_by_role("switch", name=then).wait_for(state="attached")


def _menu_closed(app: App) -> None:
    """No "⋯" menu is open (none covers a dialog)."""
    expect(app.page.get_by_test_id("stMenuButtonBody")).to_have_count(0)
    expect(app.page.locator("[data-testid='stMenuButtonButton'][aria-expanded='true']")).to_have_count(0)


def test_owner_builds_a_branching_workflow_toggles_and_deletes_it(app: App):
    page = app.page
    page.goto(app.url)
    page.get_by_role("button", name="Sign in").wait_for()
    app.shot("01-login")
    app.login(*OWNER)
    app.shot("02-workflows")

    app.click("New workflow")
    page.get_by_role("heading", name="New workflow").wait_for()
    app.fill("Name", NAME)
    app.fill("Description (optional)", "Price questions get the price list by SMS, everything else a WhatsApp reply")

    app.tab("② Trigger")
    assert (
        app.visible(page.get_by_label("Channel", exact=True)).first.input_value() == "💬 WhatsApp"
    )  # the default, fixed
    app.select("When this happens", "Schedule")
    page.get_by_text("Next runs:").wait_for()
    app.shot("03-builder-trigger-schedule", height=1100)
    app.select("When this happens", "WhatsApp message")

    app.tab("④ Actions")
    for action in ("Branch", "Send WhatsApp", "Send SMS"):
        app.select("Add an action", action)
        app.click("Add action")
    app.select("Add a condition", "Keyword in message")
    app.click("Add")
    app.fill("Keyword(s)", "preis, price")
    app.select("If they hold, jump to", "sms-1")
    app.select("Then", "End the run", index=1)  # the WhatsApp reply ends the run; only "yes" reaches the SMS
    messages = app.visible(page.get_by_label("Message", exact=True))
    messages.nth(0).fill("Danke für deine Nachricht, {{trigger.from}}! Wir melden uns gleich.")
    messages.nth(0).press("Tab")
    app.settle()
    messages.nth(1).fill("Unsere Preise: 10er-Karte 120 €, Monatsabo 59 €.")
    messages.nth(1).press("Tab")
    app.settle()
    app.visible(page.get_by_text("No problems: ready to save.")).first.wait_for()
    app.shot("04-builder-actions-branch", height=2400)

    app.tab("⑤ Review & save")
    app.click("Save workflow")
    page.get_by_text(re.compile("Saved “Class Question Router” as version 1. It is off")).wait_for()
    assert "id=" in page.url  # the address names the workflow: a reload brings it back
    app.shot("05-builder-saved")

    page.get_by_role("radio", name="JSON", exact=True).click()
    app.settle()
    page.frame_locator("iframe").first.locator(".ace_content").wait_for()
    app.shot("06-builder-json-mode")

    app.nav("Workflows")
    app.fill("Search", "Class Question")
    row = _row(app, NAME)
    row.wait_for()
    app.shot("07-workflow-saved-as-draft")
    _flip(app, NAME, "Off", "On")  # saved as a draft: switch it on, then off again
    _flip(app, NAME, "On", "Off")

    _menu_item(app, NAME, "Delete").click()
    dialog = page.get_by_test_id("stDialog")
    dialog.get_by_text("cannot be undone").wait_for()
    _menu_closed(app)
    app.shot("08-delete-dialog")
    dialog.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_text(f"Deleted “{NAME}”.").wait_for()
    app.settle()
    assert _row(app, NAME).count() == 0


def test_owner_runs_a_workflow_and_reads_its_step_trace(app: App):
    page = app.page
    app.login(*OWNER)
    _menu_item(app, MISSED_CALL, "Run now").click()
    dialog = page.get_by_test_id("stDialog")
    dialog.get_by_text("Dry run").wait_for()
    _menu_closed(app)  # the menu closed for the dialog (issue 14): it covered the dialog's fields
    dialog.get_by_role("button", name="Run now").click()
    dialog.get_by_text("Step trace").wait_for()
    app.shot("09-run-now-trace", height=1200)
    page.keyboard.press("Escape")
    app.settle()


def test_every_page_renders_for_the_owner(app: App):
    app.login(*OWNER)
    for n, (title, heading) in enumerate(
        [
            ("Templates", "Templates"),
            ("Version history", "Version history"),
            ("Executions", "Executions"),
            ("Settings & users", "Settings & users"),
        ],
        10,
    ):
        app.nav(title)
        app.page.get_by_role("heading", name=heading).first.wait_for()
        app.shot(f"{n:02d}-{title.lower().replace(' & ', '-').replace(' ', '-')}")


def test_analyst_sees_no_edit_controls(app: App):
    page = app.page
    app.login(*ANALYST)
    app.shot("14-analyst-workflows")
    nav = page.get_by_test_id("stSidebarNav")
    assert nav.get_by_text("Builder", exact=True).count() == 0
    assert nav.get_by_text("Settings & users", exact=True).count() == 0
    assert page.get_by_role("button", name="New workflow").count() == 0
    assert page.get_by_role("switch").count() == 0
    _menu_item(app, MISSED_CALL, "Version history")
    entries = [e.strip() for e in page.get_by_role("menuitem").all_inner_texts()]
    assert [e.split()[-1] for e in entries] == ["JSON", "history"], entries  # Export JSON, Version history only
    for forbidden in ("Edit", "Run now", "Duplicate", "Delete"):
        assert page.get_by_role("menuitem", name=forbidden, exact=True).count() == 0
    page.keyboard.press("Escape")
    _menu_closed(app)


def test_reload_and_second_tab_keep_the_owner_signed_in_until_sign_out(app: App):
    page = app.page
    app.login(*OWNER)
    page.reload()
    page.get_by_role("heading", name="Workflows").wait_for()
    app.settle()
    assert page.get_by_role("button", name="Sign in").count() == 0
    second = page.context.new_page()
    second.goto(app.url + "/templates")
    second.get_by_role("heading", name="Templates").wait_for()
    second.close()
    app.page.get_by_role("button", name="Log out").click()
    app.settle()
    page.get_by_role("button", name="Sign in").wait_for()
    page.reload()
    page.get_by_role("button", name="Sign in").wait_for()  # the session ended on the server, not only in this tab


def test_a_direct_link_opens_its_page_after_sign_in(app: App):
    from engine import services
    from engine.security.auth import system_actor
    from engine.store.db import get_engine

    page = app.page
    page.goto(app.url + "/builder")
    page.get_by_role("button", name="Sign in").wait_for()
    assert page.get_by_text("Page not found").count() == 0
    app.shot("15-deep-link-sign-in")
    page.get_by_label("E-mail").fill(OWNER[0])
    page.get_by_role("textbox", name="Password").fill(OWNER[1])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="New workflow").wait_for()
    app.settle()
    assert page.url.rstrip("/").endswith("/builder")

    db = get_engine(app.database_url)
    with unit_of_work(db, read_only=True) as uow:
        tenant = services.find_tenant(uow=uow, slug_or_id="demo")
    with unit_of_work(db, read_only=True) as uow:
        wf = services.list_workflows(uow=uow, actor=system_actor(tenant.id), search="Verpasster Anruf").items[0]
    page.goto(f"{app.url}/builder?id={wf.id}")
    page.get_by_role("heading", name=re.compile("Edit · Verpasster Anruf")).wait_for()
    app.settle()
    app.shot("16-deep-link-builder-after-reload", height=1200)


def test_problems_show_next_to_their_fields_and_groups_are_spelled_out(app: App):
    page = app.page
    app.login(*OWNER)
    app.click("New workflow")
    page.get_by_role("heading", name="New workflow").wait_for()
    app.tab("④ Actions")
    app.select("Add an action", "Send WhatsApp")
    app.click("Add action")
    card = page.locator("[class*='st-key-card_builder_'][class*='_actions_0']").first
    card.get_by_text("The message: write what the member should receive.").wait_for()
    messages = app.visible(page.get_by_label("Message", exact=True))
    messages.first.fill("Hallo {{trigger.name}}, danke für deine Nachricht!")
    messages.first.press("Tab")
    app.settle()
    card.get_by_text(re.compile("Did you mean trigger.from")).wait_for()
    card.get_by_text("Variables you can use here").click()
    app.settle()
    app.shot("14-builder-problem-next-to-field", height=1500)

    app.tab("③ Conditions")
    app.select("Add a condition", "Group: any of")
    app.click("Add")
    page.get_by_text(re.compile("This “any of” group is empty")).first.wait_for()
    app.select("Add a condition to this group", "Keyword in message")
    app.click("Add", exact=True)
    app.fill("Keyword(s)", "preis")
    app.select("Add a condition to this group", "Detected intent")
    app.visible(page.get_by_role("button", name="Add", exact=True)).nth(0).click()
    app.settle()
    app.select("Intent", "Pricing")
    app.shot("14-builder-condition-group", height=1500)
    app.tab("⑤ Review & save")
    app.visible(page.get_by_text(re.compile("keyword “preis” or intent is pricing"))).first.wait_for()
    app.shot("14-builder-review-group", height=1200)


def test_adding_a_template_saves_a_draft_with_a_link_to_the_builder(app: App):
    page = app.page
    app.login(*OWNER)
    app.nav("Templates")
    app.visible(page.get_by_role("button", name="Add as draft")).first.click()
    app.settle()
    page.get_by_text(re.compile("as a draft: it is off")).wait_for()
    app.shot("14-templates-added-as-draft")
    page.get_by_role("link", name="Open it in the builder").click()
    page.get_by_role("heading", name=re.compile("^Edit · ")).wait_for()
    app.settle()
