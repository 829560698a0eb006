"""``python -m pipeline compare story|topic``: how outlets covered a story or a topic (issue #9)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pipeline import log
from pipeline.analysis.story import STORY_WINDOW_HOURS, StoryComparison, compare_story, format_lag
from pipeline.analysis.terms import PRIOR_SCALE
from pipeline.analysis.topic import (
    SAMPLE_PER_OUTLET,
    TOP_CLUSTERS,
    TOP_TERMS,
    TopicComparison,
    compare_topic,
)
from pipeline.cli.common import (
    DataOpt,
    EsUrlOpt,
    IndexOpt,
    JsonOpt,
    err,
    fail,
    open_index,
    out,
    progress_bar,
    read_settings,
)
from pipeline.errors import ConfigError, IndexingError, NoCoverage
from pipeline.records import parse_when
from pipeline.topics.profiles import load_profiles

app: typer.Typer = typer.Typer(
    help="Compare coverage across outlets: one story, or a whole topic.", no_args_is_help=True
)

HtmlOpt = Annotated[
    Path | None, typer.Option("--html", help="Also write a self-contained right-to-left HTML report here.")
]


def _write_html(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        fail(f"cannot write {path}: {e}")
    err.print(f"wrote {path}", highlight=False)


@app.command("story")
def story(
    ref: Annotated[str, typer.Argument(help="An article id (shown by `search`) or a story cluster id.")],
    window_hours: Annotated[
        int, typer.Option("--window-hours", min=1, max=24 * 60, help="Outlets active this long after the first report.")
    ] = STORY_WINDOW_HOURS,
    html: HtmlOpt = None,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Who carried a story, in order of publication with the lag behind the first, each version's
    headline, what each version added to or dropped from the earliest one, and who did not carry it."""
    log.configure(json=as_json or None)
    try:
        settings = read_settings(es_url=es_url, es_index=es_index, data_dir=data_dir)
        with open_index(settings) as es:
            data = compare_story(es, settings.es_index, ref, window_hours=window_hours)
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    if html is not None:
        from pipeline.analysis.report_html import story_html

        _write_html(html, story_html(data))
    if as_json:
        print(json.dumps(data.to_dict(), ensure_ascii=False, indent=2))
        return
    _print_story(data)


def _print_story(data: StoryComparison) -> None:
    first = data.first
    out.print(escape(f"{first.title} — first: {first.outlet} at {first.published_at}"), style="bold")
    t = Table(title=f"Story {data.cluster_id}: {len(data.versions)} versions", title_justify="left")
    for col in ("#", "outlet", "published", "lag", "headline"):
        t.add_column(col)
    for n, v in enumerate(data.versions, start=1):
        mark = "▶ " if v.is_this else ""
        _row(t, f"{mark}{n}", v.outlet, v.published_at, format_lag(v.lag_minutes), v.title)
    out.print(t)
    for n, v in enumerate(data.versions, start=1):
        diff = v.diff
        if not diff or not (diff.added or diff.removed or diff.reworded):
            continue
        out.print(escape(f"\n{n}. {v.outlet} against the first version:"), style="bold", highlight=False)
        for sentence in diff.added:
            out.print(f"  [green]+ {escape(sentence)}[/green]", highlight=False)
        for sentence in diff.removed:
            out.print(f"  [red]- {escape(sentence)}[/red]", highlight=False)
        for pair in diff.reworded:
            out.print(f"  [yellow]~ {escape(pair.this)}[/yellow]", highlight=False)
    silent = ", ".join(s.outlet for s in data.not_carried_by) or "none"
    out.print(escape(f"\nActive within {data.window_hours} h but did not carry it: {silent}"), highlight=False)


@app.command("topic")
def topic(
    profile_id: Annotated[str, typer.Argument(help="A topic profile id (the articles' `topics` tag).")],
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="From this date (YYYY-MM-DD), ISO time (UTC) or period back from now (7d, 36h, 2w)."
        ),
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="To the end of this date, or this ISO time.")] = None,
    outlets: Annotated[str | None, typer.Option("--outlets", help="Only these outlets, comma-separated.")] = None,
    clusters: Annotated[int, typer.Option("--clusters", min=1, max=500, help="Largest story clusters.")] = TOP_CLUSTERS,
    terms: Annotated[int, typer.Option("--terms", min=1, max=100, help="Distinctive terms per outlet.")] = TOP_TERMS,
    sample: Annotated[
        int, typer.Option("--sample", min=1, max=10_000, help="Most recent articles per outlet read for the terms.")
    ] = SAMPLE_PER_OUTLET,
    prior_scale: Annotated[
        float, typer.Option("--prior-scale", min=0.001, max=1000, help="Prior strength, times the sample's tokens.")
    ] = PRIOR_SCALE,
    html: HtmlOpt = None,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Coverage of a topic by outlet: articles per day, share of the topic against share of all coverage,
    time to first report on the largest story clusters and who never covered them, and each outlet's
    distinctive terms."""
    log.configure(json=as_json or None)
    try:
        start = parse_when(since) if since else None
        end = parse_when(until, end=True) if until else None
    except ValueError as e:
        raise typer.BadParameter(f"--since/--until: {e}") from None
    chosen = [o.strip() for o in outlets.split(",") if o.strip()] if outlets else None
    try:
        settings = read_settings(es_url=es_url, es_index=es_index, data_dir=data_dir)
        title = next((p.title for p in load_profiles(settings.profiles_dir) if p.id == profile_id), None)
        with progress_bar(not as_json) as update, open_index(settings) as es:
            data = compare_topic(
                es,
                settings.es_index,
                profile_id,
                since=start,
                until=end,
                outlets=chosen,
                clusters=clusters,
                terms=terms,
                sample=sample,
                prior_scale=prior_scale,
                progress=update,
            )
    except NoCoverage as e:
        known = "" if title else f" (no profile {profile_id!r} in {settings.profiles_dir} either)"
        fail(f"{e}{known}")
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    data = replace(data, profile_title=title)
    if html is not None:
        from pipeline.analysis.report_html import topic_html

        _write_html(html, topic_html(data, title=title))
    if as_json:
        print(json.dumps(data.to_dict(), ensure_ascii=False, indent=2))
        return
    _print_topic(data)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _row(table: Table, *cells: object) -> None:
    # Outlets, headlines and terms come from the index: never read as rich markup.
    table.add_row(*(escape(str(cell)) for cell in cells))


def _print_topic(data: TopicComparison) -> None:
    period, totals = data.period, data.totals
    name = data.profile_title or data.profile
    out.print(
        escape(
            f"{name}: {totals.topic_articles} of {totals.articles} articles, {totals.topic_clusters} stories, "
            f"{period.since[:10]} to {period.until[:10]} (end exclusive)"
        ),
        style="bold",
        highlight=False,
    )
    t = Table(title="Share of the topic against share of all coverage", title_justify="left")
    for col in ("outlet", "topic", "all", "topic share", "all share", "ratio", "z", "verdict"):
        t.add_column(col, justify="left" if col in ("outlet", "verdict") else "right")
    for r in data.coverage:
        _row(
            t,
            r.outlet,
            str(r.topic_articles),
            str(r.all_articles),
            _pct(r.topic_share),
            _pct(r.all_share),
            "" if r.ratio is None else f"{r.ratio:.2f}",
            "" if r.z is None else f"{r.z:.2f}",
            r.verdict,
        )
    out.print(t)
    series = data.over_time
    t = Table(title=f"Articles on the topic per {series.interval}", title_justify="left")
    t.add_column(series.interval)
    for outlet in series.outlets:
        t.add_column(escape(outlet), justify="right")
    for n, start in enumerate(series.starts):
        _row(t, start, *(str(counts[n]) for counts in series.outlets.values()))
    out.print(t)
    t = Table(title=f"The {len(data.clusters)} largest stories: lag behind the first report", title_justify="left")
    for col in ("#", "first report", "headline", "copies", "others (lag)", "never carried it"):
        t.add_column(col)
    for n, c in enumerate(data.clusters, start=1):
        others = ", ".join(f"{o.outlet} {format_lag(o.lag_minutes)}" for o in c.outlets[1:])
        _row(t, str(n), f"{c.first_outlet} {c.first_at}", c.title, str(c.articles), others, ", ".join(c.missing))
    out.print(t)
    t = Table(title="Time to first report by outlet (largest stories)", title_justify="left")
    for col in ("outlet", "covered", "first", "median lag", "missed"):
        t.add_column(col)
    for lag in data.lag_by_outlet:
        _row(
            t,
            lag.outlet,
            str(lag.clusters_covered),
            str(lag.first_reports),
            format_lag(lag.median_lag_minutes),
            str(lag.clusters_missed),
        )
    out.print(t)
    if data.never_covered_largest:
        out.print(escape(f"Never covered any of them: {', '.join(data.never_covered_largest)}"), highlight=False)
    method = data.terms.method
    t = Table(
        title=f"Distinctive terms (log-odds, informative Dirichlet prior, alpha0 {method.alpha0:.0f}; "
        f"≤ {method.sample_per_outlet} articles per outlet)",
        title_justify="left",
    )
    for col in ("outlet", "sampled", "terms (z)"):
        t.add_column(col)
    for outlet, entry in data.terms.outlets.items():
        _row(
            t,
            outlet,
            str(entry.articles_sampled),
            "، ".join(f"{x.term} ({x.z:.1f})" for x in entry.terms) or f"none with z ≥ {method.min_z}",
        )
    out.print(t)
