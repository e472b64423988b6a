"""Shared HTTP plumbing for provider adapters: one POST, failures classified, secrets redacted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from engine.errors import PermanentError, RetryableError
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


def post_once(
    client: httpx.Client | None, url: str, *, provider: str, timeout: float, secrets: Iterable[str], **kwargs: Any
) -> httpx.Response:
    """POST once; connection errors and timeouts become :class:`RetryableError` (secrets redacted)."""
    own = client is None
    http = client or httpx.Client(timeout=timeout, trust_env=False)
    try:
        response = http.post(url, timeout=timeout, **kwargs)
        response.read()
        return response
    except httpx.TimeoutException:
        raise RetryableError(f"{provider}: request timed out after {timeout:g}s.") from None
    except httpx.TransportError as exc:
        message = redact(f"{provider}: connection failed: {type(exc).__name__}: {exc}", secrets)
        raise RetryableError(message) from None
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
