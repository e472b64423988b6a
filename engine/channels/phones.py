"""Recipient normalisation: phone numbers to E.164, e-mail addresses to a canonical form."""

from __future__ import annotations

import logging
import re

import phonenumbers

from engine.errors import InvalidRecipient

logger = logging.getLogger(__name__)

_PREFIXES = ("whatsapp:", "tel:", "sms:")
_LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_phone(raw: str, default_region: str = "DE") -> str:
    """Return ``raw`` as an E.164 number (``"+4915123456789"``).

    Accepts national (``"0151 2345 6789"``, interpreted in ``default_region``), international
    (``"+49 151 ..."``, ``"0049 151 ..."``) and prefixed (``"whatsapp:+49..."``, ``"tel:..."``)
    forms. Raises :class:`InvalidRecipient` naming the value if it is not a valid number.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidRecipient(f"Phone number {raw!r} is empty.")
    text = raw.strip()
    for prefix in _PREFIXES:
        if text.lower().startswith(prefix):
            text = text[len(prefix) :].strip()
            break
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidRecipient(f"{raw!r} is not a phone number ({exc}).") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidRecipient(f"{raw!r} is not a valid phone number (default region {default_region}).")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _split_email(value: str) -> tuple[str, str] | None:
    if value.count("@") != 1 or len(value) > 254:
        return None
    local, domain = value.split("@")
    if not local or len(local) > 64 or not _LOCAL_RE.match(local):
        return None
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        return None
    return local, domain


def is_email(value: object) -> bool:
    """True if ``value`` is a plausible single e-mail address (``local@domain.tld``)."""
    return isinstance(value, str) and _split_email(value.strip()) is not None


def normalize_email(raw: str) -> str:
    """Return ``raw`` trimmed, with the domain lower-cased (IDNA-encoded); the local part is kept.

    Raises :class:`InvalidRecipient` naming the value if it is not a single plausible address
    (this also rejects CR/LF, spaces and display names, preventing header injection).
    """
    parts = _split_email(raw.strip()) if isinstance(raw, str) else None
    if parts is None:
        raise InvalidRecipient(f"{raw!r} is not a valid e-mail address.")
    return f"{parts[0]}@{parts[1]}"
