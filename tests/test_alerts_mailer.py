"""Delivery of alert emails against real SMTP servers on loopback (aiosmtpd): plain, STARTTLS, implicit
TLS, AUTH, refusals and a server that is down; and the ``.eml`` outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from smtp_server import RecordingSmtp, self_signed

from pipeline.alerts.digest import Copy, Digest, Story, build_message
from pipeline.alerts.mailer import deliver
from pipeline.errors import AlertError, ConfigError, MailServerUnreachable
from pipeline.settings import Settings, parse_smtp_url, redact_smtp_url
from pipeline.store.embedded import free_port

NOW = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def message(*recipients: str) -> EmailMessage:
    digest = Digest(
        profile_id="p",
        profile_title="ملف تجريبي",
        stories=(
            Story(
                cluster_id="c",
                article_id="a",
                title="عنوان الخبر",
                outlet="المرصد",
                url="https://example.org/a",
                published_at=NOW,
                terms=("روسيا",),
                score=8.0,
                others=(Copy("الضفتين", "https://example.net/b"),),
            ),
        ),
    )
    return build_message(
        digest,
        sender="alerts@example.org",
        recipients=recipients or ("desk@example.org",),
        message_id="<m.1@example.org>",
        date=NOW,
    )


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


def settings_for(url: str | None, tmp_path: Path) -> Settings:
    return Settings(smtp_url=url, data_dir=tmp_path / "data", smtp_timeout=5)


def test_plain_smtp_delivers_to_every_recipient(smtp: RecordingSmtp, tmp_path: Path) -> None:
    delivery = deliver(settings_for(smtp.url, tmp_path), message("a@example.org", "b@example.org"))
    assert delivery.accepted == ("a@example.org", "b@example.org") and not delivery.refused
    [received] = smtp.received
    assert received.rcpt_tos == ("a@example.org", "b@example.org") and received.mail_from == "alerts@example.org"
    assert received.message["Message-ID"] == "<m.1@example.org>" and not received.tls


def test_starttls_and_auth(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    with RecordingSmtp(tls=certificate, users={"alerts@example.org": "p@ss:wörd"}) as server:
        url = (
            f"smtp://alerts%40example.org:p%40ss%3Aw%C3%B6rd@127.0.0.1:{server.port}?starttls=1&cafile={certificate[0]}"
        )
        deliver(settings_for(url, tmp_path), message())
        [received] = server.received
        assert received.tls and received.login == "alerts@example.org"
        # The same server refuses a wrong password, and mail without TLS: errors, not crashes.
        wrong = url.replace("p%40ss", "nope")
        with pytest.raises(AlertError, match=f"127.0.0.1:{server.port}.*535") as caught:
            deliver(settings_for(wrong, tmp_path), message())
        assert not isinstance(caught.value, MailServerUnreachable)
        with pytest.raises(AlertError, match="530"):
            deliver(settings_for(server.url, tmp_path), message())
        # A certificate nobody vouches for is refused (verification is never turned off).
        with pytest.raises(MailServerUnreachable, match="certificate"):
            deliver(settings_for(f"smtp://127.0.0.1:{server.port}?starttls=1", tmp_path), message())
        assert server.count() == 1


def test_implicit_tls(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    with RecordingSmtp(tls=certificate, implicit_tls=True) as server:
        deliver(settings_for(f"{server.url}?cafile={certificate[0]}", tmp_path), message())
        [received] = server.received
        assert received.tls and received.message["Subject"].startswith("تنبيه إخباري")


def test_a_server_that_is_down_is_reported_by_address(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(MailServerUnreachable, match=f"smtp://127.0.0.1:{port} could not be reached"):
        deliver(settings_for(f"smtp://127.0.0.1:{port}", tmp_path), message())


def test_a_refusal_is_an_error_with_the_servers_answer(smtp: RecordingSmtp, tmp_path: Path) -> None:
    smtp.refuse = "451 4.3.0 mailbox busy, try again later"
    with pytest.raises(AlertError, match="451 4.3.0 mailbox busy") as caught:
        deliver(settings_for(smtp.url, tmp_path), message())
    assert not isinstance(caught.value, MailServerUnreachable) and smtp.count() == 0


def test_without_smtp_url_the_message_is_an_eml_file_in_the_outbox(tmp_path: Path) -> None:
    delivery = deliver(settings_for(None, tmp_path), message("a@example.org"))
    outbox = tmp_path / "data" / "outbox"
    [path] = outbox.iterdir()  # no temporary file left beside it
    assert delivery.where == str(path) and path.suffix == ".eml" and not path.name.startswith(".")
    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(parsed, EmailMessage)
    assert parsed["To"] == "a@example.org" and parsed["Subject"] == "تنبيه إخباري: خبر واحد جديد — ملف تجريبي"
    body = parsed.get_body(("html",))
    assert body is not None and 'dir="rtl"' in body.get_content()
    assert b"\r\n" in path.read_bytes()  # as on the wire: mail clients open it as sent


@pytest.mark.parametrize(
    ("url", "host", "port", "user", "password", "starttls", "implicit"),
    [
        ("smtp://mail.example.org", "mail.example.org", 25, None, None, False, False),
        ("smtp://u:p@127.0.0.1:2525?starttls=1", "127.0.0.1", 2525, "u", "p", True, False),
        ("smtps://a%40b.org:x%2Fy@smtp.example.org", "smtp.example.org", 465, "a@b.org", "x/y", False, True),
        ("SMTP://Mail.Example.org:587?starttls=true", "mail.example.org", 587, None, None, True, False),
    ],
)
def test_smtp_urls_are_read(
    url: str, host: str, port: int, user: str | None, password: str | None, starttls: bool, implicit: bool
) -> None:
    target = parse_smtp_url(url)
    assert (target.host, target.port, target.user, target.password) == (host, port, user, password)
    assert (target.starttls, target.implicit_tls) == (starttls, implicit)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://mail.example.org", "smtp:// or smtps://"),
        ("smtp://", "no host"),
        ("smtp://mail.example.org:notaport", "bad port"),
        ("smtp://mail.example.org?tls=1", "unknown option"),
        ("smtp://mail.example.org?starttls=maybe", "starttls must be 0 or 1"),
        ("smtps://mail.example.org?starttls=1", "TLS already"),
        ("smtp://mail.example.org?cafile=/nonexistent/ca.pem", "not a file"),
    ],
)
def test_bad_smtp_urls_are_configuration_errors(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        Settings.from_env({"SMTP_URL": url})


def test_the_smtp_password_never_shows_in_settings_or_errors() -> None:
    settings = Settings.from_env({"SMTP_URL": "smtp://user:s3cret@mail.example.org:587?starttls=1"})
    assert settings.redacted()["smtp_url"] == "smtp://user:***@mail.example.org:587?starttls=1"
    assert redact_smtp_url("smtps://u:p@h") == "smtps://u:***@h"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SMTP_URL": "smtp://user:s3cret@mail.example.org:xx"})
    assert "s3cret" not in str(caught.value)


def test_alert_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {"ALERT_LOOKBACK_HOURS": "24", "ALERT_MAX_STORIES": "10", "ALERT_TO": "a@x.org, b@x.org", "SMTP_TIMEOUT": "9"}
    )
    assert (settings.alert_lookback_hours, settings.alert_max_stories, settings.smtp_timeout) == (24, 10, 9)
    assert settings.alert_to == ("a@x.org", "b@x.org")
    with pytest.raises(ConfigError, match="ALERT_MAX_STORIES"):
        Settings.from_env({"ALERT_MAX_STORIES": "0"})
