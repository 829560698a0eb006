"""Command line: ``python -m pipeline run|demo|search|related|profile|retag|feeds``. Wiring and printing only."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pipeline import log
from pipeline.analysis.related import related
from pipeline.cli import alerts, compare, profile, setup
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
    progress_bar,
    settings_from,
)
from pipeline.errors import ConfigError, IndexingError, PipelineError
from pipeline.ingest.feeds import enabled_feeds, load_feeds
from pipeline.records import FeedConfig
from pipeline.run import RunSummary, run_cycle
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.embedded import stop_recorded, usable_dir
from pipeline.store.locks import held
from pipeline.stories.cluster import prepare_index
from pipeline.topics.retag import retag_all

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(profile.app, name="profile")
app.add_typer(alerts.app, name="alerts")
app.add_typer(compare.app, name="compare")
app.add_typer(setup.app, name="setup")

SEED_QUERY = "سليماني موسكو روسيا إيران الأسد"
DEMO_TIMEOUTS: dict[str, float] = {"connect_timeout": 2.0, "read_timeout": 2.0, "total_timeout": 15.0}


def _run(settings: Settings, feeds: list[FeedConfig], *, as_json: bool) -> RunSummary:
    with progress_bar(not as_json) as update, open_index(settings) as es:
        return run_cycle(settings, es, feeds, progress=update)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _alerted(summary: RunSummary) -> str:
    if summary.alerts_sent is None:
        return "not run"
    return f"{summary.alerts_sent} / {summary.alerts_pending or 0}"


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
            "feeds ok / unchanged / failed / deferred",
            f"{summary.feeds_ok} / {summary.feeds_not_modified} / {summary.feeds_failed} / {summary.feeds_deferred}",
        ),
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
    for moved in summary.moved_feeds:
        out.print(
            f"[yellow]moved:[/yellow] feed {moved['feed']} now lives at {moved['moved_to']} — update the feed list"
        )
    for failure in summary.alert_failures:
        out.print(
            f"[yellow]alerts:[/yellow] profile {failure.get('profile', '')}: {failure.get('reason', '')}",
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
    as_json: JsonOpt = False,
) -> None:
    """Run one full cycle over the feed list and exit."""
    log.configure(json=as_json or None)
    try:
        settings = settings_from(
            feeds_file=feeds_file,
            es_url=es_url,
            es_index=es_index,
            data_dir=data_dir,
            allow_private_hosts=allow_private_hosts,
        )
        feeds = enabled_feeds(load_feeds(settings.feeds_file))
        if not feeds:
            fail(f"{settings.feeds_file}: no enabled feed")
        summary = _run(settings, feeds, as_json=as_json)
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
        _demo(base, base.data_dir / "demo", as_json=as_json)


def _demo(base: Settings, demo_dir: Path, *, as_json: bool) -> None:
    from pipeline.demo.server import SiteServer
    from pipeline.demo.site import build_site, demo_feeds

    try:
        # A server left running by a demo that was killed must not outlive the files it serves.
        stop_recorded(demo_dir / "es" / "data")
        shutil.rmtree(demo_dir, ignore_errors=True)
        # Alerts go to .eml files in DATA_DIR/demo/outbox (never to a real mail server from the demo).
        settings = base.with_(
            es_url=None,
            data_dir=demo_dir,
            allow_private_hosts=True,
            es_index="news-articles",
            smtp_url=None,
            alert_to=base.alert_to or ("analyst@example.org",),
            alert_from=base.alert_from or "news-pipeline@localhost",
            # The sample site is local and fast; its hanging feed should cost the demo seconds, not a minute.
            **DEMO_TIMEOUTS,
        )
        with SiteServer() as site:
            site.resources = dict(build_site(site.base_url))
            feeds = [FeedConfig(**f) for f in demo_feeds(site.base_url)]
            with progress_bar(not as_json) as update, open_index(settings) as es:
                summary = run_cycle(settings, es, feeds, progress=update)
                hits = index.search_articles(es, settings.es_index, SEED_QUERY, size=5)
    except PipelineError as e:
        fail(str(e))
    if as_json:
        print(
            json.dumps(
                {"summary": summary.to_dict(), "search": {"query": SEED_QUERY, **_hits_json(hits)}},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    print_summary(summary, as_json=False)
    out.print(f"\n[bold]Search for the seed topic:[/bold] {SEED_QUERY}")
    _print_hits(hits)
    outbox = sorted((demo_dir / "outbox").glob("*.eml"))
    if outbox:
        out.print(f"\n[bold]Alert digest[/bold] (open it in any mail client): {outbox[-1]}")
    out.print(
        f"\nThe demo index stays in {demo_dir}. Search it again with:\n"
        f"  DATA_DIR={demo_dir} python -m pipeline search 'حزب الله'"
    )


def _hits_json(resp: dict[str, Any]) -> dict[str, Any]:
    hits = resp["hits"]["hits"]
    return {
        "total": resp["hits"]["total"]["value"],
        "hits": [
            {"id": h["_id"], "score": h.get("_score"), **h["_source"], "highlight": h.get("highlight", {})}
            for h in hits
        ],
    }


def _marked(fragment: str) -> str:
    """Highlight tags from the index as terminal styling; everything else printed literally."""
    parts = escape(fragment).split("<mark>")
    return parts[0] + "".join("[reverse]" + p.replace("</mark>", "[/reverse]", 1) for p in parts[1:])


def _print_hits(resp: dict[str, Any]) -> None:
    data = _hits_json(resp)
    out.print(f"{data['total']} matching articles")
    for n, hit in enumerate(data["hits"], start=1):
        title = (hit["highlight"].get("title") or [escape(hit.get("title", ""))])[0]
        out.print(f"\n[bold]{n}. {_marked(title)}[/bold]", highlight=False)
        out.print(
            escape(f"   {hit.get('outlet', '')} · {hit.get('published_at', '')} · id {hit['id']}"), highlight=False
        )
        for fragment in hit["highlight"].get("body", [])[:2]:
            out.print(f"   … {_marked(fragment)} …", highlight=False)
        out.print(escape(f"   {hit.get('canonical_url') or hit.get('url', '')}"), highlight=False)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Arabic full-text query.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 10,
    sort: Annotated[str, typer.Option("--sort", help="best or newest")] = "best",
    outlet: Annotated[str | None, typer.Option("--outlet", help="Only this outlet.")] = None,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the indexed articles (Arabic analyzer: hamza forms, clitics and stems match)."""
    if sort not in ("best", "newest"):
        raise typer.BadParameter("--sort must be best or newest")
    log.configure(json=as_json or None)
    try:
        settings = settings_from(es_url=es_url, es_index=es_index, data_dir=data_dir)
        with open_index(settings) as es:
            if not es.indices.exists_alias(name=settings.es_index):
                fail(f"no index {settings.es_index!r} yet: run `python -m pipeline run` (or `demo`) first")
            resp = index.search_articles(es, settings.es_index, query, size=limit, sort=sort, outlet=outlet)
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(_hits_json(resp), ensure_ascii=False, indent=2))
    else:
        _print_hits(resp)


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
        settings = settings_from(es_url=es_url, es_index=es_index, data_dir=data_dir)
        with open_index(settings) as es:
            data = related(es, settings.es_index, article_id, similar=similar)
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    out.print(f"[bold]{escape(data['article']['title'])}[/bold] — {escape(data['article']['outlet'])}")
    out.print(f"\n[bold]Same story[/bold] ({len(data['cluster'])} articles, cluster {data['cluster_id']})")
    for member in data["cluster"]:
        mark = "▶ " if member["is_this"] else "  "
        lag = "first" if member["diff"] is None else f"+{member['lag_minutes']} min"
        out.print(
            escape(f"{mark}{member['published_at']}  {lag:>10}  {member['outlet']}: {member['title']}"), highlight=False
        )
        diff = member["diff"] or {}
        for sentence in diff.get("added", []):
            out.print(f"      [green]+ {escape(sentence)}[/green]", highlight=False)
        for sentence in diff.get("removed", []):
            out.print(f"      [red]- {escape(sentence)}[/red]", highlight=False)
        for pair in diff.get("reworded", []):
            out.print(f"      [yellow]~ {escape(pair['this'])}[/yellow]", highlight=False)
    out.print("\n[bold]Similar stories[/bold]")
    for hit in data["similar"]:
        out.print(
            escape(f"  {hit['published_at']}  {hit['outlet']}: {hit['title']}  (id {hit['id']})"), highlight=False
        )


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


@app.command()
def feeds(
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    feeds_file: Annotated[Path | None, typer.Option("--feeds")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-feed health: last success, failures in a row, last error, moved feeds."""
    log.configure(json=as_json or None)
    try:
        settings = settings_from(es_url=es_url, es_index=es_index, data_dir=data_dir, feeds_file=feeds_file)
        configured = load_feeds(settings.feeds_file)
        with open_index(settings) as es:
            prepare_index(es, settings.es_index)
            states = index.load_feed_states(es, settings.es_index, [f.id for f in configured])
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    rows: list[dict[str, Any]] = []
    for f in configured:
        s = states.get(f.id)
        rows.append(
            {
                "feed": f.id,
                "outlet": f.outlet,
                "enabled": f.enabled,
                "url": f.url,
                "last_success": s.last_success if s else None,
                "last_attempt": s.last_attempt if s else None,
                "consecutive_failures": s.consecutive_failures if s else 0,
                "last_error": s.last_error if s else None,
                "moved_to": s.moved_to if s else None,
                "status": _health(s),
            }
        )
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    t = Table(title="Feed health", title_justify="left")
    for col in ("feed", "outlet", "status", "last success", "failures", "last error"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["feed"],
            r["outlet"],
            r["status"],
            r["last_success"] or "never",
            str(r["consecutive_failures"]),
            (r["last_error"] or "")[:80] + (f" (moved to {r['moved_to']})" if r["moved_to"] else ""),
        )
    out.print(t)


def _health(state: Any) -> str:
    if state is None or not state.last_attempt:
        return "never polled"
    if state.consecutive_failures >= 3:
        return "dead?"
    if state.consecutive_failures:
        return "failing"
    return "moved" if state.moved_to else "ok"


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
