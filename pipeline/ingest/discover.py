"""Finding and probing feeds for operators: ``python -m pipeline feeds discover URL`` and ``feeds check``.

``probe`` downloads one feed now, through the same guarded ``Fetcher`` as every poll (size and time
caps, checked redirects, the private-address rule), parses it with the same ``read_feed``, and says
what an operator needs to judge it: status, redirects, items, newest item and its age against the
feed's own cadence, encoding. Nothing is written: the feed's stored state is the polls' business.

``discover`` reads an outlet's home page for the feeds it declares (``<link rel="alternate">``, and
failing those, links that look like feeds: trafilatura's feed finder), adds the paths where sites
usually keep them (``/feed``, ``/rss``, ``/rss.xml`` …), probes every candidate and turns each that is
a feed into an entry ready for the feed list.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.etree  # type: ignore[import-untyped, unused-ignore]
import lxml.html  # type: ignore[import-untyped, unused-ignore]
from trafilatura.feeds import FeedParameters, determine_feed

from pipeline import log
from pipeline.errors import FeedError, FetchError, PipelineError, reason
from pipeline.ingest import health
from pipeline.ingest.feeds import read_feed
from pipeline.ingest.fetch import Fetcher, check_url
from pipeline.ingest.poll import FEED_ACCEPT
from pipeline.ingest.urls import canonical_url
from pipeline.records import FeedConfig, iso

_log = log.get(__name__)

# Where sites keep their feeds when the home page does not say (WordPress, Drupal, most CMSs).
COMMON_PATHS = ("/feed", "/rss", "/rss.xml", "/feed.xml", "/atom.xml", "/index.xml", "/rss/", "/feed/")
MAX_CANDIDATES = 20  # a home page linking hundreds of "rss" URLs is not worth hundreds of requests
PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_CHARSET = re.compile(r";\s*charset\s*=\s*[\"']?([^;\"'\s]+)", re.IGNORECASE)
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


@dataclass(frozen=True, slots=True)
class Probe:
    """One feed URL tried now."""

    url: str
    feed_id: str
    ok: bool  # it answered with a feed that parses
    status: int | None
    final_url: str | None  # where it was served from, after redirects
    moved_to: str | None  # the first hop was a permanent redirect to this
    content_type: str | None
    encoding: str | None  # what the document declares (BOM or XML declaration), else the header's charset
    header_charset: str | None  # what the HTTP header claims
    items: int
    newest_item_at: str | None
    newest_item_age_hours: float | None
    cadence_minutes: float | None  # median gap between its item dates
    stale: bool  # answers, but its newest item is far older than its cadence promises
    seconds: float
    error: str | None
    digest: str | None = None  # sha256 of the document: one feed served under two paths is one feed


@dataclass(frozen=True, slots=True)
class Discovery:
    """What ``discover`` found for one home page: the feeds, as probes and as feed-list entries."""

    home: str
    site_name: str | None
    home_error: str | None  # the home page itself failed (common paths were still tried)
    candidates: list[str]
    feeds: list[Probe]
    entries: list[dict[str, Any]] = field(default_factory=list)


def probe(fetcher: Fetcher, url: str, *, feed_id: str = "", now: datetime) -> Probe:
    """Fetch and parse ``url`` now. Never raises: a failure is the probe's ``error``."""
    started = time.monotonic()
    try:
        resp = fetcher.get(url, feed_id=feed_id, accept=FEED_ACCEPT)
        config = FeedConfig(id=feed_id or "probe", url=resp.final_url, outlet="")
        parsed = read_feed(resp.content, resp.headers, feed=config, fetched_at=now)
    except (FetchError, FeedError) as err:
        status = err.status if isinstance(err, FetchError) else None
        return _failed(url, feed_id, status, reason(err), started)
    except PipelineError as err:  # anything else the fetch or parse said: this URL's failure, not the run's
        return _failed(url, feed_id, None, reason(err), started)
    dates = [i.published_at for i in parsed.items if i.published_at is not None]
    newest = max(dates, default=None)
    gap = health.cadence(dates)
    content_type = resp.headers.get("content-type")
    header = _CHARSET.search(content_type or "")
    return Probe(
        url=url,
        feed_id=feed_id,
        ok=True,
        status=resp.status,
        final_url=resp.final_url,
        moved_to=resp.moved_to,
        content_type=content_type,
        encoding=_declared_encoding(resp.content) or (header.group(1).lower() if header else None),
        header_charset=header.group(1).lower() if header else None,
        items=len(parsed.items),
        newest_item_at=iso(newest),
        newest_item_age_hours=round((now - newest).total_seconds() / 3600, 1) if newest else None,
        cadence_minutes=round(gap.total_seconds() / 60, 1) if gap else None,
        stale=health.is_stale(newest, gap, now=now),
        seconds=round(time.monotonic() - started, 3),
        error=None,
        digest=hashlib.sha256(resp.content).hexdigest(),
    )


def _failed(url: str, feed_id: str, status: int | None, error: str, started: float) -> Probe:
    return Probe(
        url=url,
        feed_id=feed_id,
        ok=False,
        status=status,
        final_url=None,
        moved_to=None,
        content_type=None,
        encoding=None,
        header_charset=None,
        items=0,
        newest_item_at=None,
        newest_item_age_hours=None,
        cadence_minutes=None,
        stale=False,
        seconds=round(time.monotonic() - started, 3),
        error=error,
    )


def _declared_encoding(content: bytes) -> str | None:
    for bom, name in _BOMS:
        if content.startswith(bom):
            return name
    found = _XML_ENCODING.match(content)
    return found.group(1).decode("ascii").lower() if found else None


def check(fetcher: Fetcher, feeds: Sequence[FeedConfig], *, now: datetime, workers: int = 8) -> list[Probe]:
    """Probe every feed of ``feeds`` now, several at a time; in the order given."""
    with ThreadPoolExecutor(max(1, min(workers, len(feeds) or 1)), thread_name_prefix="check") as pool:
        return list(pool.map(lambda f: probe(fetcher, f.url, feed_id=f.id, now=now), feeds))


def discover(fetcher: Fetcher, home: str, *, now: datetime, workers: int = 8) -> Discovery:
    """The feeds of the site whose home page is ``home``, each probed, with entries for the feed list.

    Raises:
        RefusedURL: ``home`` is not a URL we may fetch (scheme, malformed, a private address).
        FetchError: its host name does not resolve.
    """
    # Before any request: every candidate lives on this host, so a refused host means nothing to try.
    check_url(home, allow_private=fetcher.settings.allow_private_hosts)
    site_name: str | None = None
    home_error: str | None = None
    declared: list[str] = []
    base = home
    try:
        page = fetcher.get(home, accept=PAGE_ACCEPT)
        base = page.final_url
        text = page.content.decode(_page_charset(page.headers.get("content-type", "")), errors="replace")
        site_name = _site_name(text)
        host = urlsplit(base).hostname or ""
        declared = determine_feed(text, FeedParameters(base, host, base))
    except FetchError as err:  # the common paths may still answer
        home_error = reason(err)
    candidates = list(dict.fromkeys([*declared, *(urljoin(base, path) for path in COMMON_PATHS)]))
    candidates = candidates[:MAX_CANDIDATES]
    with ThreadPoolExecutor(max(1, min(workers, len(candidates))), thread_name_prefix="discover") as pool:
        probes = list(pool.map(lambda url: probe(fetcher, url, now=now), candidates))
    found: list[Probe] = []
    seen: set[str] = set()
    for result in probes:
        if not result.ok:
            continue
        # /feed and /feed/ are often one feed: keep the first address of each document.
        keys = {canonical_url(result.moved_to or result.final_url or result.url), result.digest or ""}
        if keys & seen:
            continue
        seen |= keys
        found.append(result)
    _log.info("discover.done", home=home, candidates=len(candidates), feeds=len(found))
    entries = _entries(found, site_name=site_name, home=base, now=now)
    return Discovery(home, site_name, home_error, candidates, found, entries)


def _page_charset(content_type: str) -> str:
    found = _CHARSET.search(content_type)
    name = found.group(1) if found else "utf-8"
    try:
        "".encode(name)
    except LookupError:
        return "utf-8"
    return name


def _site_name(text: str) -> str | None:
    try:
        tree = lxml.html.fromstring(text)
    except (ValueError, lxml.etree.ParserError):
        return None
    for xpath in ('//meta[@property="og:site_name"]/@content', "//title/text()"):
        found = tree.xpath(xpath)
        values = [str(v).strip() for v in (found if isinstance(found, list) else []) if str(v).strip()]
        if values:
            return values[0]
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _entries(found: Sequence[Probe], *, site_name: str | None, home: str, now: datetime) -> list[dict[str, Any]]:
    """Feed-list entries (``seeds/feeds.yaml`` shape) for the feeds found: unique ids from the host and
    the feed's path, the site's name as outlet, a note of what was seen."""
    host = (urlsplit(home).hostname or "site").removeprefix("www.")
    stem = _slug(host.split(".")[0] if not host.replace(".", "").isdigit() else host) or "feed"
    entries: list[dict[str, Any]] = []
    used: set[str] = set()
    for result in found:
        url = result.moved_to or result.url
        parts = urlsplit(url)
        tail = _slug(f"{parts.path} {parts.query}")
        feed_id = (stem if len(found) == 1 or not tail else f"{stem}-{tail}")[:56].strip("-")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{1,62}", feed_id):
            feed_id = f"feed-{feed_id}".strip("-")
        while feed_id in used:
            feed_id = f"{feed_id}-{len(used)}"
        used.add(feed_id)
        hours = result.newest_item_age_hours
        age = f", newest item {hours:g} h old" if hours is not None else ""
        entries.append(
            {
                "id": feed_id,
                "url": url,
                "outlet": site_name or host,
                "verified": True,
                "notes": f"found by `feeds discover {home}` on {now:%Y-%m-%d}: {result.items} items{age}",
            }
        )
    return entries
