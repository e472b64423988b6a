"""SmtpAdapter against a local aiosmtpd server on 127.0.0.1."""

import socket
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from engine.channels.base import OutgoingMessage
from engine.channels.smtp import SmtpAdapter, SmtpSettings
from engine.errors import InvalidRecipient, PermanentError, RetryableError

# The test server offers AUTH without TLS on purpose (no certificates needed on 127.0.0.1).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    def __init__(self):
        self.envelopes = []
        self.data_reply = "250 Message accepted"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce@"):
            return "550 5.1.1 No such user"
        if address.startswith("grey@"):
            return "450 4.2.0 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply.startswith("250"):
            self.envelopes.append(envelope)
        return self.data_reply


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"studio", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtpd():
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, recorder
    controller.stop()


@pytest.fixture
def smtpd_auth():
    recorder = Recorder()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    yield controller, recorder
    controller.stop()


def settings_for(controller, **kw):
    base = {
        "host": "127.0.0.1",
        "port": controller.port,
        "security": "none",
        "from_address": "info@studio-yoga.de",
        "from_name": "Studio Yoga",
        "timeout": 5,
    }
    return SmtpSettings(**{**base, **kw})


MSG = OutgoingMessage(
    channel="email",
    recipient="Anna@Example.com",
    body="Hallo Anna,\n\nviele Grüße\nDein Studio",
    subject="Dein Kurs morgen – Grüße",
)


def parsed(envelope):
    return message_from_bytes(envelope.content, policy=default_policy)


def test_plain_send(smtpd):
    controller, recorder = smtpd
    result = SmtpAdapter(settings_for(controller)).send(MSG)
    assert result.status == "sent"
    (envelope,) = recorder.envelopes
    assert envelope.mail_from == "info@studio-yoga.de"
    assert envelope.rcpt_tos == ["Anna@example.com"]
    mail = parsed(envelope)
    assert mail["Subject"] == "Dein Kurs morgen – Grüße"
    assert mail["From"] == "Studio Yoga <info@studio-yoga.de>"
    assert mail["To"] == "Anna@example.com"
    assert mail.get_content_charset() == "utf-8"
    assert mail.get_content().replace("\r\n", "\n").rstrip("\n") == "Hallo Anna,\n\nviele Grüße\nDein Studio"
    assert result.provider_message_id == mail["Message-ID"]
    assert result.provider_message_id.startswith("<") and result.provider_message_id.endswith("@studio-yoga.de>")


def test_send_with_auth(smtpd_auth):
    controller, recorder = smtpd_auth
    settings = settings_for(controller, username="studio", password="s3cret")
    assert SmtpAdapter(settings).send(MSG).status == "sent"
    assert len(recorder.envelopes) == 1


def test_wrong_password_is_permanent_and_not_leaked(smtpd_auth):
    controller, recorder = smtpd_auth
    with pytest.raises(PermanentError) as info:
        SmtpAdapter(settings_for(controller, username="studio", password="wrong-pass")).send(MSG)
    assert "535" in str(info.value) and "wrong-pass" not in str(info.value)
    assert recorder.envelopes == []


def test_auth_required_but_not_configured(smtpd_auth):
    controller, _ = smtpd_auth
    with pytest.raises(PermanentError, match="530"):
        SmtpAdapter(settings_for(controller)).send(MSG)


def test_recipient_refused_5xx_is_permanent(smtpd):
    controller, recorder = smtpd
    with pytest.raises(InvalidRecipient, match="550"):
        SmtpAdapter(settings_for(controller)).send(OutgoingMessage("email", "bounce@example.com", "x", "s"))


def test_recipient_greylisted_4xx_is_retryable(smtpd):
    controller, _ = smtpd
    with pytest.raises(RetryableError, match="450"):
        SmtpAdapter(settings_for(controller)).send(OutgoingMessage("email", "grey@example.com", "x", "s"))


def test_data_4xx_retryable_and_5xx_permanent(smtpd):
    controller, recorder = smtpd
    recorder.data_reply = "451 4.3.0 Local problem"
    with pytest.raises(RetryableError, match="451"):
        SmtpAdapter(settings_for(controller)).send(MSG)
    recorder.data_reply = "554 5.7.1 Spam detected"
    with pytest.raises(PermanentError, match="554") as info:
        SmtpAdapter(settings_for(controller)).send(MSG)
    assert not isinstance(info.value, RetryableError)


def test_starttls_not_offered_is_permanent(smtpd):
    controller, _ = smtpd
    with pytest.raises(PermanentError, match="STARTTLS"):
        SmtpAdapter(settings_for(controller, security="starttls")).send(MSG)


def test_connection_refused_is_retryable():
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), security="none", from_address="a@b.de", timeout=2)
    with pytest.raises(RetryableError):
        SmtpAdapter(settings).send(MSG)


def test_silent_server_times_out():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # accepts the TCP connection but never sends a greeting
        settings = SmtpSettings(
            host="127.0.0.1", port=server.getsockname()[1], security="none", from_address="a@b.de", timeout=0.3
        )
        with pytest.raises(RetryableError):
            SmtpAdapter(settings).send(MSG)


def test_invalid_recipient_rejected_before_connecting():
    settings = SmtpSettings(host="127.0.0.1", port=1, security="none", from_address="a@b.de")
    with pytest.raises(InvalidRecipient):
        SmtpAdapter(settings).send(OutgoingMessage("email", "anna@example.com\r\nBcc: x@y.de", "x", "s"))


def test_subject_defaults_and_header_injection(smtpd):
    controller, recorder = smtpd
    adapter = SmtpAdapter(settings_for(controller, subject_template="Neuigkeiten"))
    adapter.send(OutgoingMessage("email", "anna@example.com", "x"))
    adapter.send(OutgoingMessage("email", "anna@example.com", "x", subject="Hi\r\nBcc: evil@example.com"))
    first, second = (parsed(e) for e in recorder.envelopes)
    assert first["Subject"] == "Neuigkeiten"
    assert second["Bcc"] is None and "evil@example.com" in second["Subject"]
    assert all(e.rcpt_tos == ["anna@example.com"] for e in recorder.envelopes)


def test_settings_defaults_and_camel_case():
    s = SmtpSettings.model_validate({"host": "mail.example.com", "fromAddress": "info@studio.de", "fromName": "Studio"})
    assert (s.port, s.security, s.timeout) == (587, "starttls", 10.0)
    assert s.subject_template == "Nachricht von {{tenant.name}}"
    assert s.from_name == "Studio" and s.username is None and s.password is None
