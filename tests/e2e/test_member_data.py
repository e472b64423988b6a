"""Browser: the owner finds a member's data on the settings page, downloads it, erases it after
the confirmation dialog, and sees the retention and opt-out cards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import OWNER, ROOT, App, _free_port, _stop, _wait_until_up, start_streamlit

PHONE = "+4915112345678"
SEED = f"""
from engine import services
from engine.security.auth import system_actor
from engine.runner import Runner
from engine.store.db import get_engine
from engine.uow import unit_of_work
db = get_engine()
with unit_of_work(db) as uow:
    t = services.find_tenant(uow=uow, slug_or_id='demo')
    services.create_workflow(uow=uow, actor=system_actor(t.id), data={{"name": "Echo", "trigger": {{"type": "whatsapp_message", "config": {{}}}},
        "conditions": [], "actions": [{{"id": "r", "type": "send_whatsapp", "config": {{"message": "Du schriebst: {{{{trigger.content}}}}"}}}}]}})
r = Runner(db)
r.ingest(t.id, {{"triggerType": "whatsapp_message", "channel": "whatsapp", "from": "{PHONE}", "content": "Mein Knie tut weh"}})
r.ingest(t.id, {{"triggerType": "whatsapp_message", "channel": "whatsapp", "from": "+4917099887766", "content": "STOP"}})
"""


@pytest.fixture(scope="module")
def data_url(tmp_path_factory, chromium):
    tmp = tmp_path_factory.mktemp("e2e-data")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp / 'studio.db'}",
        "STUDIO_DEMO_EMAIL": OWNER[0],
        "STUDIO_DEMO_PASSWORD": OWNER[1],
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run(
        [sys.executable, "-m", "engine", "init"], cwd=ROOT, env=env, check=True, timeout=120, capture_output=True
    )
    subprocess.run([sys.executable, "-c", SEED], cwd=ROOT, env=env, check=True, timeout=120)
    port = _free_port()
    log = tmp / "streamlit.log"
    with log.open("w") as out:
        proc = start_streamlit(port, env, out)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield url
    finally:
        _stop(proc)


def test_owner_exports_and_erases_a_member(page, data_url, artifacts):
    app = App(page, data_url, artifacts)
    app.login(*OWNER)
    app.nav("Settings & users")
    app.tab("Data & privacy")
    page.get_by_role("heading", name="A member's data").wait_for()
    app.fill("Phone number", "0151 12345678")
    app.click("Find and export")
    page.get_by_text("stored row(s)").wait_for()
    with page.expect_download() as download:
        app.click("Download JSON")
    doc = json.loads(download.value.path().read_text(encoding="utf-8"))
    assert doc["contact"]["value"] == PHONE and "Mein Knie tut weh" in json.dumps(doc, ensure_ascii=False)
    page.get_by_role("heading", name="A member's data").scroll_into_view_if_needed()
    app.shot("16-settings-member-data", height=2600)
    app.click("Erase…")
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("This cannot be undone").wait_for()
    assert dialog.get_by_role("button", name="Erase", exact=True).is_disabled()
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "16-erase-dialog.png"))
    dialog.get_by_text("I have exported").click()
    app.settle()
    dialog.get_by_role("button", name="Erase", exact=True).click()
    app.settle()
    page.get_by_text("Erased").first.wait_for()
    page.get_by_text("Erasures done").wait_for()
    # Opt-outs: the member who wrote STOP is listed.
    page.get_by_text("+4917099887766").first.wait_for(state="attached")  # a dataframe cell (drawn on a canvas)
