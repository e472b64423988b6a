"""Browser fixtures: a real ``streamlit run app.py`` on a free port and Debian's Chromium.

The server gets a fresh SQLite database (``python -m engine init`` first) and is stopped
at the end of the module. Without /usr/bin/chromium the tests skip with the reason, except
under CI=true, where they fail.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "test-artifacts")) / "e2e"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
OWNER = ("owner@demo.studio", "demo-owner-2026")
ANALYST = ("analyst@demo.studio", "analyst-pass-2026")
WAIT_MS = 60_000


@pytest.fixture(scope="session")
def chromium() -> str:
    if not os.path.exists(CHROMIUM):
        reason = f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true: browser tests must run")
        pytest.skip(reason)
    return CHROMIUM


def start_streamlit(port: int, env: dict, out) -> subprocess.Popen:
    """The app on 127.0.0.1:``port`` in its own process group, its output to ``out``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"streamlit did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


def _create_analyst(env: dict) -> None:
    code = (
        "from engine import services; from engine.security import auth; from engine.store.db import get_engine; "
        "from engine.uow import unit_of_work\n"
        "with unit_of_work(get_engine()) as uow:\n"
        "    t = services.find_tenant(uow=uow, slug_or_id='demo')\n"
        f"    u = auth.create_user(uow=uow, email={ANALYST[0]!r}, password={ANALYST[1]!r}, name='Analyst')\n"
        "    auth.add_membership(uow=uow, user_id=u.id, tenant_id=t.id, role='analyst')\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, chromium):
    """The app on a free port with a freshly initialised database; stopped afterwards."""
    tmp = tmp_path_factory.mktemp("e2e")
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
    _create_analyst(env)
    port = _free_port()
    log = tmp / "streamlit.log"
    with log.open("w") as out:
        proc = start_streamlit(port, env, out)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        os.environ["E2E_DATABASE_URL"] = env["DATABASE_URL"]  # tests may look rows up in the app's database
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class App:
    """Small helpers over Streamlit's DOM (test ids and labels), with generous waits."""

    def __init__(self, page, url: str, artifacts: Path):
        self.page, self.url, self.artifacts = page, url, artifacts
        self.database_url = os.environ.get("E2E_DATABASE_URL")

    def settle(self) -> None:
        """Wait until the script run finished (the running indicator is gone)."""
        self.page.wait_for_timeout(400)
        self.page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=WAIT_MS)
        self.page.wait_for_timeout(300)

    def shot(self, name: str, height: int | None = None) -> Path:
        """A screenshot from the top of the page (optionally with a taller window)."""
        size = self.page.viewport_size
        if height:
            self.page.set_viewport_size({"width": size["width"], "height": height})
        self.settle()
        # Widgets still loading show grey skeletons (a page's first render): wait for the real ones.
        self.page.locator("[data-testid='stSkeleton']").first.wait_for(state="detached", timeout=WAIT_MS)
        self.page.evaluate("""() => document.querySelectorAll('[data-testid="stMain"], section.main, [data-testid="stAppViewContainer"]')
                                       .forEach(el => el.scrollTo(0, 0))""")
        self.page.wait_for_timeout(300)
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if height:
            self.page.set_viewport_size(size)
            self.settle()
        return path

    def login(self, email: str, password: str) -> None:
        self.page.goto(self.url)
        self.page.get_by_label("E-mail").fill(email)
        self.page.get_by_role("textbox", name="Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("heading", name="Workflows").wait_for()
        self.settle()

    def nav(self, title: str) -> None:
        self.page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        self.settle()

    def visible(self, locator):
        return locator.locator("visible=true")

    def fill(self, label: str, text: str) -> None:
        field = self.visible(self.page.get_by_label(label, exact=True)).first
        field.fill(text)
        field.press("Tab")  # commit: Streamlit applies text on blur
        self.settle()

    def select(self, label: str, option: str, index: int = -1) -> None:
        """Pick ``option`` in the visible select labelled ``label`` (the last one, or ``index``)."""
        options = self.page.get_by_role("option", name=re.compile(re.escape(option)))
        for _ in range(5):  # a rerun may replace the widget between finding and clicking it
            box = self.visible(
                self.page.get_by_test_id("stSelectbox").filter(has=self.page.get_by_text(label, exact=True))
            ).nth(index)
            box.wait_for()
            box.get_by_role("button", name="Open").click()  # the combobox's chevron opens the list
            try:
                options.first.wait_for(timeout=5_000)
                break
            except Exception:  # noqa: BLE001 - the list did not open: try again
                self.page.keyboard.press("Escape")
                self.settle()
        options.first.click()
        self.settle()

    def click(self, name: str, exact: bool = True) -> None:
        self.visible(self.page.get_by_role("button", name=name, exact=exact)).first.click()
        self.settle()

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()
        self.settle()
