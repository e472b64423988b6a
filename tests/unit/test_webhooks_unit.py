import hashlib
import hmac
import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import BlockedAddress, PermanentError, RetryableError
from engine.outbound.retry import backoff_delay, parse_retry_after
from engine.outbound.webhooks import (
    SIGNATURE_HEADER,
    check_url_allowed,
    is_blocked_address,
    sign_payload,
    verify_signature,
)

SECRET = "whsec_test"


def resolver_for(mapping):
    """getaddrinfo stand-in: host -> list of IPs; records calls."""
    calls = []

    def resolve(host, port, *args, **kwargs):
        calls.append(host)
        if host not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in mapping[host]
        ]

    resolve.calls = calls
    return resolve


# ------------------------------------------------------------------ signing


def test_sign_payload_format_and_value():
    body = b'{"a":1}'
    header = sign_payload(SECRET, 1700000000, body)
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert SIGNATURE_HEADER == "X-Studio-Signature"


def test_verify_signature_roundtrip_and_tampering():
    body = "Grüße".encode()
    header = sign_payload(SECRET, 1000, body)
    assert verify_signature(SECRET, header, body, now=1000)
    assert verify_signature(SECRET, header, body, now=1300)
    assert not verify_signature(SECRET, header, body, now=1301)  # stale
    assert not verify_signature(SECRET, header, body, now=699)  # from the future
    assert not verify_signature(SECRET, header, body + b"x", now=1000)
    assert not verify_signature("other", header, body, now=1000)
    assert not verify_signature(SECRET, header.replace("t=1000", "t=1001"), body, now=1000)


@pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", "v1=00", "t=1000", "t=1000,v1="])
def test_verify_signature_malformed(header):
    assert not verify_signature(SECRET, header, b"x", now=1000)


def test_verify_signature_accepts_rotated_keys():
    body = b"x"
    good = sign_payload(SECRET, 1000, body).split(",")[1]
    assert verify_signature(SECRET, f"t=1000,v1={'0' * 64},{good}", body, now=1000)


def test_docstring_snippet_verifies(monkeypatch):
    import engine.outbound.webhooks as webhooks

    source = webhooks.__doc__.split("::", 1)[1].split("SSRF guard", 1)[0]
    namespace = {}
    exec(source.replace("\n    ", "\n"), namespace)
    monkeypatch.setattr("time.time", lambda: 1000)
    assert namespace["verify"](SECRET, sign_payload(SECRET, 1000, b"body"), b"body")
    assert not namespace["verify"](SECRET, sign_payload(SECRET, 1000, b"body"), b"other")


# ------------------------------------------------------------------ backoff / retry-after


def test_backoff_full_jitter_bounds():
    assert backoff_delay(1, rand=lambda: 1.0) == 2.0
    assert backoff_delay(2, rand=lambda: 1.0) == 4.0
    assert backoff_delay(5, rand=lambda: 0.5) == 16.0
    assert backoff_delay(30, rand=lambda: 1.0) == 3600.0
    assert backoff_delay(10_000, rand=lambda: 1.0) == 3600.0
    assert backoff_delay(3, rand=lambda: 0.0) == 0.0


def test_backoff_honours_retry_after_as_minimum():
    assert backoff_delay(1, retry_after=30, rand=lambda: 1.0) == 30.0
    assert backoff_delay(10, retry_after=30, rand=lambda: 1.0) == 1024.0
    assert backoff_delay(30, retry_after=7200, rand=lambda: 1.0) == 7200.0


def test_backoff_rejects_attempt_zero():
    with pytest.raises(ValueError):
        backoff_delay(0)


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0, max_value=1))
def test_backoff_never_exceeds_cap(attempt, r):
    assert 0 <= backoff_delay(attempt, rand=lambda: r) <= 3600.0


def test_parse_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    # Wed, 21 Oct 2015 07:28:00 GMT == 1445412480
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 90) == 90.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 + 90) == 0.0


# ------------------------------------------------------------------ SSRF guard


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://0.0.0.0/",
        "http://192.168.1.20/",
        "http://172.16.0.1/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://240.0.0.1/",
    ],
)
def test_internal_addresses_refused(url):
    with pytest.raises(BlockedAddress) as info:
        check_url_allowed(url, [], resolver=resolver_for({}))
    assert "allow-list" in str(info.value)


def test_hostname_resolving_to_loopback_refused():
    resolve = resolver_for({"evil.example": ["93.184.215.14", "127.0.0.1"]})
    with pytest.raises(BlockedAddress) as info:
        check_url_allowed("https://evil.example/x", [], resolver=resolve)
    assert "evil.example" in str(info.value) and "127.0.0.1" in str(info.value)
    assert info.value.details == {"host": "evil.example", "address": "127.0.0.1"}


def test_public_host_allowed():
    check_url_allowed(
        "https://hooks.example.com/x", [], resolver=resolver_for({"hooks.example.com": ["93.184.215.14"]})
    )
    check_url_allowed("http://8.8.8.8/", [])


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://127.0.0.1/"])
def test_bad_scheme_refused(url):
    with pytest.raises(BlockedAddress, match="scheme"):
        check_url_allowed(url, [], resolver=resolver_for({}))


def test_unresolvable_and_malformed():
    with pytest.raises(PermanentError, match="resolve"):
        check_url_allowed("https://nope.invalid/", [], resolver=resolver_for({}))

    def flaky(*a, **k):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(RetryableError):
        check_url_allowed("https://hooks.example.com/", [], resolver=flaky)
    with pytest.raises(PermanentError):
        check_url_allowed("http:///nohost", [])


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1:9000/", ["127.0.0.1"]),
        ("http://127.0.0.5/", ["127.0.0.0/8"]),
        ("http://[::1]:8080/", ["[::1]:8080"]),
        ("http://[::1]/", ["::1"]),
        ("http://10.1.2.3/", ["10.0.0.0/8"]),
        ("http://crm.local/", ["crm.local"]),
        ("http://CRM.local./", ["crm.local"]),
        ("http://localhost:8080/", ["localhost:8080"]),
        ("http://a.studio.internal/", ["*.studio.internal"]),
    ],
)
def test_allow_list_entries(url, allow):
    resolve = resolver_for(
        {"crm.local": ["10.0.0.7"], "localhost": ["127.0.0.1", "::1"], "a.studio.internal": ["10.9.9.9"]}
    )
    check_url_allowed(url, allow, resolver=resolve)


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1:9000/", ["127.0.0.1:8000"]),
        ("http://localhost:9000/", ["localhost:8080"]),
        ("http://10.1.2.3/", ["10.0.0.0/16"]),
        ("http://other.local/", ["crm.local"]),
        ("http://studio.internal/", ["*.studio.internal"]),
        # metadata needs the exact address, not a network or a host name
        ("http://169.254.169.254/", ["169.254.0.0/16"]),
        ("http://meta.local/", ["meta.local"]),
    ],
)
def test_allow_list_does_not_over_match(url, allow):
    resolve = resolver_for(
        {
            "localhost": ["127.0.0.1"],
            "other.local": ["10.0.0.8"],
            "studio.internal": ["10.0.0.9"],
            "meta.local": ["169.254.169.254"],
        }
    )
    with pytest.raises(BlockedAddress):
        check_url_allowed(url, allow, resolver=resolve)


def test_metadata_allowed_only_by_exact_address():
    check_url_allowed("http://169.254.169.254/", ["169.254.169.254"])


def test_is_blocked_address_public():
    assert not is_blocked_address(ipaddress.ip_address("93.184.215.14"))
    assert not is_blocked_address(ipaddress.ip_address("2606:4700::1111"))
    assert is_blocked_address(ipaddress.ip_address("100.100.100.200"))
