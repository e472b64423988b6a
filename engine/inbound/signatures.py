"""Provider signature checks, computed exactly as each provider documents them.

* Meta (WhatsApp Cloud API): ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body,
  keyed with the app secret>``.
* Twilio: ``X-Twilio-Signature: base64(HMAC-SHA1(auth token, full URL + every POST parameter
  name and value, sorted by name, concatenated))``.

All comparisons are constant-time and on bytes: a header is whatever the caller sent (any
byte, ``é`` included), and ``hmac.compare_digest`` raises on non-ASCII ``str``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit


def meta_signature(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value Meta sends for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def check_meta_signature(app_secret: str | None, body: bytes, header: str | None) -> bool:
    """True when ``header`` is Meta's signature of ``body`` with ``app_secret``."""
    if not app_secret or not header:
        return False
    return same(meta_signature(app_secret, body), header.strip())


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a form POST of ``params`` to ``url``.

    Parameters are sorted by name (then value, for repeated names) and appended as
    ``name + value`` to the URL; the HMAC-SHA1 of that string is base64-encoded.
    """
    payload = url + "".join(k + v for k, v in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode("utf-8", "surrogatepass"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def check_twilio_signature(
    auth_token: str | None, url: str, params: Iterable[tuple[str, str]], header: str | None
) -> bool:
    """True when ``header`` is Twilio's signature of this request.

    ``url`` is the full URL Twilio called, query included. Twilio signs it as it was
    configured, which may or may not spell out the default port (``:443``): like Twilio's own
    validator, the signature of either spelling is accepted.
    """
    if not auth_token or not header:
        return False
    params = list(params)
    return any(same(twilio_signature(auth_token, u, params), header.strip()) for u in _port_spellings(url))


def _port_spellings(url: str) -> list[str]:
    """``url`` as given, then with the scheme's default port added or removed."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a port number: only the URL as given can match
        return [url]
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if port is None and default is not None:
        other = parts._replace(netloc=f"{parts.netloc}:{default}")
    elif port is not None and port == default:
        other = parts._replace(netloc=parts.netloc.rsplit(":", 1)[0])
    else:
        return [url]
    return [url, urlunsplit(other)]


def same(expected: str, given: str) -> bool:
    """Constant-time equality of two texts, whatever characters ``given`` holds."""
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass"))
