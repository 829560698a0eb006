"""Alert delivery at the edge: SMTP (``SMTP_URL``), or ``.eml`` files in ``DATA_DIR/outbox/`` without one.

``SMTP_URL`` is ``smtp://[user:pass@]host[:port][?starttls=1]`` (port 25 by default; STARTTLS before
any credentials are sent when ``starttls=1``) or ``smtps://[user:pass@]host[:port]`` (TLS from the first
byte, port 465 by default). User and password are percent-decoded, so ``alerts%40example.org`` is an
address. ``cafile=/path/ca.pem`` trusts a private certificate authority besides the system's; the
server's certificate and host name are always checked.

A delivery either hands the message over (the SMTP server accepted it for at least one recipient, or the
file is in the outbox under its final name) or raises :class:`AlertError`: the caller keeps the stories
pending. The outbox file is written under a temporary name, flushed to disk and renamed, so a crash never
leaves half a message where a mail client or a pick-up script would read it.
"""

from __future__ import annotations

import base64
import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

from pipeline.errors import AlertError, MailServerUnreachable
from pipeline.settings import Settings, SmtpTarget, parse_smtp_url

__all__ = ["Delivery", "deliver", "write_outbox"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a message went: ``smtp://host:port`` or the outbox file, and who it was accepted for."""

    where: str
    accepted: tuple[str, ...]
    refused: dict[str, str]  # address → the server's answer, when some recipients were refused


def deliver(settings: Settings, message: EmailMessage) -> Delivery:
    """Send ``message`` to its ``To`` addresses over ``settings.smtp_url``, or write it to the outbox.

    Raises:
        MailServerUnreachable: the server could not be reached (refused, timed out, TLS failed, hung up).
        AlertError: the server refused the sender, every recipient or the data (4xx/5xx), or the
            outbox could not be written. The message names the server or the file.
    """
    recipients = [address.addr_spec for address in message["To"].addresses] if message["To"] else []
    if not recipients:
        raise AlertError("the message has no recipient")
    if settings.smtp_url is None:
        path = write_outbox(settings.data_dir / "outbox", message)
        return Delivery(where=str(path), accepted=tuple(recipients), refused={})
    target = parse_smtp_url(settings.smtp_url)
    return _send(target, message, recipients, timeout=settings.smtp_timeout)


def _tls_context(target: SmtpTarget) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if target.cafile:
        context.load_verify_locations(cafile=target.cafile)
    return context


def _send(target: SmtpTarget, message: EmailMessage, recipients: list[str], *, timeout: float) -> Delivery:
    where = f"{'smtps' if target.implicit_tls else 'smtp'}://{target.server}"
    client: smtplib.SMTP | None = None
    try:
        if target.implicit_tls:
            client = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=_tls_context(target))
        else:
            client = smtplib.SMTP(target.host, target.port, timeout=timeout)
        client.ehlo()
        if target.starttls:
            client.starttls(context=_tls_context(target))
            client.ehlo()
        if target.user:
            _login(client, target.user, target.password or "")
        refused = client.send_message(message, to_addrs=recipients)
    except (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected) as err:
        # No greeting, a 421 greeting, or the connection dropped: the server is not taking mail now.
        raise MailServerUnreachable(f"{where} could not be reached: {err}", url=where) from err
    except smtplib.SMTPRecipientsRefused as err:
        answers = "; ".join(f"{addr}: {code} {_text(msg)}" for addr, (code, msg) in err.recipients.items())
        raise AlertError(f"{where} refused every recipient ({answers})", url=where) from err
    except smtplib.SMTPResponseException as err:
        raise AlertError(f"{where} answered {err.smtp_code} {_text(err.smtp_error)}", url=where) from err
    except smtplib.SMTPException as err:
        raise AlertError(f"{where}: {err}", url=where) from err
    except OSError as err:
        # Refused, unreachable, timed out, TLS failures (ssl.SSLError is an OSError).
        raise MailServerUnreachable(f"{where} could not be reached: {err}", url=where) from err
    except UnicodeError as err:
        raise AlertError(f"{where}: cannot encode the credentials or an address: {err}", url=where) from err
    finally:
        if client is not None:
            _hang_up(client)
    refused_text = {addr: f"{code} {_text(msg)}" for addr, (code, msg) in refused.items()}
    accepted = tuple(addr for addr in recipients if addr not in refused)
    return Delivery(where=where, accepted=accepted, refused=refused_text)


def _login(client: smtplib.SMTP, user: str, password: str) -> None:
    if (user + password).isascii():
        client.login(user, password)
        return
    # smtplib encodes credentials as ASCII; AUTH PLAIN carries UTF-8 (RFC 4616), so send it by hand.
    if "plain" not in client.esmtp_features.get("auth", "").lower().split():
        raise smtplib.SMTPNotSupportedError("non-ASCII credentials need AUTH PLAIN, which the server does not offer")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
    code, answer = client.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, answer)


def _hang_up(client: smtplib.SMTP) -> None:
    # Once the server has accepted the data the message is delivered: a failed QUIT must not turn that
    # into a failure (which would send it again next cycle).
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def write_outbox(directory: Path, message: EmailMessage) -> Path:
    """Write ``message`` as ``<directory>/<date>-<id>.eml`` (CRLF line ends, as sent over SMTP), atomically.

    Raises:
        AlertError: the directory or the file cannot be written.
    """
    message_id = str(message["Message-ID"] or "")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", message_id.strip("<>").split("@")[0]).strip("-") or "message"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        data = message.as_bytes(policy=SMTP_POLICY)
        handle, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            path = directory / f"{stem}.eml"
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise AlertError(f"could not write to the outbox {directory}: {err}", url=str(directory)) from err
    return path
