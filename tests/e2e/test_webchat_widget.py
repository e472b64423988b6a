"""The web chat widget in a real browser: a studio website on one loopback port embeds
``widget.js`` from the API (uvicorn) on another; a visitor's message runs a web_chat
workflow and its reply appears in the chat box. Origins not on the allow-list are refused.
The conversation's id and token come from ``crypto.getRandomValues``; a browser that knows
the id but not the token sees none of its replies."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import uvicorn
from cryptography.fernet import Fernet

from engine import services
from engine.api import create_app
from engine.inbound import webchat
from engine.security.auth import system_actor
from engine.services import channel_settings as cs
from engine.settings import get_settings
from engine.uow import unit_of_work
from tests.e2e.conftest import ARTIFACTS
from tests.servers import free_port


@pytest.fixture(autouse=True)
def secret_key(monkeypatch):
    monkeypatch.setenv("STUDIO_SECRET_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def api(sqlite_db):
    server = uvicorn.Server(
        uvicorn.Config(create_app(sqlite_db), host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


def _website(html: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            data = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_widget_chat_round_trip(sqlite_db, api, browser):
    db = sqlite_db
    with unit_of_work(db) as uow:
        tenant = services.create_tenant(uow=uow, slug="yoga-nord", name="Yoga Nord")
    actor = system_actor(tenant.id)
    with unit_of_work(db) as uow:
        services.create_workflow(
            uow=uow,
            actor=actor,
            data={
                "name": "Chat answer",
                "trigger": {"type": "web_chat", "config": {}},
                "conditions": [],
                "actions": [
                    {
                        "id": "reply",
                        "type": "send_message",
                        "config": {"message": "Namaste! Du fragtest: {{trigger.content}}"},
                        "nextActionId": None,
                    }
                ],
            },
        )
    with unit_of_work(db) as uow:
        key = cs.chat_key(uow=uow, actor=actor)
    html = (
        f"<!doctype html><html><head><title>Yoga Nord</title></head><body><h1>Yoga Nord</h1>"
        f'<p>Welcome to our studio.</p><script src="{api}/widget.js" data-studio="{key}" async></script></body></html>'
    )
    site = _website(html)
    other = _website(html)
    site_url = f"http://127.0.0.1:{site.server_address[1]}"
    with unit_of_work(db) as uow:
        webchat.save_web_chat(uow=uow, actor=actor, allowed_origins=[site_url])
    page = browser.new_page()
    # Record what crypto.getRandomValues hands out, and make Math.random useless as a source.
    page.add_init_script(
        """window.__random = []; Math.random = () => 0.5;
        const real = crypto.getRandomValues.bind(crypto);
        crypto.getRandomValues = (a) => { const r = real(a);
          window.__random.push(Array.from(r, b => b.toString(16).padStart(2, "0")).join("")); return r; };"""
    )
    try:
        page.goto(site_url + "/")
        page.click("#sa-chat-open")
        page.fill("#sa-chat-input", "Gibt es morgen Yin Yoga?")
        page.click("#sa-chat-send")
        reply = page.locator(".sa-chat-reply")
        reply.first.wait_for(timeout=20_000)
        assert "Namaste! Du fragtest: Gibt es morgen Yin Yoga?" in reply.first.inner_text()
        assert page.locator(".sa-chat-mine").count() == 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "12-webchat-widget.png"))
        chat = json.loads(page.evaluate(f"localStorage.getItem('sa-chat2-{key}')"))
        drawn = page.evaluate("window.__random")
        assert re.fullmatch(r"c[0-9a-f]{32}", chat["id"]) and re.fullmatch(r"[0-9a-f]{64}", chat["token"])
        assert chat["id"][1:] in drawn and chat["token"] in drawn  # both straight from getRandomValues
        # The API answers the holder of the token, and nobody who only knows the id.
        url = f"{api}/chat/{key}/messages"
        query = {"conversationId": chat["id"]}
        mine = httpx.get(url, params=query, headers={"Origin": site_url, "X-Chat-Token": chat["token"]})
        assert mine.status_code == 200 and "Namaste" in mine.text
        theirs = httpx.get(url, params=query, headers={"Origin": site_url, "X-Chat-Token": "f" * 64})
        assert theirs.status_code == 404 and "Namaste" not in theirs.text
        # A second browser that learned the id but holds another token sees none of the replies;
        # when it writes, the widget starts a conversation of its own.
        snooper = browser.new_context()
        snooper.add_init_script(
            f"localStorage.setItem('sa-chat2-{key}', "
            f"JSON.stringify({{id: {chat['id']!r}, token: '{'e' * 64}', started: true}}))"
        )
        other_tab = snooper.new_page()
        other_tab.goto(site_url + "/")
        other_tab.click("#sa-chat-open")
        other_tab.wait_for_timeout(2500)  # a poll has run
        assert other_tab.locator(".sa-chat-reply").count() == 0
        other_tab.fill("#sa-chat-input", "Hallo?")
        other_tab.click("#sa-chat-send")
        other_tab.locator(".sa-chat-reply").first.wait_for(timeout=20_000)
        assert [t.strip() for t in other_tab.locator(".sa-chat-reply").all_inner_texts()] == [
            "Namaste! Du fragtest: Hallo?"
        ]
        own = json.loads(other_tab.evaluate(f"localStorage.getItem('sa-chat2-{key}')"))
        assert own["id"] != chat["id"] and own["token"] != "e" * 64
        snooper.close()
        # The same page from an origin that is not on the allow-list: refused with a clear message.
        page.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        page.click("#sa-chat-open")
        page.fill("#sa-chat-input", "Hallo?")
        page.click("#sa-chat-send")
        page.wait_for_function("document.querySelector('#sa-chat-status').textContent.length > 0", timeout=20_000)
        assert page.locator(".sa-chat-reply").count() == 0
    finally:
        page.close()
        site.shutdown()
        other.shutdown()
