"""Provider signature checks, computed exactly as each provider documents them.

* Meta (WhatsApp Cloud API): ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body,
  keyed with the app secret>``.
* Twilio: ``X-Twilio-Signature: base64(HMAC-SHA1(auth token, full URL + every POST parameter
  name and value, sorted by name, concatenated))``.

All comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def meta_signature(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value Meta sends for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def check_meta_signature(app_secret: str | None, body: bytes, header: str | None) -> bool:
    """True when ``header`` is Meta's signature of ``body`` with ``app_secret``."""
    if not app_secret or not header:
        return False
    return hmac.compare_digest(meta_signature(app_secret, body), header.strip())


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a form POST of ``params`` to ``url``.

    Parameters are sorted by name (then value, for repeated names) and appended as
    ``name + value`` to the URL; the HMAC-SHA1 of that string is base64-encoded.
    """
    payload = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def check_twilio_signature(
    auth_token: str | None, url: str, params: Iterable[tuple[str, str]], header: str | None
) -> bool:
    """True when ``header`` is Twilio's signature of this request."""
    if not auth_token or not header:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url, params), header.strip())
