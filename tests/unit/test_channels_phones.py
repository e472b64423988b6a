import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.channels.phones import is_email, normalize_email, normalize_phone
from engine.errors import InvalidRecipient, PermanentError


@pytest.mark.parametrize(
    "raw",
    [
        "+49 151 23456789",
        "0151 23456789",
        "0049 151 23456789",
        "whatsapp:+4915123456789",
        "WhatsApp:+49 (151) 234-56789",
        "tel:+4915123456789",
        " 015123456789 ",
    ],
)
def test_normalize_phone_german_forms(raw):
    assert normalize_phone(raw) == "+4915123456789"


def test_normalize_phone_other_region():
    assert normalize_phone("0612345678", default_region="NL") == "+31612345678"
    assert normalize_phone("+43 664 1234567") == "+436641234567"


@pytest.mark.parametrize("raw", ["", "   ", "hello", "+49 1", "whatsapp:", "12"])
def test_normalize_phone_rejects(raw):
    with pytest.raises(InvalidRecipient) as info:
        normalize_phone(raw)
    assert repr(raw) in str(info.value)
    assert isinstance(info.value, PermanentError)


@given(st.text(max_size=30))
def test_normalize_phone_only_raises_invalid_recipient(raw):
    try:
        result = normalize_phone(raw)
    except InvalidRecipient:
        return
    assert result.startswith("+") and result[1:].isdigit()


@pytest.mark.parametrize("value", ["anna@example.com", "a.b+tag@studio.de", "x@bücher.de", "Anna@Example.COM"])
def test_is_email_true(value):
    assert is_email(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "anna",
        "anna@",
        "@example.com",
        "anna@example",
        "a@@b.de",
        "a b@c.de",
        "a@b.de\nBcc: x@y.de",
        "Anna <anna@example.com>",
        "a..b@c.de",
        None,
        42,
    ],
)
def test_is_email_false(value):
    assert not is_email(value)


def test_normalize_email():
    assert normalize_email("  Anna.Berg@Example.COM ") == "Anna.Berg@example.com"
    assert normalize_email("x@Bücher.de") == "x@xn--bcher-kva.de"
    with pytest.raises(InvalidRecipient, match="'not-an-address'"):
        normalize_email("not-an-address")
