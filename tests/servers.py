"""Small local servers for tests: an HTTP receiver that records requests and answers from a
queue, and an SMTP sink. Both listen on 127.0.0.1 on a free port and stop at the end."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass
class Recorded:
    """One request: attributes or ``request["body"]``; headers are case-insensitive."""

    method: str
    path: str
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass
class Receiver:
    """Answers each request with the next queued (status, json, headers), default 200 {"ok": true}.

    ``statuses`` is a shortcut: answer these statuses in turn (the last one repeats).
    """

    statuses: tuple[int, ...] | list[int] = ()
    requests: list[Recorded] = field(default_factory=list)
    responses: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self
        self.statuses = list(self.statuses)

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.requests.append(
                    Recorded(self.command, self.path, httpx.Headers(list(self.headers.items())), body)
                )
                status, payload, headers = receiver._next_response()
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _next_response(self) -> tuple[int, Any, dict[str, str]]:
        if self.responses:
            return self.responses.pop(0)
        if self.statuses:
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return status, {"ok": status < 300}, {}
        return 200, {"ok": True}, {}

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def hook_url(self) -> str:
        return self.url + "/hook"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
