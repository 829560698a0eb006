"""``python -m pipeline feeds [discover URL | check [ID…]]``: every feed's health and schedule, finding an
outlet's feeds, probing feeds now (issue #16)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich import box
from rich.markup import escape
from rich.table import Table

from pipeline import log
from pipeline.cli.common import (
    DataOpt,
    EsUrlOpt,
    IndexOpt,
    JsonOpt,
    fail,
    open_index,
    out,
    read_settings,
    settings_from,
)
from pipeline.errors import ConfigError, FetchError, IndexingError
from pipeline.ingest import discover, health
from pipeline.ingest.feeds import load_feeds
from pipeline.ingest.fetch import Fetcher
from pipeline.records import FEED_STATES, parse_iso_or_none
from pipeline.store import index
from pipeline.stories.cluster import prepare_index

app: typer.Typer = typer.Typer(
    help="Feed health: every feed's state and next poll; find an outlet's feeds; probe feeds now.",
    invoke_without_command=True,
)

FeedsOpt = Annotated[Path | None, typer.Option("--feeds", help="Feed list [env FEEDS_FILE].")]
PrivateOpt = Annotated[
    bool | None,
    typer.Option("--allow-private-hosts/--no-private-hosts", help="Allow loopback/private addresses."),
]


@app.callback(invoke_without_command=True)
def feeds(
    ctx: typer.Context,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    feeds_file: FeedsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every feed of the list: health state (ok, failing, stale, moved, blocked, dead, never_polled), next
    poll and interval, last success, last error, newest item's age."""
    if ctx.invoked_subcommand is not None:
        return
    log.configure(json=as_json or None)
    now = datetime.now(UTC)
    try:
        settings = read_settings(
            required=False, es_url=es_url, es_index=es_index, data_dir=data_dir, feeds_file=feeds_file
        )
        configured = load_feeds(settings.feeds_file)
        with open_index(settings) as es:
            prepare_index(es, settings.es_index)
            states = index.load_feed_states(es, settings.es_index, [f.id for f in configured])
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    rows = [health.describe(f, states.get(f.id), now=now) for f in configured]
    if as_json:
        print(json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=2))
        return
    _print_table(rows, now=now, source=settings.feeds_file)


def _print_table(rows: list[health.FeedHealth], *, now: datetime, source: Path) -> None:
    # Narrow columns and relative times, so that it reads on an 80-column terminal.
    t = Table(
        title="Feed health",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        expand=True,
    )
    t.add_column("feed", no_wrap=True, overflow="ellipsis", max_width=20)
    t.add_column("state", no_wrap=True, min_width=10)
    t.add_column("next", no_wrap=True, min_width=6)
    t.add_column("every", no_wrap=True, justify="right", min_width=5)
    t.add_column("last ok", no_wrap=True, justify="right", min_width=7)
    t.add_column("newest", no_wrap=True, justify="right", min_width=6)
    # The one column that gives way: the rest stay whole on 80 columns.
    t.add_column("last error", no_wrap=True, overflow="ellipsis", ratio=1)
    for r in rows:
        state = r.state if r.enabled else "off"
        if r.enabled and r.state in ("failing", "blocked", "dead"):
            state = f"{r.state} ×{r.consecutive_failures}"
        error = r.last_error or ""
        if r.moved_to:
            error = f"moved to {r.moved_to}"
        elif r.served_by:
            error = f"via fallback {r.served_by}"
        t.add_row(
            escape(r.id + ("" if r.verified else "*")),
            _styled(state, r.state),
            _until(r.next_poll_at, now) if r.enabled else "-",
            _span(r.interval_minutes),
            _ago(r.last_success, now),
            _span(r.newest_item_age_hours * 60 if r.newest_item_age_hours is not None else None),
            escape(error),
        )
    out.print(t)
    counts = {s: sum(1 for r in rows if r.enabled and r.state == s) for s in FEED_STATES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    out.print(f"{sum(1 for r in rows if r.enabled)} feeds: {summary}", highlight=False)
    out.print(escape(f"feed list: {source}"), highlight=False)
    if any(not r.verified for r in rows):
        out.print("* no public evidence yet that this URL is the outlet's feed (verified: false)", highlight=False)


def _styled(text: str, state: str) -> str:
    colour = {"ok": "green", "stale": "yellow", "moved": "yellow", "never_polled": "dim"}.get(state, "red")
    return f"[{colour}]{escape(text)}[/{colour}]"


def _span(minutes: float | None) -> str:
    if minutes is None:
        return "-"
    if minutes < 60:
        return f"{minutes:.0f}m"
    if minutes < 48 * 60:
        return f"{minutes / 60:.0f}h"
    return f"{minutes / 1440:.0f}d"


def _ago(when: str | None, now: datetime) -> str:
    moment = parse_iso_or_none(when)
    return "never" if moment is None else _span(max(0.0, (now - moment).total_seconds() / 60)) + " ago"


def _until(when: str | None, now: datetime) -> str:
    moment = parse_iso_or_none(when)
    if moment is None or moment <= now:
        return "due"
    return "in " + _span((moment - now).total_seconds() / 60)


@app.command("check")
def check_cmd(
    feed_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[ID]...", help="Feeds to probe (default: every feed of the list).")
    ] = None,
    feeds_file: FeedsOpt = None,
    data_dir: DataOpt = None,
    allow_private_hosts: PrivateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Probe feeds now (nothing is stored): status, items, newest item's age, encoding, redirects."""
    log.configure(json=as_json or None)
    now = datetime.now(UTC)
    try:
        settings = settings_from(feeds_file=feeds_file, data_dir=data_dir, allow_private_hosts=allow_private_hosts)
        configured = load_feeds(settings.feeds_file)
    except ConfigError as e:
        fail(str(e))
    by_id = {f.id: f for f in configured}
    unknown = [i for i in feed_ids or [] if i not in by_id]
    if unknown:
        fail(f"no feed {', '.join(map(repr, unknown))} in {settings.feeds_file}")
    chosen = [by_id[i] for i in feed_ids] if feed_ids else configured
    with Fetcher(settings) as fetcher:
        probes = discover.check(fetcher, chosen, now=now, workers=settings.fetch_workers)
    if as_json:
        print(json.dumps([asdict(p) for p in probes], ensure_ascii=False, indent=2))
        return
    for p in probes:
        _print_probe(p)


def _print_probe(p: discover.Probe) -> None:
    name = p.feed_id or p.url
    if not p.ok:
        out.print(f"[red]✗[/red] {escape(name)}  {escape(p.url)}\n    {escape(p.error or '')}", highlight=False)
        return
    verdict = "[yellow]stale[/yellow]" if p.stale else "[green]ok[/green]"
    newest = f"newest {p.newest_item_age_hours:g} h old" if p.newest_item_age_hours is not None else "no item dates"
    cadence = f", one every {p.cadence_minutes:g} min" if p.cadence_minutes else ""
    out.print(f"{verdict} {escape(name)}  {escape(p.url)}", highlight=False)
    out.print(
        escape(f"    HTTP {p.status}, {p.items} items, {newest}{cadence}, encoding {p.encoding or '?'}")
        + (escape(f" (header says {p.header_charset})") if p.header_charset and p.header_charset != p.encoding else "")
        + f", {p.seconds:.1f}s",
        highlight=False,
    )
    if p.moved_to:
        out.print(escape(f"    moved permanently to {p.moved_to}: update the feed list"), highlight=False)
    elif p.final_url and p.final_url != p.url:
        out.print(escape(f"    redirected to {p.final_url}"), highlight=False)


@app.command("discover")
def discover_cmd(
    url: Annotated[str, typer.Argument(help="The outlet's home page (or any page that declares its feeds).")],
    data_dir: DataOpt = None,
    allow_private_hosts: PrivateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find an outlet's feeds from its home page (<link rel="alternate">, feed-like links, common paths),
    probe each, and print entries ready for the feed list."""
    log.configure(json=as_json or None)
    now = datetime.now(UTC)
    try:
        settings = settings_from(data_dir=data_dir, allow_private_hosts=allow_private_hosts)
        with Fetcher(settings) as fetcher:
            found = discover.discover(fetcher, url, now=now, workers=settings.fetch_workers)
    except (ConfigError, FetchError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(asdict(found), ensure_ascii=False, indent=2))
        return
    if found.home_error:
        out.print(escape(f"home page: {found.home_error}"), highlight=False)
    out.print(f"{len(found.candidates)} candidates tried, {len(found.feeds)} feeds found", highlight=False)
    for p in found.feeds:
        _print_probe(p)
    if found.entries:
        out.print("\n# For the feed list (seeds/feeds.yaml, under `feeds:`):", highlight=False)
        out.print(escape(yaml.safe_dump(found.entries, allow_unicode=True, sort_keys=False)), highlight=False)
