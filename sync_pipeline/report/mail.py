"""Email: build messages (plain text, HTML, attachments) and send them over SMTP.

The SMTP server comes from the environment (the SMTP_* variables of core.config). With no
SMTP_HOST the message is written as an .eml file under $SYNC_PIPELINE_HOME/outbox and its
path returned, so a demo or a machine without mail still shows what would have been sent.
No Dagster imports here; the password never appears in logs or errors.
"""

from __future__ import annotations

import datetime as dt
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from sync_pipeline.core import config, db
from sync_pipeline.core.textfiles import inert


class MailError(RuntimeError):
    """The message could not be delivered; says which server and what to check."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    sender: str
    starttls: bool

    @classmethod
    def from_env(cls) -> SmtpConfig | None:
        host = config.smtp_host()
        if not host:
            return None
        starttls = config.smtp_starttls()
        port_text = config.smtp_port() or ("587" if starttls else "25")
        try:
            port = int(port_text)
        except ValueError:
            raise MailError(f"SMTP_PORT must be a number, got {port_text!r}") from None
        return cls(
            host=host,
            port=port,
            username=config.smtp_username(),
            password=config.smtp_password(),
            sender=config.smtp_sender(),
            starttls=starttls,
        )


def build(
    *,
    to: str | list[str],
    subject: str,
    text: str,
    html: str | None = None,
    attachments: list[tuple[str, bytes, str]] | None = None,
    sender: str | None = None,
) -> EmailMessage:
    """A multipart message: text, optional HTML alternative, attachments (name, bytes, mime)."""
    msg = EmailMessage()
    msg["To"] = ", ".join(to) if isinstance(to, list) else to
    msg["From"] = sender or config.smtp_sender()
    msg["Subject"] = inert(subject)  # a name from Graph in it: no line break, no escape
    msg["Date"] = dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg["Message-ID"] = make_msgid(domain="sync-pipeline")
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    for name, payload, mime in attachments or []:
        maintype, subtype = mime.split("/", 1)
        msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=name)
    return msg


def send(msg: EmailMessage) -> str:
    """Deliver the message; returns where it went ('smtp://host:port' or the .eml path)."""
    config = SmtpConfig.from_env()
    if config is None:
        return str(_write_eml(msg))
    if "From" in msg:
        msg.replace_header("From", config.sender)
    try:
        with smtplib.SMTP(config.host, config.port, timeout=30) as smtp:
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.username:
                smtp.login(config.username, config.password or "")
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        reason = type(exc).__name__
        raise MailError(
            f"could not send {msg['Subject']!r} through {config.host}:{config.port} ({reason}); "
            "check SMTP_HOST, SMTP_PORT, SMTP_STARTTLS and the credentials"
        ) from None
    return f"smtp://{config.host}:{config.port}"


def _write_eml(msg: EmailMessage) -> Path:
    outbox = db.home() / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    slug = re.sub(r"[^a-z0-9]+", "-", str(msg["Subject"]).lower()).strip("-")[:60]
    path = outbox / f"{stamp}-{slug}.eml"
    path.write_bytes(bytes(msg))
    return path
