"""E-mail over SMTP (smtplib), one attempt per send.

Error mapping: 5xx replies and refused recipients/senders -> :class:`PermanentError`
(:class:`InvalidRecipient` when the server rejects the recipient with 5xx); 4xx replies,
connection errors, disconnects and timeouts -> :class:`RetryableError`; a server that does not
offer STARTTLS/AUTH as configured, or a TLS certificate failure -> :class:`PermanentError`
(configuration problem).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Any, Literal

from pydantic import Field, SecretStr

from engine.channels._settings import ChannelSettings
from engine.channels.base import DeliveryResult, OutgoingMessage
from engine.channels.phones import normalize_email
from engine.errors import InvalidRecipient, PermanentError, RetryableError

logger = logging.getLogger(__name__)


class SmtpSettings(ChannelSettings):
    """SMTP server, credentials and sender (``snake_case`` or ``camelCase`` keys).

    ``security``: ``"starttls"`` (plain connect, then STARTTLS - port 587), ``"tls"`` (implicit
    TLS - port 465) or ``"none"``. ``subject_template`` is stored for the caller, who renders it
    into :attr:`OutgoingMessage.subject`.
    """

    host: str
    port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str
    from_name: str | None = None
    subject_template: str = "Nachricht von {{tenant.name}}"
    timeout: float = Field(default=10.0, gt=0)


def _classify_code(code: int, text: str, *, recipient: bool = False) -> Exception:
    if 400 <= code < 500:
        return RetryableError(f"SMTP server temporarily refused: {code} {text}", smtp_code=code)
    cls = InvalidRecipient if recipient else PermanentError
    return cls(f"SMTP server refused: {code} {text}", smtp_code=code)


def _reply_text(raw: bytes | str) -> str:
    return (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()


def _map_smtp_error(exc: Exception) -> Exception:
    """Translate an smtplib/socket exception into Retryable/Permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [(code, _reply_text(text)) for code, text in exc.recipients.values()]
        if codes and all(400 <= code < 500 for code, _ in codes):
            return _classify_code(codes[0][0], codes[0][1])
        code, text = next(((c, t) for c, t in codes if c >= 500), codes[0] if codes else (550, "refused"))
        return _classify_code(code, f"recipient refused: {text}", recipient=True)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _classify_code(exc.smtp_code, _reply_text(exc.smtp_error))
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentError(f"SMTP server does not support a configured feature: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(f"SMTP TLS certificate verification failed: {exc.verify_message}")
    if isinstance(exc, (TimeoutError, smtplib.SMTPServerDisconnected, smtplib.SMTPException, OSError)):
        return RetryableError(f"SMTP connection failed: {type(exc).__name__}: {exc}")
    return exc


class SmtpAdapter:
    """Sends e-mail through an SMTP server (one attempt per :meth:`send`)."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def build_message(self, message: OutgoingMessage) -> EmailMessage:
        """Build the UTF-8 :class:`EmailMessage` (From, To, Subject, Date, Message-ID)."""
        s = self.settings
        sender = normalize_email(s.from_address)
        email = EmailMessage()
        email["From"] = formataddr((s.from_name, sender)) if s.from_name else sender
        email["To"] = normalize_email(message.recipient)
        email["Subject"] = self._subject(message)
        email["Date"] = formatdate(localtime=False, usegmt=True)
        email["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[1])
        email.set_content(message.body, charset="utf-8")
        return email

    def _subject(self, message: OutgoingMessage) -> str:
        subject = message.subject
        if subject is None:
            template = self.settings.subject_template
            subject = "" if "{{" in template or "{%" in template else template
            if not subject:
                logger.warning("e-mail sent without subject: caller did not render subject_template")
        return " ".join(subject.splitlines())

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        if s.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password.get_secret_value() if s.password else "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: OutgoingMessage, **kw: Any) -> DeliveryResult:
        """Send ``message`` once; return ``sent`` with the generated Message-ID.

        Raises :class:`InvalidRecipient` for an invalid address, otherwise
        :class:`RetryableError` / :class:`PermanentError` as described in the module docstring.
        """
        email = self.build_message(message)
        try:
            smtp = self._connect()
            try:
                smtp.send_message(email)
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except Exception as exc:
            mapped = _map_smtp_error(exc)
            if mapped is exc:
                raise
            raise mapped from None
        logger.info("e-mail sent via %s:%s", self.settings.host, self.settings.port)
        return DeliveryResult(
            status="sent",
            provider_message_id=email["Message-ID"],
            detail={"host": self.settings.host, "port": self.settings.port},
        )
