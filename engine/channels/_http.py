"""Shared HTTP plumbing for provider adapters: one POST, failures classified, secrets redacted."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import httpx

from engine.errors import OutcomeUnknown, PermanentError, RetryableError
from engine.outbound.retry import parse_retry_after

logger = logging.getLogger(__name__)

ErrorParser = Callable[[httpx.Response], tuple[str, Any]]


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every non-empty secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def json_or_none(response: httpx.Response) -> Any:
    """The response's JSON body, or None if it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """One TLS context per process (the CA bundle httpx uses): building it per send cost
    20-90 ms of CPU, more than many sends take; connections stay one per send."""
    return httpx.create_ssl_context()


#: Failures before the request left this machine: the provider never saw it, sending again is safe.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError, httpx.UnsupportedProtocol)


def post_once(
    client: httpx.Client | None, url: str, *, provider: str, timeout: float, secrets: Iterable[str], **kwargs: Any
) -> httpx.Response:
    """POST once. No connection (refused, connect timeout) -> :class:`RetryableError`; a failure
    once the request may have reached the provider (read timeout, connection dropped before the
    answer) -> :class:`OutcomeUnknown`: the provider may have acted on it, so it must not be sent
    again blindly. Secrets are redacted from both."""
    return _request_once(client, "POST", url, provider=provider, timeout=timeout, secrets=secrets, **kwargs)


def get_once(
    client: httpx.Client | None, url: str, *, provider: str, timeout: float, secrets: Iterable[str], **kwargs: Any
) -> httpx.Response:
    """GET once (a look-up); any transport failure is a :class:`RetryableError` (reading changes nothing)."""
    try:
        return _request_once(client, "GET", url, provider=provider, timeout=timeout, secrets=secrets, **kwargs)
    except OutcomeUnknown as exc:
        raise RetryableError(exc.message) from None


def _request_once(
    client: httpx.Client | None,
    method: str,
    url: str,
    *,
    provider: str,
    timeout: float,
    secrets: Iterable[str],
    **kwargs: Any,
) -> httpx.Response:
    own = client is None
    http = client or httpx.Client(timeout=timeout, trust_env=False, verify=_tls())
    try:
        response = http.request(method, url, timeout=timeout, **kwargs)
        response.read()
        return response
    except NOT_SENT as exc:
        message = redact(f"{provider}: connection failed: {type(exc).__name__}: {exc}", secrets)
        raise RetryableError(message) from None
    except httpx.TimeoutException:
        raise OutcomeUnknown(f"{provider}: no answer within {timeout:g}s; the request may have been received") from None
    except httpx.TransportError as exc:
        message = redact(f"{provider}: connection lost before the answer: {type(exc).__name__}: {exc}", secrets)
        raise OutcomeUnknown(message) from None
    finally:
        if own:
            http.close()


def raise_for_provider_error(
    response: httpx.Response,
    *,
    provider: str,
    secrets: Iterable[str],
    describe: ErrorParser,
    retryable_codes: frozenset[Any] = frozenset(),
    permanent_class: type[PermanentError] = PermanentError,
) -> None:
    """Raise for a non-2xx response: 408/429/5xx (or a provider code in ``retryable_codes``) ->
    :class:`RetryableError` honouring ``Retry-After``; other 4xx -> ``permanent_class``.

    ``describe(response)`` returns ``(human message, provider error code)``.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    secrets = list(secrets)
    text, code = describe(response)
    message = redact(f"{provider} returned HTTP {status}: {text}", secrets)
    details = {"status": status, "provider_code": code}
    if status in (408, 429) or status >= 500 or (code is not None and code in retryable_codes):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise RetryableError(message, retry_after=retry_after, **details)
    raise permanent_class(message, **details)
