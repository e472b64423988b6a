"""Provider signature checks against vectors computed from each provider's documented algorithm."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, urlencode

from engine.inbound.signatures import (
    check_meta_signature,
    check_twilio_signature,
    meta_signature,
    twilio_signature,
)

# Twilio's own example ("Validating signatures from Twilio"): auth token 12345.
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
TWILIO_EXPECTED = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_documented_example():
    assert twilio_signature("12345", TWILIO_URL, TWILIO_PARAMS.items()) == TWILIO_EXPECTED
    assert check_twilio_signature("12345", TWILIO_URL, TWILIO_PARAMS.items(), TWILIO_EXPECTED)


def test_twilio_independent_computation_and_order_does_not_matter():
    # Built by hand from the documented recipe: URL + sorted name+value pairs, HMAC-SHA1, base64.
    joined = TWILIO_URL + "".join(k + TWILIO_PARAMS[k] for k in sorted(TWILIO_PARAMS))
    by_hand = base64.b64encode(hmac.new(b"12345", joined.encode(), hashlib.sha1).digest()).decode()
    reversed_params = list(reversed(list(TWILIO_PARAMS.items())))
    assert twilio_signature("12345", TWILIO_URL, reversed_params) == by_hand
    # Round trip through a form body as Twilio posts it.
    params = parse_qsl(urlencode(TWILIO_PARAMS), keep_blank_values=True)
    assert check_twilio_signature("12345", TWILIO_URL, params, by_hand)


def test_twilio_rejects_tampering_wrong_token_missing_header():
    tampered = {**TWILIO_PARAMS, "Digits": "9999"}
    assert not check_twilio_signature("12345", TWILIO_URL, tampered.items(), TWILIO_EXPECTED)
    assert not check_twilio_signature("54321", TWILIO_URL, TWILIO_PARAMS.items(), TWILIO_EXPECTED)
    assert not check_twilio_signature("12345", TWILIO_URL + "&x=1", TWILIO_PARAMS.items(), TWILIO_EXPECTED)
    assert not check_twilio_signature("12345", TWILIO_URL, TWILIO_PARAMS.items(), None)
    assert not check_twilio_signature(None, TWILIO_URL, TWILIO_PARAMS.items(), TWILIO_EXPECTED)


def test_meta_signature_vector():
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    expected = "sha256=" + hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
    assert meta_signature("app-secret", body) == expected
    assert check_meta_signature("app-secret", body, expected)


def test_meta_rejects_tampering_wrong_secret_missing_header():
    body = b'{"entry":[]}'
    good = meta_signature("app-secret", body)
    assert not check_meta_signature("app-secret", body + b" ", good)
    assert not check_meta_signature("other-secret", body, good)
    assert not check_meta_signature("app-secret", body, None)
    assert not check_meta_signature("app-secret", body, good.replace("sha256=", "sha1="))
    assert not check_meta_signature(None, body, good)


def test_non_ascii_signature_headers_are_refused_not_errors():
    # Starlette hands header bytes on as latin-1 text: "é" sent as UTF-8 arrives as "Ã©".
    for header in ("sha256=éé", "sha256=Ã©Ã©", "sha256=\udce9"):
        assert not check_meta_signature("app-secret", b"{}", header)
    for header in ("éé=", "Ã©Ã©=", "\udce9"):
        assert not check_twilio_signature("12345", TWILIO_URL, TWILIO_PARAMS.items(), header)
    # Non-ASCII in the URL or the form (a member's SMS text) is signed as UTF-8, like Twilio does.
    params = [("Body", "Grüße 🧘"), ("From", "+4917612345678")]
    signed = twilio_signature("12345", TWILIO_URL, params)
    joined = (TWILIO_URL + "BodyGrüße 🧘From+4917612345678").encode()
    assert signed == base64.b64encode(hmac.new(b"12345", joined, hashlib.sha1).digest()).decode()
    assert check_twilio_signature("12345", TWILIO_URL, params, signed)


def test_twilio_signature_of_either_port_spelling_is_accepted():
    """Twilio signs the URL as configured; with or without the scheme's default port both count
    (as in Twilio's own validator), any other port or URL does not."""
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    signed_with_port = twilio_signature("12345", with_port, TWILIO_PARAMS.items())
    assert check_twilio_signature("12345", TWILIO_URL, TWILIO_PARAMS.items(), signed_with_port)
    assert check_twilio_signature("12345", with_port, TWILIO_PARAMS.items(), TWILIO_EXPECTED)
    other_port = "https://mycompany.com:8443/myapp.php?foo=1&bar=2"
    assert not check_twilio_signature("12345", other_port, TWILIO_PARAMS.items(), TWILIO_EXPECTED)
    assert not check_twilio_signature(
        "12345", "http://mycompany.com/myapp.php?foo=1&bar=2", TWILIO_PARAMS.items(), TWILIO_EXPECTED
    )
    # The query is part of what is signed: dropping or reordering it breaks the signature.
    assert not check_twilio_signature(
        "12345", "https://mycompany.com/myapp.php", TWILIO_PARAMS.items(), TWILIO_EXPECTED
    )
    assert not check_twilio_signature(
        "12345", "https://mycompany.com/myapp.php?bar=2&foo=1", TWILIO_PARAMS.items(), TWILIO_EXPECTED
    )
