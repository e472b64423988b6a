"""Settings > Channels in a real browser: an owner connects WhatsApp; the secrets are saved
(encrypted) and never come back in the page's HTML; the audit log says "changed"; the
outbox page renders. Screenshots go to test-artifacts/e2e (12-*.png)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import OWNER, App

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "EAAG-browser-secret-token-7788"
APP_SECRET = "browser-app-secret-5566"


@pytest.fixture
def app(page, app_url, artifacts) -> App:
    return App(page, app_url, artifacts)


def test_owner_connects_whatsapp_secrets_never_shown(app: App):
    page = app.page
    app.login(*OWNER)
    app.nav("Settings & users")
    app.tab("Channels")
    card = page.locator(".st-key-settings_ch_card_whatsapp")

    def field(name):
        return card.get_by_role("textbox", name=name)

    field("Phone number id").fill("1055")
    field("Phone number id").press("Tab")
    field("Access token (not set)").fill(TOKEN)
    field("App secret (not set)").fill(APP_SECRET)
    field("Verify token (not set)").fill("verify-abc")
    card.get_by_text("Send through this provider").click()
    card.get_by_role("button", name="Save").click()
    app.settle()
    card.get_by_text("Secrets are stored encrypted and are not shown again").wait_for()
    html = page.content()
    assert TOKEN not in html and APP_SECRET not in html and "verify-abc" not in html
    app.nav("Workflows")  # a reload would start a new (logged-out) session
    app.nav("Settings & users")
    app.tab("Channels")
    card = page.locator(".st-key-settings_ch_card_whatsapp")
    card.get_by_text("Access token (set on", exact=False).first.wait_for()
    assert TOKEN not in page.content()
    app.shot("12-settings-channels", height=2600)
    app.tab("Audit log")
    app.visible(page.get_by_test_id("stDataFrame")).first.wait_for()  # the grid draws on a canvas
    app.shot("12-settings-audit-log")
    assert TOKEN not in page.content()
    app.tab("Hours & limits")
    app.shot("12-settings-hours", height=1600)
    app.nav("Outbox")
    page.get_by_role("heading", name="Outbox").wait_for()
    app.shot("12-outbox")
