"""call_webhook against a real local HTTP server on 127.0.0.1."""

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from engine.errors import BlockedAddress, PermanentError, RetryableError
from engine.outbound.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, call_webhook, verify_signature

SECRET = "whsec_local"
NOW = 1_700_000_000


class Receiver:
    """Threaded HTTP server recording requests; ``routes[path] = (status, headers, body, delay)``."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.requests = []
        self.routes = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                status, headers, payload, delay = receiver.routes.get(
                    self.path.split("?")[0], (200, {"Content-Type": "application/json"}, b'{"ok":true}', 0)
                )
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def allow(receiver):
    return [f"127.0.0.1:{receiver.port}"]


def test_post_json_signed(receiver, allow):
    payload = {"event": "booking.created", "name": "Grüße", "n": [1, 2]}
    result = call_webhook(
        url=receiver.url + "/hook?x=1",
        body=payload,
        secret=SECRET,
        allow_list=allow,
        headers={"X-Custom": "yes"},
        now=NOW,
    )
    assert result == {
        "status": 200,
        "headers": {"content-type": "application/json"},
        "body": {"ok": True},
        "truncated": False,
        "url": receiver.url + "/hook?x=1",
    }
    (req,) = receiver.requests
    assert req["method"] == "POST" and req["path"] == "/hook?x=1"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["X-Custom"] == "yes"
    assert req["headers"]["Host"] == f"127.0.0.1:{receiver.port}"
    assert req["headers"][TIMESTAMP_HEADER] == str(NOW)
    assert json.loads(req["body"]) == payload
    assert verify_signature(SECRET, req["headers"][SIGNATURE_HEADER], req["body"], now=NOW + 10)
    assert not verify_signature(SECRET, req["headers"][SIGNATURE_HEADER], req["body"], now=NOW + 1000)


def test_text_body_and_no_secret(receiver, allow):
    receiver.routes["/t"] = (201, {"Content-Type": "text/plain", "X-Request-Id": "r-1", "X-Other": "no"}, b"created", 0)
    result = call_webhook(url=receiver.url + "/t", method="put", body="hallo", secret=None, allow_list=allow)
    assert result["status"] == 201 and result["body"] == "created"
    assert result["headers"] == {"content-type": "text/plain", "x-request-id": "r-1"}
    (req,) = receiver.requests
    assert req["method"] == "PUT" and req["body"] == b"hallo"
    assert req["headers"]["Content-Type"].startswith("text/plain")
    assert SIGNATURE_HEADER not in req["headers"] and TIMESTAMP_HEADER not in req["headers"]


def test_get_without_body(receiver, allow):
    call_webhook(url=receiver.url + "/g", method="GET", secret=SECRET, allow_list=allow, now=NOW)
    (req,) = receiver.requests
    assert req["method"] == "GET" and req["body"] == b""
    assert verify_signature(SECRET, req["headers"][SIGNATURE_HEADER], b"", now=NOW)


def test_large_body_truncated(receiver, allow):
    receiver.routes["/big"] = (200, {"Content-Type": "application/json"}, b'"' + b"a" * 100_000 + b'"', 0)
    result = call_webhook(url=receiver.url + "/big", secret=None, allow_list=allow)
    assert result["truncated"] is True
    assert isinstance(result["body"], str) and len(result["body"]) == 64 * 1024


def test_429_retry_after_seconds(receiver, allow):
    receiver.routes["/busy"] = (429, {"Retry-After": "42"}, b"slow down", 0)
    with pytest.raises(RetryableError) as info:
        call_webhook(url=receiver.url + "/busy", body={}, secret=None, allow_list=allow)
    assert info.value.retry_after == 42.0
    assert "429" in str(info.value)


def test_503_retry_after_http_date(receiver, allow):
    receiver.routes["/down"] = (503, {"Retry-After": "Tue, 14 Nov 2023 22:15:20 GMT"}, b"", 0)  # NOW + 120
    with pytest.raises(RetryableError) as info:
        call_webhook(url=receiver.url + "/down", secret=None, allow_list=allow, now=NOW)
    assert info.value.retry_after == 120.0


def test_500_retryable(receiver, allow):
    receiver.routes["/err"] = (500, {"Content-Type": "application/json"}, b'{"error":"boom"}', 0)
    with pytest.raises(RetryableError) as info:
        call_webhook(url=receiver.url + "/err", secret=None, allow_list=allow)
    assert info.value.retry_after is None
    assert info.value.details["response"]["body"] == {"error": "boom"}


def test_404_permanent_with_response(receiver, allow):
    receiver.routes["/missing"] = (404, {"Content-Type": "text/plain"}, b"no such hook", 0)
    with pytest.raises(PermanentError) as info:
        call_webhook(url=receiver.url + "/missing", secret=None, allow_list=allow)
    assert not isinstance(info.value, RetryableError)
    assert "404" in str(info.value) and "no such hook" in str(info.value)
    assert info.value.details["response"]["status"] == 404


def test_timeout_is_retryable(receiver, allow):
    """The server answers only after 1 s: with a 0.2 s timeout the call gives up (a call that waited
    would have returned the 200) and says so."""
    receiver.routes["/slow"] = (200, {}, b"late", 1.0)
    with pytest.raises(RetryableError, match="timed out"):
        call_webhook(url=receiver.url + "/slow", secret=None, allow_list=allow, timeout=0.2)


def test_connection_refused_is_retryable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryableError):
        call_webhook(url=f"http://127.0.0.1:{port}/", secret=None, allow_list=["127.0.0.1"], timeout=1)


def test_redirects_followed_and_checked(receiver, allow):
    receiver.routes["/a"] = (307, {"Location": "/b"}, b"", 0)
    receiver.routes["/b"] = (303, {"Location": receiver.url + "/c"}, b"", 0)
    result = call_webhook(url=receiver.url + "/a", body={"x": 1}, secret=SECRET, allow_list=allow, now=NOW)
    assert result["url"] == receiver.url + "/c" and result["status"] == 200
    methods = [(r["method"], r["path"], r["body"]) for r in receiver.requests]
    assert methods == [("POST", "/a", b'{"x":1}'), ("POST", "/b", b'{"x":1}'), ("GET", "/c", b"")]
    last = receiver.requests[-1]
    assert verify_signature(SECRET, last["headers"][SIGNATURE_HEADER], b"", now=NOW)


def test_too_many_redirects(receiver, allow):
    receiver.routes["/loop"] = (302, {"Location": "/loop"}, b"", 0)
    with pytest.raises(PermanentError, match="redirected more than 5"):
        call_webhook(url=receiver.url + "/loop", method="GET", secret=None, allow_list=allow)
    assert len(receiver.requests) == 6


def test_final_3xx_without_location_is_returned(receiver, allow):
    receiver.routes["/nm"] = (304, {}, b"", 0)
    assert call_webhook(url=receiver.url + "/nm", method="GET", secret=None, allow_list=allow)["status"] == 304


# ------------------------------------------------------------------ SSRF


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/",
    ],
)
def test_internal_refused_without_allow_list(receiver, url):
    with pytest.raises(BlockedAddress):
        call_webhook(url=url.format(port=receiver.port), secret=None, timeout=1)
    assert receiver.requests == []


def test_hostname_resolving_to_loopback_refused(receiver):
    def resolver(host, port, *a, **k):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    with pytest.raises(BlockedAddress, match="rebind.example"):
        call_webhook(url=f"http://rebind.example:{receiver.port}/", secret=None, resolver=resolver)
    assert receiver.requests == []


def test_redirect_to_metadata_refused(receiver, allow):
    receiver.routes["/r"] = (302, {"Location": "http://169.254.169.254/latest/meta-data/iam/"}, b"", 0)
    with pytest.raises(BlockedAddress, match="169.254.169.254"):
        call_webhook(url=receiver.url + "/r", method="GET", secret=None, allow_list=allow, timeout=1)
    assert [r["path"] for r in receiver.requests] == ["/r"]


def test_allow_listed_hostname_connects_to_checked_address(receiver):
    calls = []

    def resolver(host, port, *a, **k):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    url = f"http://crm.local:{receiver.port}/in"
    result = call_webhook(url=url, body={"a": 1}, secret=None, allow_list=["crm.local"], resolver=resolver)
    assert result["status"] == 200 and result["url"] == url
    assert calls == ["crm.local"]  # resolved once, then connected to that address
    assert receiver.requests[0]["headers"]["Host"] == f"crm.local:{receiver.port}"


def test_authorization_dropped_on_cross_origin_redirect(receiver):
    other = Receiver()
    try:
        receiver.routes["/x"] = (307, {"Location": other.url + "/y"}, b"", 0)
        call_webhook(
            url=receiver.url + "/x",
            headers={"Authorization": "Bearer abc"},
            body={},
            secret=None,
            allow_list=["127.0.0.1"],
        )
        assert receiver.requests[0]["headers"]["Authorization"] == "Bearer abc"
        assert "Authorization" not in other.requests[0]["headers"]
    finally:
        other.close()


# ------------------------------------------------------------------ HTTPS with a pinned address


@pytest.fixture
def tls_receiver(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not available to create a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=hooks.test",
            "-addext",
            "subjectAltName=DNS:hooks.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    r = Receiver(tls=server_ctx)
    yield r, ssl.create_default_context(cafile=str(cert))
    r.close()


def loopback_resolver(host, port, *a, **k):
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def test_https_pinned_ip_keeps_sni_and_certificate_check(tls_receiver):
    receiver, client_ctx = tls_receiver
    with httpx.Client(verify=client_ctx, trust_env=False) as client:
        result = call_webhook(
            url=f"https://hooks.test:{receiver.port}/s",
            body={"a": 1},
            secret=SECRET,
            now=NOW,
            allow_list=["hooks.test"],
            resolver=loopback_resolver,
            client=client,
        )
        assert result["status"] == 200
        assert receiver.requests[0]["headers"]["Host"] == f"hooks.test:{receiver.port}"
        # a host name the certificate does not cover fails verification even though the IP is the same
        with pytest.raises(RetryableError):
            call_webhook(
                url=f"https://other.test:{receiver.port}/s",
                secret=None,
                allow_list=["other.test"],
                resolver=loopback_resolver,
                client=client,
            )
    assert len(receiver.requests) == 1
