"""Outgoing webhooks: signing, SSRF guard, one-attempt HTTP call (retry helpers: :mod:`engine.outbound.retry`).

Verifying our signature on your server
--------------------------------------
Every webhook carries ``X-Studio-Timestamp: <unix seconds>`` and
``X-Studio-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is the HMAC-SHA256 (key: the
webhook's secret) of ``"<t>." + raw request body``. Check it against the RAW body bytes,
before parsing JSON, and reject old timestamps to stop replays::

    import hashlib, hmac, time

    def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            ts = int(parts["t"])
        except (KeyError, ValueError):
            return False
        if abs(time.time() - ts) > tolerance:
            return False
        expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts.get("v1", ""))

SSRF guard and allow-list format
--------------------------------
URLs must be ``http``/``https``. The host is resolved and the call is refused
(:class:`~engine.errors.BlockedAddress`) if ANY resolved address is not globally routable:
loopback, private (RFC 1918, ``fc00::/7``), link-local, multicast, unspecified, reserved,
shared (``100.64.0.0/10``), documentation ranges, cloud metadata (``169.254.169.254``,
``fd00:ec2::254``, ``100.100.100.200``), including such addresses embedded in IPv4-mapped,
6to4, Teredo and NAT64 IPv6 addresses.

Allow-list entries (strings, case-insensitive) lift the block:

* ``"crm.local"`` - a host name: that host on any port, whatever it resolves to;
  ``"*.studio.internal"`` matches any sub-domain (not the bare domain);
* ``"127.0.0.1"``, ``"::1"`` - an address; ``"10.0.0.0/8"``, ``"fd00::/8"`` - a network: any host
  whose resolved addresses all fall in allowed entries;
* any of the above with ``":port"`` (IPv6 as ``"[::1]:8080"``) - only that port;
  e.g. ``"localhost:8080"``.

Cloud-metadata addresses are only reachable if the allow-list names the exact address (a
host name or a network containing it is not enough).

DNS rebinding: :func:`call_webhook` resolves each hop ONCE, checks every address, then connects
to the checked address (URL rewritten to the IP, ``Host`` header and TLS SNI/certificate
verification use the original host name), so a second, different DNS answer cannot be used.
Environment proxies are ignored (``trust_env=False``) for the same reason, and every request
is sent with ``Connection: close`` and (unless a client is injected) a fresh client per hop, so
no pooled connection keyed by IP is reused for a different host name. Redirects are
followed manually (at most 5) and every hop goes through the same guard.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from engine.errors import BlockedAddress, PermanentError, RetryableError
from engine.outbound.retry import parse_retry_after
from engine.store.models import utcnow as default_clock

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Studio-Signature"
TIMESTAMP_HEADER = "X-Studio-Timestamp"
USER_AGENT = "StudioAutomations-Webhook/1.0"
MAX_REDIRECTS = 5
MAX_BODY_BYTES = 64 * 1024
SELECTED_RESPONSE_HEADERS = ("content-type", "location", "retry-after", "x-request-id")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --------------------------------------------------------------------------- signing


def _hmac_hex(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """Return the :data:`SIGNATURE_HEADER` value ``t=<timestamp>,v1=<hex hmac-sha256>``.

    The MAC covers ``f"{timestamp}.".encode() + body`` (Stripe style).
    """
    return f"t={int(timestamp)},v1={_hmac_hex(secret, int(timestamp), body)}"


def verify_signature(secret: str, header_value: str, body: bytes, *, now: int, tolerance: int = 300) -> bool:
    """True if ``header_value`` is a valid signature of ``body`` made less than ``tolerance`` s from ``now``.

    Uses a constant-time comparison; several ``v1=`` entries (key rotation) are accepted.
    Timestamps further than ``tolerance`` seconds in the past or future are rejected.
    """
    if not header_value:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header_value.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
        return False
    expected = _hmac_hex(secret, timestamp, body)
    return any(hmac.compare_digest(expected.encode(), c.encode()) for c in candidates)


# --------------------------------------------------------------------------- SSRF guard


@dataclass(frozen=True)
class _AllowEntry:
    host: str | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    port: int | None = None

    def matches_port(self, port: int) -> bool:
        return self.port is None or self.port == port

    def matches_host(self, host: str, port: int) -> bool:
        if self.host is None or not self.matches_port(port):
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host

    def matches_address(self, address: IPAddress, port: int) -> bool:
        if self.network is None or not self.matches_port(port):
            return False
        if is_metadata_address(address):  # only an exact address entry unlocks metadata
            if self.network.num_addresses != 1:
                return False
            inner = _embedded_ipv4(address)
            return address in self.network or (inner is not None and inner in self.network)
        return address in self.network


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, int(port)
    return entry, None


_HOST_NAME = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")


def allow_entry(raw: str) -> str:
    """One allow-list entry in the form stored and matched (trimmed, lower case), in any of the
    forms above; ``ValueError`` saying why otherwise. The settings store exactly what this accepts."""
    entry = raw.strip().lower()
    try:
        host, port = _split_port(entry)
    except ValueError:
        raise ValueError(f"{raw.strip()!r}: the port after ':' must be a number") from None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{raw.strip()!r}: the port must be between 1 and 65535")
    try:
        ipaddress.ip_network(host, strict=False)
    except ValueError:
        if len(host) > 253 or not _HOST_NAME.match(host):
            raise ValueError(
                f"{raw.strip()!r} is not a host name, IP address or network (optionally with :port)"
            ) from None
    return entry


def _parse_allow_entry(raw: str) -> _AllowEntry:
    try:
        host, port = _split_port(raw.strip().lower())
    except ValueError:
        raise PermanentError(f"Invalid allow-list entry {raw!r}.") from None
    try:
        return _AllowEntry(network=ipaddress.ip_network(host, strict=False), port=port)
    except ValueError:
        return _AllowEntry(host=host.rstrip("."), port=port)


def _parse_allow_list(allow_list: Iterable[str]) -> list[_AllowEntry]:
    return [_parse_allow_entry(e) for e in allow_list if e and e.strip()]


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_metadata_address(address: IPAddress) -> bool:
    """A cloud-metadata address, also in its IPv6 forms (``::ffff:169.254.169.254``, NAT64, 6to4, Teredo)."""
    return address in METADATA_ADDRESSES or _embedded_ipv4(address) in METADATA_ADDRESSES


def is_blocked_address(address: IPAddress) -> bool:
    """True if ``address`` is internal (see module docstring) and needs an allow-list entry."""
    inner = _embedded_ipv4(address)
    if inner is not None and is_blocked_address(inner):
        return True
    return (
        address in METADATA_ADDRESSES
        or not address.is_global
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise PermanentError(f"Invalid webhook URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise BlockedAddress(f"URL scheme {parsed.scheme!r} is not allowed (only http and https): {url!r}.")
    if not parsed.host:
        raise PermanentError(f"Webhook URL {url!r} has no host.")
    return parsed


def _resolve(host: str, port: int, resolver: Resolver) -> tuple[IPAddress, ...]:
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise RetryableError(f"Could not resolve host {host!r} (temporary DNS failure).") from None
        raise PermanentError(f"Could not resolve host {host!r}: {exc.strerror or exc}.") from None
    except OSError as exc:
        raise RetryableError(f"Could not resolve host {host!r}: {exc}.") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise PermanentError(f"Host {host!r} resolved to no addresses.")
    return tuple(addresses)


def _check_target(url: str, allow_list: Iterable[str], resolver: Resolver) -> _Target:
    parsed = _parse_url(url)
    host = parsed.host.lower().rstrip(".")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    entries = _parse_allow_list(allow_list)
    addresses = _resolve(host, port, resolver)
    host_allowed = any(e.matches_host(host, port) for e in entries)
    for address in addresses:
        if not is_blocked_address(address):
            continue
        if any(e.matches_address(address, port) for e in entries):
            continue
        if host_allowed and not is_metadata_address(address):
            continue
        raise BlockedAddress(
            f"Refusing to call {host!r}: it resolves to {address}, an internal address that is not on the allow-list.",
            host=host,
            address=str(address),
        )
    return _Target(parsed.scheme, host, port, addresses)


def check_url_allowed(url: str, allow_list: Iterable[str], resolver: Resolver = socket.getaddrinfo) -> None:
    """Raise :class:`BlockedAddress` unless ``url`` may be called (see the module docstring).

    ``resolver`` has :func:`socket.getaddrinfo`'s signature (inject a stub in tests).
    Unresolvable hosts raise :class:`RetryableError` (temporary DNS failure) or
    :class:`PermanentError`; malformed URLs raise :class:`PermanentError`.
    """
    _check_target(url, allow_list, resolver)


# --------------------------------------------------------------------------- the call


def _encode_body(body: Any) -> tuple[bytes | None, str | None]:
    if body is None:
        return None, None
    if isinstance(body, (dict, list)):
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), "application/json"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), "application/octet-stream"
    raise PermanentError(f"Unsupported webhook body type {type(body).__name__}.")


def _build_headers(
    base: dict[str, str],
    content: bytes | None,
    content_type: str | None,
    secret: str | list[str] | None,
    now: int | None,
) -> dict[str, str]:
    # "Connection: close": a pooled connection (keyed by IP) is never reused for another host name.
    headers = {"User-Agent": USER_AGENT, **base, "Connection": "close"}
    lower = {k.lower() for k in headers}
    if content is not None and content_type and "content-type" not in lower:
        headers["Content-Type"] = content_type
    if secret:
        timestamp = int(default_clock().timestamp()) if now is None else int(now)
        headers[TIMESTAMP_HEADER] = str(timestamp)
        secrets = [secret] if isinstance(secret, str) else list(secret)
        # Several secrets (rotation grace period): one v1= per secret, as verify_signature accepts.
        headers[SIGNATURE_HEADER] = ",".join(
            [f"t={timestamp}"] + [f"v1={_hmac_hex(one, timestamp, content or b'')}" for one in secrets]
        )
    return headers


def _pinned_request(
    client: httpx.Client,
    method: str,
    url: str,
    target: _Target,
    headers: dict[str, str],
    content: bytes | None,
    timeout: float,
) -> httpx.Request:
    """Build a request that connects to the checked IP while Host/SNI stay the original host name."""
    pinned = httpx.URL(url).copy_with(host=str(target.addresses[0]))
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    host_header = host if target.port == default_port else f"{host}:{target.port}"
    request = client.build_request(
        method, pinned, headers={**headers, "Host": host_header}, content=content, timeout=httpx.Timeout(timeout)
    )
    if target.scheme == "https":
        request.extensions["sni_hostname"] = target.host
    return request


def _read_limited(response: httpx.Response, deadline: float, timeout: float) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            break
        if time.monotonic() > deadline:
            raise RetryableError(f"Webhook response took longer than {timeout:g}s to read.")
    data = b"".join(chunks)
    return data[:MAX_BODY_BYTES], size > MAX_BODY_BYTES


def _decode_body(response: httpx.Response, data: bytes, truncated: bool) -> Any:
    text = data.decode(response.encoding or "utf-8", errors="replace")
    content_type = response.headers.get("content-type", "").lower()
    if not truncated and ("json" in content_type) and data.strip():
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _send_once(client: httpx.Client, request: httpx.Request, timeout: float, final_url: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    try:
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            data, truncated = _read_limited(response, deadline, timeout)
        finally:
            response.close()
    except httpx.TimeoutException:
        raise RetryableError(f"Webhook call to {final_url} timed out after {timeout:g}s.") from None
    except httpx.TransportError as exc:
        raise RetryableError(f"Webhook call to {final_url} failed: {type(exc).__name__}: {exc}") from None
    return {
        "status": response.status_code,
        "headers": {k: response.headers[k] for k in SELECTED_RESPONSE_HEADERS if k in response.headers},
        "body": _decode_body(response, data, truncated),
        "truncated": truncated,
        "url": final_url,
    }


def _snippet(body: Any, limit: int = 300) -> str:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return text[:limit] + ("..." if len(text) > limit else "")


def _classify(result: dict[str, Any], now: float | None) -> dict[str, Any]:
    status = result["status"]
    url = result["url"]
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(result["headers"].get("retry-after"), now=now)
        raise RetryableError(
            f"Webhook {url} returned HTTP {status}: {_snippet(result['body'])}",
            retry_after=retry_after,
            status=status,
            response=result,
        )
    if 400 <= status < 500:
        raise PermanentError(
            f"Webhook {url} returned HTTP {status}: {_snippet(result['body'])}", status=status, response=result
        )
    return result


def _redirect(method: str, status: int, content: bytes | None) -> tuple[str, bytes | None]:
    if status == 303 or (status in (301, 302) and method not in ("GET", "HEAD")):
        return ("HEAD" if method == "HEAD" else "GET"), None
    return method, content


def _same_origin(a: str, b: str) -> bool:
    ua, ub = httpx.URL(a), httpx.URL(b)
    return (ua.scheme, ua.host, ua.port) == (ub.scheme, ub.host, ub.port)


def call_webhook(
    *,
    url: str,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    body: Any = None,
    secret: str | list[str] | None,
    allow_list: Iterable[str] = (),
    timeout: float = 10.0,
    client: httpx.Client | None = None,
    now: int | None = None,
    resolver: Resolver = socket.getaddrinfo,
) -> dict[str, Any]:
    """Make ONE webhook call (plus at most 5 redirects) and return the response summary.

    ``body``: dict/list are sent as compact UTF-8 JSON, ``str`` as UTF-8 text, ``bytes`` as is.
    With a ``secret`` the exact bytes sent are signed (:data:`SIGNATURE_HEADER`,
    :data:`TIMESTAMP_HEADER`; ``now`` = unix seconds, default the current time). Every hop
    passes :func:`check_url_allowed` and is connected to the checked address. ``Authorization``
    is dropped on cross-origin redirects.

    Returns ``{"status", "headers" (content-type, location, retry-after, x-request-id),
    "body" (parsed JSON or text, cut at 64 KB), "truncated", "url" (final URL)}`` for 2xx/3xx.
    Raises :class:`RetryableError` on connection errors, timeouts, 408, 429 and 5xx
    (``retry_after`` from ``Retry-After``), :class:`PermanentError` on other 4xx (the summary is
    in ``exc.details["response"]``), :class:`BlockedAddress` if a hop is not allowed.
    """
    allow = list(allow_list)
    content, content_type = _encode_body(body)
    current_headers = dict(headers or {})
    current_url, current_method = url, method.upper()
    for hop in range(MAX_REDIRECTS + 1):
        target = _check_target(current_url, allow, resolver)
        request_headers = _build_headers(current_headers, content, content_type, secret, now)
        logger.info("webhook %s %s (hop %d)", current_method, current_url, hop)
        # A fresh client per hop (unless injected): a pooled connection, keyed by IP, must never
        # carry a request for another host name over a TLS session made for the previous one.
        http = client or httpx.Client(timeout=httpx.Timeout(timeout), trust_env=False, follow_redirects=False)
        try:
            request = _pinned_request(http, current_method, current_url, target, request_headers, content, timeout)
            result = _send_once(http, request, timeout, current_url)
        finally:
            if client is None:
                http.close()
        location = result["headers"].get("location")
        if result["status"] not in REDIRECT_STATUSES or not location:
            return _classify(result, now)
        next_url = str(httpx.URL(current_url).join(location))
        if not _same_origin(current_url, next_url):
            current_headers = {k: v for k, v in current_headers.items() if k.lower() != "authorization"}
        current_method, content = _redirect(current_method, result["status"], content)
        if content is None:
            content_type = None
        current_url = next_url
    raise PermanentError(f"Webhook {url} redirected more than {MAX_REDIRECTS} times.")
