"""A slow loopback provider on 127.0.0.1: WhatsApp Cloud API sends and Twilio Messages (send
and list), each send taking a random 0.3-2 s, every request counted when it *arrives* (a
provider acts on a request even when the sender dies before the answer).

Used by ``bench/outbox_sends.py`` and the outbox tests (tests/integration/test_outbox_*.py):

* ``POST /<version>/<phone id>/messages`` (JSON, WhatsApp) -> ``{"messages": [{"id": "wamid.N"}]}``;
  our reference is the request's ``biz_opaque_callback_data``.
* ``POST /2010-04-01/Accounts/<sid>/Messages.json`` (form, Twilio) -> 201 ``{"sid": "SMN", ...}``;
  Twilio carries no reference of ours, so a Twilio send is keyed by its body.
* ``GET /2010-04-01/Accounts/<sid>/Messages.json?To=..`` -> the messages to that number, newest
  first, with ``body``, ``sid``, ``status`` and ``date_created`` in Twilio's RFC 2822 form.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Send:
    """One send request as the provider received it."""

    channel: str
    key: str  # our reference (WhatsApp) or the body (Twilio)
    to: str
    body: str
    provider_id: str
    at: datetime


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender killed mid-request resets its connection: expected here, not worth a traceback


class LoopbackProvider:
    """``delay``: (low, high) seconds per send, uniform, from a seeded generator. ``before_answer``:
    called with the :class:`Send` after the delay, before the answer is written (a test applies
    a status callback there: a report that beats the answer)."""

    def __init__(
        self,
        *,
        delay: tuple[float, float] = (0.3, 2.0),
        seed: int = 21,
        before_answer: Callable[[Send], None] | None = None,
    ) -> None:
        self.delay = delay
        self.sends: list[Send] = []
        self.lookups = 0
        self.busy_seconds = 0.0
        self.before_answer = before_answer
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlsplit(self.path).path
                if path.endswith("/messages"):
                    data = json.loads(raw or b"{}")
                    text = (data.get("text") or {}).get("body") or ""
                    send = provider._record(
                        "whatsapp", data.get("biz_opaque_callback_data") or text, data.get("to"), text
                    )
                    answer: tuple[int, Any] = (200, {"messages": [{"id": send.provider_id}]})
                elif path.endswith("/Messages.json"):
                    form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    send = provider._record("sms", form.get("Body", ""), form.get("To", ""), form.get("Body", ""))
                    answer = (201, {"sid": send.provider_id, "status": "queued"})
                else:
                    self._answer(404, {"message": "not found"})
                    return
                time.sleep(provider._next_delay())
                if provider.before_answer is not None:
                    provider.before_answer(send)
                self._answer(*answer)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if not url.path.endswith("/Messages.json"):
                    self._answer(404, {"message": "not found"})
                    return
                to = (parse_qs(url.query).get("To") or [""])[0]
                self._answer(200, {"messages": provider.twilio_list(to)})

            def _answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the sender went away (killed) before the answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _next_delay(self) -> float:
        with self._lock:
            delay = self._random.uniform(*self.delay)
            self.busy_seconds += delay
            return delay

    def _record(self, channel: str, key: str, to: str | None, body: str) -> Send:
        with self._lock:
            prefix = "wamid.loop" if channel == "whatsapp" else "SMloop"
            send = Send(channel, key, to or "", body, f"{prefix}{len(self.sends) + 1}", datetime.now(UTC))
            self.sends.append(send)
            return send

    def twilio_list(self, to: str) -> list[dict[str, Any]]:
        with self._lock:
            self.lookups += 1
            found = [s for s in self.sends if s.channel == "sms" and s.to == to]
        return [
            {
                "sid": s.provider_id,
                "to": s.to,
                "body": s.body,
                "status": "sent",
                "date_created": format_datetime(s.at.replace(microsecond=0), usegmt=True),
            }
            for s in reversed(found)
        ]

    def counts(self) -> Counter[str]:
        """Requests per key (our reference for WhatsApp, the body for Twilio)."""
        with self._lock:
            return Counter(s.key for s in self.sends)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LoopbackProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
