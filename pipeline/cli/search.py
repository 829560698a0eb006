"""``python -m pipeline search``: full-text search for analysts (issue #17). Wiring and printing only; the
query language, outlet names and the request are :mod:`pipeline.analysis.search`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from elasticsearch import Elasticsearch
from rich.markup import escape

from pipeline import log
from pipeline.analysis.search import (
    SORTS,
    OutletChoice,
    SearchResult,
    known_outlets,
    parse_query,
    resolve_outlet,
    search,
)
from pipeline.cli.common import (
    DataOpt,
    EsUrlOpt,
    IndexOpt,
    JsonOpt,
    err,
    fail,
    load_profiles_checked,
    open_index,
    out,
    read_settings,
)
from pipeline.errors import ConfigError, IndexingError
from pipeline.ingest.feeds import load_feeds
from pipeline.records import FeedConfig, parse_iso_or_none, parse_when
from pipeline.settings import Settings

QUERY_HELP = (
    'Words (all must be there), "exact phrase", OR (or |), -word or NOT word, (groups), prefix*. '
    "OR binds closer than the words around it."
)


def search_cmd(
    query: Annotated[str, typer.Argument(help=QUERY_HELP, show_default=False)],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500, help="At most this many hits.")] = 10,
    sort: Annotated[str, typer.Option("--sort", help="best (relevance) or newest.")] = "best",
    outlet: Annotated[
        str | None, typer.Option("--outlet", help="An outlet's name, part of it, or a feed id.", show_default=False)
    ] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", metavar="PROFILE", help="Only articles tagged with this profile.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Published from: 2025-10-03, an ISO time, or 36h / 7d / 2w ago.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Published until: a date (inclusive) or an ISO time.")
    ] = None,
    cluster: Annotated[
        bool, typer.Option("--cluster", help="One line per story (its best article) instead of one per copy.")
    ] = False,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the indexed articles: exact phrases in quotes, OR, -exclusions, grouping; filter by date,
    outlet and topic. Words match through the Arabic analyzer (hamza forms, clitics, stems); a quoted
    phrase matches exactly its words, whatever their spelling variants."""
    if sort not in SORTS:
        raise typer.BadParameter(f"--sort must be best or newest, not {sort!r}")
    try:
        parse_query(query)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="QUERY") from None
    try:
        start = parse_when(since) if since else None
        end = parse_when(until, end=True) if until else None
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--since/--until") from None
    if start and end and start >= end:
        raise typer.BadParameter(f"--since {since} is not before --until {until}")
    log.configure(json=as_json or None)
    try:
        settings = read_settings(es_url=es_url, es_index=es_index, data_dir=data_dir)
        if topic is not None:
            load_profiles_checked(settings, topic)
        with open_index(settings) as es:
            if not es.indices.exists_alias(name=settings.es_index):
                fail(
                    f"no index {settings.es_index!r} in {settings.es_url or settings.data_dir}: run "
                    "`python -m pipeline run` (or `python -m pipeline demo` for the bundled sample) first"
                )
            chosen = _outlet(es, settings, outlet) if outlet else None
            result = search(
                es,
                settings.es_index,
                query,
                size=limit,
                sort=sort,
                outlet=chosen,
                topic=topic,
                since=start,
                until=end,
                cluster=cluster,
            )
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    print_result(result)


def _outlet(es: Elasticsearch, settings: Settings, asked: str) -> OutletChoice:
    feeds: list[FeedConfig] = []
    try:
        feeds = load_feeds(settings.feeds_file)
    except ConfigError as e:
        # The index knows its outlets by itself; a broken feed list must not stop a search.
        err.print(f"[yellow]note:[/yellow] feed list not read ({escape(str(e).splitlines()[0])})", highlight=False)
    return resolve_outlet(asked, known_outlets(es, settings.es_index, feeds))


def when(value: str | None) -> str:
    """A stored time as printed: ``2025-10-03 09:15`` (UTC), 16 characters, never cut."""
    moment = parse_iso_or_none(value)
    return moment.strftime("%Y-%m-%d %H:%M") if isinstance(moment, datetime) else "date unknown"


def marked(fragment: str) -> str:
    """Highlight tags from the index as reverse video on a terminal and as **…** in a pipe (where styles
    are dropped); everything else printed literally."""
    fragment = " ".join(fragment.split())  # a snippet's line breaks would break the hit's block
    if out.is_terminal:
        parts = escape(fragment).split("<mark>")
        return parts[0] + "".join("[reverse]" + p.replace("</mark>", "[/reverse]", 1) for p in parts[1:])
    return escape(fragment.replace("<mark>", "**").replace("</mark>", "**"))


def _header(result: SearchResult) -> str:
    found = f"{result.total} article{'s' * (result.total != 1)}"
    if result.stories is not None:
        found += f" in {result.stories} stor{'ies' if result.stories != 1 else 'y'}"
    order = "newest first" if result.sort == "newest" else "best first"
    return f"{found} match{'es' * (result.total == 1)} {result.understood}  ({order})"


def _filters(result: SearchResult) -> str:
    parts = []
    if result.outlet is not None:
        parts.append(f"outlet {result.outlet.describe()}")
    if result.topic:
        parts.append(f"topic {result.topic}")
    if result.since:
        parts.append(f"from {when(result.since)}")
    if result.until:
        parts.append(f"before {when(result.until)}")
    return " · ".join(parts)


def print_result(result: SearchResult) -> None:
    """The hits as blocks of short lines (no table: Arabic titles and URLs wrap badly in columns, and a
    table cuts what does not fit), readable at 80 columns and greppable in a pipe."""
    out.print(escape(_header(result)), highlight=False)
    if _filters(result):
        out.print(escape(_filters(result)), highlight=False)
    if result.unnormalised:
        err.print(
            f"note: {result.unnormalised} articles were indexed before exact phrases existed and are not searched "
            "by quoted phrases: `python -m pipeline retag` (once) adds them",
            highlight=False,
        )
    for n, hit in enumerate(result.hits, start=1):
        out.print(f"\n[bold]{n}. {marked(hit.title_marked)}[/bold]", highlight=False)
        meta = f"{hit.outlet} · {when(hit.published_at)}"
        if hit.copies > 1:
            meta += f" · story of {hit.copies} copies"
        if hit.other_outlets:
            meta += " · also " + "، ".join(hit.other_outlets)
        out.print(escape("   " + meta), highlight=False)
        for fragment in hit.snippets[:2]:
            out.print(f"   … {marked(fragment)} …", highlight=False)
        out.print(escape(f"   {hit.url}"), highlight=False)
        out.print(
            escape(f"   id {hit.id}" + (f" · story {hit.cluster_id}" if hit.cluster_id != hit.id else "")),
            highlight=False,
        )
