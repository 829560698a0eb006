"""The one place that reads the environment. Everything else receives a ``Settings``."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pipeline.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The demo keeps its data in DATA_DIR/demo, with the feed list it polled: there, the default feed list.
DEMO_DIR = "demo"
DATA_DIR_FEEDS = "feeds.yaml"
DEFAULT_INDEX = "news-articles"  # the alias when ES_INDEX names none (the Kibana objects are written for it)
SEED_FEEDS = PROJECT_ROOT / "seeds" / "feeds.yaml"  # the feed list when FEEDS_FILE names none
DEFAULT_DATA_DIR = Path("data")


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be 0 or 1, not {value!r}")


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None


def _float(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {value!r}") from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    implicit_tls: bool = False
    cafile: str | None = None

    @property
    def server(self) -> str:
        """``host:port`` for messages and logs (never the credentials)."""
        return f"{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Read ``SMTP_URL``.

    Raises:
        ConfigError: not smtp:// or smtps://, no host, a bad port or a bad option.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ConfigError(f"SMTP_URL must start with smtp:// or smtps://, not {redact_smtp_url(url)!r}")
    if not parts.hostname:
        raise ConfigError(f"SMTP_URL has no host: {redact_smtp_url(url)!r}")
    try:
        port = parts.port or (465 if scheme == "smtps" else 25)
    except ValueError:
        raise ConfigError(f"SMTP_URL has a bad port: {redact_smtp_url(url)!r}") from None
    options = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(options) - {"starttls", "cafile"}
    if unknown:
        raise ConfigError(f"SMTP_URL: unknown option(s) {', '.join(sorted(unknown))} (known: starttls, cafile)")
    flag = options.get("starttls", "0").strip().lower()
    if flag not in _TRUE | _FALSE:
        raise ConfigError(f"SMTP_URL: starttls must be 0 or 1, not {flag!r}")
    starttls = flag in _TRUE
    if starttls and scheme == "smtps":
        raise ConfigError("SMTP_URL: smtps:// is TLS already; starttls=1 is for smtp://")
    cafile = options.get("cafile") or None
    if cafile is not None and not Path(cafile).is_file():
        raise ConfigError(f"SMTP_URL: cafile {cafile} is not a file")
    return SmtpTarget(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        starttls=starttls,
        implicit_tls=scheme == "smtps",
        cafile=cafile,
    )


def redact_smtp_url(url: str) -> str:
    """``url`` with its password masked, for logs and error messages."""
    return re.sub(r"^([a-zA-Z]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


@dataclass(frozen=True, slots=True)
class Settings:
    es_url: str | None = None
    es_api_key: str | None = None
    es_user: str | None = None
    es_password: str | None = None
    es_index: str = DEFAULT_INDEX
    # Seconds for one request; the embedded server scans on every search, so large indices need long ones.
    es_timeout: float = 120.0
    # How long a call waits out an unreachable or overloaded search server (backoff with jitter) before
    # the error stands: a restart or a brief network cut costs a pause, not a cycle.
    es_retry_seconds: float = 30.0
    feeds_file: Path = SEED_FEEDS
    profiles_dir: Path = PROJECT_ROOT / "seeds" / "profiles"
    languages: tuple[str, ...] = ("ar",)
    smtp_url: str | None = None
    alert_from: str | None = None
    alert_to: tuple[str, ...] = ()
    data_dir: Path = DEFAULT_DATA_DIR
    allow_private_hosts: bool = False
    # Fetching. Feeds and pages are small; anything far larger is hostile or a mistake.
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    # A whole response, however slowly it trickles in: read_timeout alone is per read.
    total_timeout: float = 60.0
    # A pathological page must not hold an extraction worker for ever.
    extract_timeout: float = 30.0
    max_bytes: int = 5 * 1024 * 1024
    max_redirects: int = 5
    max_retry_after: float = 30.0
    fetch_workers: int = 16
    per_host: int = 2
    extract_workers: int = 0  # 0: one per core
    user_agent: str = "arabic-news-pipeline/0.1 (+https://github.com/; news monitoring)"
    lang_prefix_chars: int = 2000
    min_body_chars: int = 200
    # auto: trafilatura's fallback extractors only on pages where its main pass is not confident
    # (pipeline/ingest/extract.py); always: on every page (trafilatura's default path, three times the CPU).
    extract_fallback: str = "auto"
    # While pages are still being extracted, cluster and index the articles in batches of at least this
    # many (more when the previous batch took longer); 0: all of them after the last page.
    process_batch: int = 100
    # Near-duplicate clustering: shingle similarity that makes two articles one story, and how far
    # apart in publication time two copies of a story may be.
    cluster_threshold: float = 0.4
    cluster_window_days: int = 30
    # An item whose page failed this many runs in a row is given up on.
    max_item_attempts: int = 3
    # Alerts (pipeline/alerts/run.py explains the choices). Articles indexed within the look-back are
    # candidates: a mail outage over a long weekend loses nothing, a new profile mails three days at most.
    alert_lookback_hours: float = 72.0
    alert_max_stories: int = 25  # entries in one digest; the rest wait for the next one
    # A run's hold on a profile (and its claims) older than this belongs to a dead worker and is taken over.
    alert_claim_minutes: float = 10.0
    smtp_timeout: float = 30.0
    # Airflow's landing area between the polling and processing DAGs: a folder, or an fsspec URL
    # (s3://bucket/prefix) every worker reaches. Unset: DATA_DIR/landing. Batches older than the
    # retention are removed once processed.
    landing_url: str | None = None
    landing_retention_days: float = 7.0
    # Feeds per mapped polling task (feeds of one host always share a task, so the per-host bound holds).
    poll_batch_feeds: int = 8
    # Airflow's planner polls the feeds due within this many seconds: the period of NEWS_POLL_SCHEDULE (a
    # minute), so a feed is polled at the run before its time rather than a whole period after it.
    poll_ahead_seconds: float = 60.0
    # Feed health (pipeline/ingest/health.py) and operator alerts (pipeline/alerts/incidents.py).
    ops_alert_to: tuple[str, ...] = ()  # who hears of a failing, stale, moved, blocked or dead feed
    feed_alert_after_failures: int = 3  # a failing feed is an incident after this many failed polls in a row
    feed_dead_days: float = 7.0  # failing this long: dead
    # Bounds of a feed's polling interval, whatever its cadence, its server's hints or its failures.
    feed_min_minutes: float = 5.0
    feed_max_minutes: float = 360.0

    @property
    def landing(self) -> str:
        return self.landing_url or str(self.data_dir / "landing")

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Settings:
        """Build settings from environment variables, then apply non-None ``overrides`` (CLI flags)."""
        values: dict[str, Any] = {}

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        if (v := get("ES_URL")) is not None:
            values["es_url"] = v.rstrip("/")
        for name, attr in [
            ("ES_API_KEY", "es_api_key"),
            ("ES_USER", "es_user"),
            ("ES_PASSWORD", "es_password"),
            ("ES_INDEX", "es_index"),
            ("SMTP_URL", "smtp_url"),
            ("ALERT_FROM", "alert_from"),
            ("LANDING_URL", "landing_url"),
        ]:
            if (v := get(name)) is not None:
                values[attr] = v
        for name, attr in [("FEEDS_FILE", "feeds_file"), ("PROFILES_DIR", "profiles_dir"), ("DATA_DIR", "data_dir")]:
            if (v := get(name)) is not None:
                values[attr] = Path(v)
        if (v := get("LANGUAGES")) is not None:
            values["languages"] = _csv(v.lower())
        if (v := get("ALERT_TO")) is not None:
            values["alert_to"] = _csv(v)
        if (v := get("OPS_ALERT_TO")) is not None:
            values["ops_alert_to"] = _csv(v)
        if (v := get("EXTRACT_FALLBACK")) is not None:
            values["extract_fallback"] = v.strip().lower()
        if (v := get("ALLOW_PRIVATE_HOSTS")) is not None:
            values["allow_private_hosts"] = _bool(v, "ALLOW_PRIVATE_HOSTS")
        for name, attr, conv in [
            ("FETCH_WORKERS", "fetch_workers", _int),
            ("FETCH_PER_HOST", "per_host", _int),
            ("EXTRACT_WORKERS", "extract_workers", _int),
            ("MAX_BYTES", "max_bytes", _int),
            ("MAX_REDIRECTS", "max_redirects", _int),
            ("CONNECT_TIMEOUT", "connect_timeout", _float),
            ("READ_TIMEOUT", "read_timeout", _float),
            ("TOTAL_TIMEOUT", "total_timeout", _float),
            ("ES_TIMEOUT", "es_timeout", _float),
            ("ES_RETRY_SECONDS", "es_retry_seconds", _float),
            ("CLUSTER_THRESHOLD", "cluster_threshold", _float),
            ("CLUSTER_WINDOW_DAYS", "cluster_window_days", _int),
            ("ALERT_LOOKBACK_HOURS", "alert_lookback_hours", _float),
            ("ALERT_MAX_STORIES", "alert_max_stories", _int),
            ("ALERT_CLAIM_MINUTES", "alert_claim_minutes", _float),
            ("SMTP_TIMEOUT", "smtp_timeout", _float),
            ("LANDING_RETENTION_DAYS", "landing_retention_days", _float),
            ("POLL_BATCH_FEEDS", "poll_batch_feeds", _int),
            ("POLL_AHEAD_SECONDS", "poll_ahead_seconds", _float),
            ("FEED_ALERT_AFTER_FAILURES", "feed_alert_after_failures", _int),
            ("FEED_DEAD_DAYS", "feed_dead_days", _float),
            ("FEED_MIN_MINUTES", "feed_min_minutes", _float),
            ("FEED_MAX_MINUTES", "feed_max_minutes", _float),
            ("PROCESS_BATCH", "process_batch", _int),
        ]:
            if (v := get(name)) is not None:
                values[attr] = conv(v, name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "feeds_file" not in values:
            # The demo's data directory (DATA_DIR/demo) carries the feed list its index was filled from:
            # commands pointed at it read that list, not the seed list. Only a directory named demo: a
            # feeds.yaml that happens to lie in another data directory is not taken behind the user's back.
            data_dir = Path(values.get("data_dir", DEFAULT_DATA_DIR))
            if data_dir.name == DEMO_DIR and (data_dir / DATA_DIR_FEEDS).is_file():
                values["feeds_file"] = data_dir / DATA_DIR_FEEDS
        return cls(**values).validated()

    def validated(self) -> Settings:
        if not self.languages:
            raise ConfigError("LANGUAGES is empty: name at least one language, e.g. LANGUAGES=ar")
        for code in self.languages:
            if not (code.isalpha() and len(code) == 2):
                raise ConfigError(f"LANGUAGES holds {code!r}: use ISO 639-1 codes such as ar, en")
        if self.es_url is not None and not self.es_url.startswith(("http://", "https://")):
            raise ConfigError(f"ES_URL must start with http:// or https://, not {self.es_url!r}")
        if not self.es_index or self.es_index != self.es_index.lower() or " " in self.es_index:
            raise ConfigError(f"ES_INDEX must be a lower-case index name, not {self.es_index!r}")
        for name in ("fetch_workers", "per_host", "max_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.extract_fallback not in ("auto", "always"):
            raise ConfigError(f"EXTRACT_FALLBACK must be auto or always, not {self.extract_fallback!r}")
        if self.process_batch < 0:
            raise ConfigError("PROCESS_BATCH must not be negative")
        if self.max_redirects < 0:
            raise ConfigError("max_redirects must not be negative")
        if self.alert_max_stories < 1:
            raise ConfigError("ALERT_MAX_STORIES must be at least 1")
        if self.es_retry_seconds < 0:
            raise ConfigError("ES_RETRY_SECONDS must not be negative")
        for name in ("alert_lookback_hours", "alert_claim_minutes", "smtp_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.upper()} must be positive")
        for name, addresses in (("ALERT_TO", self.alert_to), ("OPS_ALERT_TO", self.ops_alert_to)):
            for address in addresses:
                if address.count("@") != 1 or " " in address or address.startswith("@") or address.endswith("@"):
                    raise ConfigError(f"{name} holds {address!r}: list plain addresses, comma-separated")
        if self.poll_ahead_seconds < 0:
            raise ConfigError("POLL_AHEAD_SECONDS must not be negative")
        if self.feed_alert_after_failures < 1:
            raise ConfigError("FEED_ALERT_AFTER_FAILURES must be at least 1")
        if self.feed_dead_days <= 0:
            raise ConfigError("FEED_DEAD_DAYS must be positive")
        if not 1 <= self.feed_min_minutes <= self.feed_max_minutes:
            raise ConfigError("FEED_MIN_MINUTES must be at least 1 and at most FEED_MAX_MINUTES")
        if self.smtp_url is not None:
            parse_smtp_url(self.smtp_url)
        return self

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes).validated()

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log: credentials are masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in {"es_api_key", "es_password"} and value:
                value = "***"
            elif f.name == "smtp_url" and value:
                value = redact_smtp_url(value)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def default_settings() -> Settings:
    return Settings.from_env(os.environ)
