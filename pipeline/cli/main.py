"""Command line: ``python -m pipeline run|demo|search|related|profile|retag|feeds|alerts|compare|setup``. Wiring
and printing only."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from pipeline import log
from pipeline.analysis.search import search as search_index
from pipeline.analysis.story import related
from pipeline.cli import alerts, compare, feeds, profile, setup
from pipeline.cli.common import (
    DEMO_INDEX,
    DataOpt,
    EsUrlOpt,
    IndexOpt,
    JsonOpt,
    err,
    fail,
    load_profiles_checked,
    open_index,
    out,
    progress_bar,
    read_settings,
    settings_from,
)
from pipeline.cli.search import print_result, search_cmd
from pipeline.errors import ConfigError, IndexingError, PipelineError
from pipeline.ingest.feeds import enabled_feeds, load_feeds
from pipeline.records import FeedConfig
from pipeline.run import RunSummary, run_cycle
from pipeline.settings import DATA_DIR_FEEDS, DEMO_DIR, Settings
from pipeline.store.embedded import holds_index, stop_recorded, usable_dir
from pipeline.store.locks import held
from pipeline.stories.cluster import prepare_index
from pipeline.topics.retag import retag_all

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(profile.app, name="profile")
app.add_typer(alerts.app, name="alerts")
app.add_typer(compare.app, name="compare")
app.add_typer(setup.app, name="setup")
app.add_typer(feeds.app, name="feeds")
app.command("search")(search_cmd)

# The seed topic in the search language: either backer, with Assad (OR binds closer than the words).
SEED_QUERY = "(روسيا OR إيران OR سليماني) الأسد"
DEMO_TIMEOUTS: dict[str, float] = {"connect_timeout": 2.0, "read_timeout": 2.0, "total_timeout": 15.0}


def _run(settings: Settings, feeds: list[FeedConfig], *, as_json: bool, due_only: bool) -> RunSummary:
    with progress_bar(not as_json) as update, open_index(settings) as es:
        return run_cycle(settings, es, feeds, progress=update, due_only=due_only)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _alerted(summary: RunSummary) -> str:
    if summary.alerts_sent is None:
        return "not run"
    return f"{summary.alerts_sent} / {summary.alerts_pending or 0}"


def _ops(summary: RunSummary) -> str:
    if summary.ops_alerts_sent is None:
        return "off (set OPS_ALERT_TO)"
    return f"{summary.ops_alerts_sent} / {summary.ops_alerts_pending or 0}"


def print_summary(summary: RunSummary, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2))
        return
    t = Table(title="Run summary", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    not_yet = "[dim]not built yet[/dim]"
    rows: list[tuple[str, Any]] = [
        (
            "feeds ok / unchanged / failed / not due",
            f"{summary.feeds_ok} / {summary.feeds_not_modified} / {summary.feeds_failed} / {summary.feeds_deferred}",
        ),
        ("feed health", _counts(summary.feed_states) or "-"),
        ("items seen in feeds", summary.items_seen),
        ("already known", summary.items_known + summary.items_same_url),
        ("new articles", summary.items_new),
        ("pages downloaded / failed", f"{summary.pages_downloaded} / {summary.pages_failed}"),
        ("body from the feed (page gave none)", summary.feed_fallbacks),
        ("no usable body", summary.extract_failed),
        ("skipped by language", _counts(summary.skipped_language) or 0),
        ("exact duplicates dropped", summary.exact_duplicates),
        (
            "near-duplicates clustered",
            not_yet if summary.near_duplicates_clustered is None else summary.near_duplicates_clustered,
        ),
        ("tagged per profile", not_yet if summary.tagged is None else _counts(summary.tagged) or "no profile"),
        ("indexed", summary.indexed),
        ("index failures", summary.index_failed),
        ("already indexed, unchanged", summary.unchanged),
        ("stories alerted / pending", _alerted(summary)),
        ("operator alerts sent / pending", _ops(summary)),
        ("time", f"{summary.seconds:.1f}s"),
    ]
    if summary.stage_seconds:
        # "cluster+index" is what the run waited for after the last page; "overlapped", what ran meanwhile.
        rows.append(("time by stage", ", ".join(f"{k} {v:.1f}s" for k, v in summary.stage_seconds.items())))
    for name, value in rows:
        t.add_row(name, str(value))
    out.print(t)
    if summary.failed_feeds:
        ft = Table(title="Failed feeds", title_justify="left")
        for col in ("feed", "reason", "failures in a row"):
            ft.add_column(col)
        for f in summary.failed_feeds:
            ft.add_row(f["feed"], f["reason"], str(f["consecutive_failures"]))
        out.print(ft)
    for change in summary.state_changes:
        if change.news:  # the reasons of failures are in the table above
            out.print(escape(f"feed {change.feed}: {change.previous} → {change.state}"), highlight=False)
    for moved in summary.moved_feeds:
        out.print(
            f"[yellow]moved:[/yellow] feed {moved['feed']} now lives at {moved['moved_to']} — update the feed list"
        )
    for failure in summary.alert_failures:
        out.print(
            f"[yellow]alerts:[/yellow] profile {failure.get('profile', '')}: {failure.get('reason', '')}",
            highlight=False,
        )
    for failure in summary.ops_alert_failures:
        out.print(
            f"[yellow]operator alerts:[/yellow] feed {failure.get('feed', '')}: {failure.get('reason', '')}",
            highlight=False,
        )
    if summary.reached_no_feed:
        out.print(
            "[yellow]No feed could be reached.[/yellow] No network here? `python -m pipeline demo` runs the "
            "same cycle over a bundled sample site."
        )


@app.command()
def run(
    feeds_file: Annotated[Path | None, typer.Option("--feeds", help="Feed list [env FEEDS_FILE].")] = None,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    allow_private_hosts: Annotated[bool | None, typer.Option("--allow-private-hosts/--no-private-hosts")] = None,
    poll_all: Annotated[
        bool, typer.Option("--all", help="Poll every enabled feed now, whatever its schedule (next_poll_at).")
    ] = False,
    ops_alert_to: Annotated[
        str | None, typer.Option("--ops-alert-to", help="Operators' addresses for feed incidents [env OPS_ALERT_TO].")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one full cycle and exit: poll the feeds that are due (all of them with --all), download,
    extract, index, alert."""
    log.configure(json=as_json or None)
    try:
        settings = settings_from(
            feeds_file=feeds_file,
            es_url=es_url,
            es_index=es_index,
            data_dir=data_dir,
            allow_private_hosts=allow_private_hosts,
            ops_alert_to=tuple(a.strip() for a in ops_alert_to.split(",") if a.strip()) if ops_alert_to else None,
        )
        feeds = enabled_feeds(load_feeds(settings.feeds_file))
        if not feeds:
            fail(f"{settings.feeds_file}: no enabled feed")
        summary = _run(settings, feeds, as_json=as_json, due_only=not poll_all)
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    print_summary(summary, as_json=as_json)


@app.command()
def demo(
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a full cycle over a bundled sample of Arabic feeds served on loopback, then search it.

    Uses its own embedded index under DATA_DIR/demo (made afresh each time), never ES_URL."""
    log.configure(json=as_json or None)
    with ExitStack() as stack:
        try:
            base = settings_from(data_dir=data_dir)
            # One demo at a time per DATA_DIR: each starts afresh and would delete the other's files.
            stack.enter_context(held(usable_dir(base.data_dir) / "demo.lock", what="the demo cannot start"))
        except PipelineError as e:
            fail(str(e))
        _demo(base, base.data_dir / DEMO_DIR, as_json=as_json)


def _demo(base: Settings, demo_dir: Path, *, as_json: bool) -> None:
    from pipeline.demo import DEMO_ALERT_FROM, DEMO_ALERT_TO, DEMO_OPS_ALERT_TO
    from pipeline.demo.server import SiteServer
    from pipeline.demo.site import build_site, demo_feeds

    try:
        # A server left running by a demo that was killed must not outlive the files it serves.
        stop_recorded(demo_dir / "es" / "data")
        shutil.rmtree(demo_dir, ignore_errors=True)
        # Alerts go to .eml files in DATA_DIR/demo/outbox (never to a real mail server from the demo): the
        # analysts' digest, and the operators' email about the sample's stale feed.
        settings = base.with_(
            es_url=None,
            data_dir=demo_dir,
            feeds_file=demo_dir / DATA_DIR_FEEDS,
            allow_private_hosts=True,
            es_index=DEMO_INDEX,
            smtp_url=None,
            alert_to=base.alert_to or DEMO_ALERT_TO,
            alert_from=base.alert_from or DEMO_ALERT_FROM,
            ops_alert_to=base.ops_alert_to or DEMO_OPS_ALERT_TO,
            # The sample site is local and fast; its hanging feed should cost the demo seconds, not a minute.
            **DEMO_TIMEOUTS,
        )
        with SiteServer() as site:
            # Dated as if published in the last days: only the sample's stale feed looks stale.
            site.resources = dict(build_site(site.base_url, now=datetime.now(UTC)))
            listed = demo_feeds(site.base_url, stale=True)
            # The demo's feed list stays with its data: `feeds` and the other commands run with
            # DATA_DIR=<demo dir> read it (settings.DATA_DIR_FEEDS), not the seed list.
            demo_dir.mkdir(parents=True, exist_ok=True)
            settings.feeds_file.write_text(
                yaml.safe_dump({"feeds": listed}, allow_unicode=True, sort_keys=False), encoding="utf-8"
            )
            feeds = [FeedConfig(**f) for f in listed]
            with progress_bar(not as_json) as update, open_index(settings) as es:
                summary = run_cycle(settings, es, feeds, progress=update)
                found = search_index(es, settings.es_index, SEED_QUERY, size=5, cluster=True)
    except PipelineError as e:
        fail(str(e))
    if as_json:
        print(
            json.dumps(
                {"summary": summary.to_dict(), "search": found.to_dict()},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    print_summary(summary, as_json=False)
    out.print("\n[bold]Search for the seed topic:[/bold]", highlight=False)
    print_result(found)
    for path in sorted((demo_dir / "outbox").glob("*.eml")):
        subject = str(BytesParser(policy=default).parsebytes(path.read_bytes())["Subject"] or "")
        what = "Operator alert" if subject.startswith("[feed health]") else "Alert digest"
        out.print(f"\n[bold]{what}[/bold] (open it in any mail client): {path}", highlight=False)
        out.print(escape(f"  {subject}"), highlight=False)
    # The read commands find the demo's index by themselves while DATA_DIR holds none of its own.
    prefix = "" if not holds_index(base.data_dir) else f"DATA_DIR={demo_dir} "
    if base.es_index != DEMO_INDEX:
        prefix = f"ES_INDEX={DEMO_INDEX} DATA_DIR={demo_dir} "
    if base.es_url:
        prefix = f"ES_URL= {prefix or f'DATA_DIR={demo_dir} '}"
    out.print(
        f"\nThe demo index stays in {demo_dir}. Search it again, and see its feeds' health, with:\n"
        f"  {prefix}python -m pipeline search '\"حزب الله\" OR سليماني' --cluster\n"
        f"  {prefix}python -m pipeline feeds",
        highlight=False,
    )


@app.command("related")
def related_cmd(
    article_id: Annotated[str, typer.Argument(help="An article's id (shown by `search`).")],
    similar: Annotated[int, typer.Option("--similar", min=0, max=100, help="How many similar stories.")] = 10,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The article's story cluster (outlets in order of publication, what each version changed), then
    similar stories."""
    log.configure(json=as_json or None)
    try:
        settings = read_settings(es_url=es_url, es_index=es_index, data_dir=data_dir)
        with open_index(settings) as es:
            data = related(es, settings.es_index, article_id, similar=similar)
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(data.to_dict(), ensure_ascii=False, indent=2))
        return
    out.print(f"[bold]{escape(data.article.title)}[/bold] — {escape(data.article.outlet)}")
    out.print(f"\n[bold]Same story[/bold] ({len(data.cluster)} articles, cluster {data.cluster_id})")
    for member in data.cluster:
        mark = "▶ " if member.is_this else "  "
        lag = "first" if member.diff is None else f"+{member.lag_minutes} min"
        out.print(escape(f"{mark}{member.published_at}  {lag:>10}  {member.outlet}: {member.title}"), highlight=False)
        if member.diff is None:
            continue
        for sentence in member.diff.added:
            out.print(f"      [green]+ {escape(sentence)}[/green]", highlight=False)
        for sentence in member.diff.removed:
            out.print(f"      [red]- {escape(sentence)}[/red]", highlight=False)
        for pair in member.diff.reworded:
            out.print(f"      [yellow]~ {escape(pair.this)}[/yellow]", highlight=False)
    out.print("\n[bold]Similar stories[/bold]")
    for hit in data.similar:
        out.print(escape(f"  {hit.published_at}  {hit.outlet}: {hit.title}  (id {hit.id})"), highlight=False)


@app.command()
def retag(
    profile_id: Annotated[str | None, typer.Option("--profile", help="Re-tag with this profile only.")] = None,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-tag the indexed articles in place after a profile changed (nothing is downloaded)."""
    log.configure(json=as_json or None)
    try:
        settings = settings_from(es_url=es_url, es_index=es_index, data_dir=data_dir)
        profiles = load_profiles_checked(settings, profile_id)
        with progress_bar(not as_json) as update, open_index(settings) as es:
            prepare_index(es, settings.es_index)
            progress = (lambda done, total: update("retag", done, total)) if update else None
            summary = retag_all(es, settings.es_index, profiles, only=profile_id, progress=progress)
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(asdict(summary), ensure_ascii=False, indent=2))
        return
    out.print(
        f"re-tagged: {summary.scanned} articles read, {summary.changed} changed, {summary.failed} failed; "
        f"now tagged: {_counts(summary.tagged) or 'no profile'}"
    )


class Stopped(BaseException):
    """Ctrl-C or SIGTERM. It unwinds like KeyboardInterrupt — every ``finally`` runs: workers stopped,
    the embedded server left or stopped — but is not one: typer turns KeyboardInterrupt into a bare exit
    130 before ``main`` could say what happened, and would do so for SIGTERM too."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    raise Stopped(signum)


@app.command("standalone")
def standalone_cmd(
    demo: Annotated[bool, typer.Option("--demo", help="Poll the bundled sample feeds served on loopback.")] = False,
    port: Annotated[int, typer.Option("--port", help="Airflow UI and API port on 127.0.0.1.")] = 8080,
    data_dir: DataOpt = None,
) -> None:
    """Run Airflow (standalone) with this project's DAGs and the embedded search server, until Ctrl-C."""
    import time

    from pipeline.ops.standalone import standalone

    log.configure(json=None)
    try:
        settings = settings_from(data_dir=data_dir)
        with standalone(settings, demo=demo, port=port) as running:
            out.print(f"Airflow UI: [bold]{running.ui_url}[/bold] (no login on loopback)")
            out.print(f"search server: {running.es_url}   feeds: {running.feeds_file}")
            out.print(f"logs: {running.airflow_home / 'standalone.log'} — Ctrl-C stops everything")
            while running.process.poll() is None:
                time.sleep(1)
            fail(f"airflow standalone exited with code {running.process.returncode}: see the log")
    except (Stopped, KeyboardInterrupt):
        err.print("stopping…")  # how standalone is meant to end: everything above has stopped
    except PipelineError as e:
        fail(str(e))


def main() -> None:
    """``python -m pipeline``: the commands, and the one place where anything they let escape becomes a
    one-line reason and an exit code — never a traceback. Ctrl-C and SIGTERM stop a command cleanly
    (workers and the embedded server with it) and exit 130 and 143."""
    signal.signal(signal.SIGTERM, _stop)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started ignoring it (nohup, &)
        signal.signal(signal.SIGINT, _stop)
    try:
        # Not standalone: click would turn Ctrl-C into "Aborted!" and let everything else out as a traceback.
        # It hands back the code of a typer.Exit instead of raising it.
        code = app(standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as usage:  # a usage error: what click prints, exit 2
        usage.show()  # type: ignore[attr-defined]
        sys.exit(getattr(usage, "exit_code", 2))
    except (Stopped, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
        for each in (signal.SIGINT, signal.SIGTERM):  # a second signal must not interrupt the goodbye
            signal.signal(each, signal.SIG_IGN)
        what = "terminated" if signum == signal.SIGTERM else "interrupted"
        err.print(f"[yellow]{what}:[/yellow] stopped; what this run had not finished is taken up by the next one")
        sys.exit(128 + signum)
    except PipelineError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        sys.exit(1)
    except OSError as e:
        # Disk full, a directory that is a file, no permission: say what and where, in one line.
        where = f" ({e.filename})" if e.filename else ""
        err.print(f"[red]error:[/red] {e.strerror or type(e).__name__}{where}", highlight=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
