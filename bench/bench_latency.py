"""Latency: how long from a story's publication to the analyst's inbox.

A loopback site of several outlets (``bench/latency_site.py``) whose RSS feeds publish new on-topic articles
at random times over ``--minutes``, each feed at its own rhythm (a few minutes to most of an hour between
items, so adaptive polling gives them different intervals); an aiosmtpd server records when each digest is
accepted. For every article published during the window the bench records the time from its ``pubDate`` to

  (a) indexed: the article's document answers a get by id (``records.doc_id(canonical_url)``), polled
      every quarter of a second;
  (b) emailed: the mail server accepted a digest whose text carries the article's link;

and prints p50, p95 and max of both, for two deployments on the same schedule of publications:

  airflow  ``python -m pipeline standalone`` (Airflow standalone, its DAGs as shipped: news_poll every
           minute planning the due feeds, news_process and news_alerts on asset events);
  run      the plain loop: ``python -m pipeline run``, then ``python -m pipeline feeds --json``, a wait until
           the earliest ``next_poll_at`` of the enabled feeds (none when it has passed), and again.

Both use one search server the bench starts (the embedded noida-db, given to them as ``ES_URL``, as an
Elasticsearch cluster would be), the seed profile, and every other setting at its default but
``ALLOW_PRIVATE_HOSTS=1`` (the site is on loopback) and ``ALERT_MAX_STORIES=200`` (the first digest
carries the feeds' history). Each mode first takes in the feeds' history (items published before the
window, which teach the poller each feed's rhythm) and waits until it is indexed and emailed; then the
window opens. After it closes the bench waits for the stragglers (up to the longest interval plus five
minutes). ``--chart`` renders the distributions with plotly in headless Chromium (no kaleido).

    python bench/bench_latency.py [--minutes 30] [--modes airflow,run] [--chart docs/img/latency.png]
    python bench/bench_latency.py --smoke        # a minute per mode, fast feeds, FEED_MIN_MINUTES=1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.latency_site import Article, LatencySite, Outlet, Writer, publication_times  # noqa: E402
from pipeline.ingest.urls import canonical_url  # noqa: E402
from pipeline.records import doc_id  # noqa: E402
from pipeline.settings import PROJECT_ROOT  # noqa: E402
from pipeline.store.embedded import embedded_elasticsearch, free_port, wait_ready  # noqa: E402
from pipeline.topics.profiles import load_profiles  # noqa: E402

ALIAS = "latency-articles"
ALERT_TO = "analyst@example.org"
PROFILE_ID = "iran-russia-assad"

# Outlets (fictional) and their mean gap between items, in minutes: three that publish every few minutes
# (polled at the 5-minute floor of FEED_MIN_MINUTES), two every twelve minutes, two every twenty-four
# (polled every ~6 and ~12 minutes: half their usual gap).
OUTLETS = [
    Outlet("sham-wire", "وكالة الشام للأنباء", 4),
    Outlet("furat-live", "الفرات مباشر", 4),
    Outlet("sahel-news", "أخبار الساحل", 5),
    Outlet("marsad-daily", "المرصد اليومي", 12),
    Outlet("qalam-post", "صحيفة القلم", 12),
    Outlet("afaq-weekly", "آفاق الأسبوعية", 24),
    Outlet("nour-tv", "قناة النور", 24),
]
# --smoke: feeds in seconds, not minutes, and the poller's floor at one minute.
SMOKE_OUTLETS = [Outlet("sham-wire", "وكالة الشام للأنباء", 0.5), Outlet("marsad-daily", "المرصد اليومي", 1.5)]
HISTORY_ITEMS = 6  # per feed: what the poller learns a feed's rhythm from


def _now() -> float:
    return time.time()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the mail server ----------------------------------------------------------------------------


class Inbox:
    """aiosmtpd on 127.0.0.1 recording each message with the time its DATA was accepted."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.lock = threading.Lock()
        self.received: list[tuple[float, bytes]] = []
        inbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd
                with inbox.lock:
                    inbox.received.append((_now(), bytes(envelope.original_content or envelope.content or b"")))
                return "250 Message accepted for delivery"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, ready_timeout=10)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> Inbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def since(self, n: int) -> list[tuple[float, str]]:
        """Messages from the ``n``-th on: (accepted at, the text of every part)."""
        with self.lock:
            new = self.received[n:]
        out = []
        for at, data in new:
            message = BytesParser(policy=policy.default).parsebytes(data)
            parts = [p.get_content() for p in message.walk() if p.get_content_maintype() == "text"]
            out.append((at, "\n".join(str(p) for p in parts)))
        return out


# --- what is measured -----------------------------------------------------------------------------


@dataclass
class Tracked:
    article: Article
    url: str
    doc_id: str
    indexed_at: float | None = None
    emailed_at: float | None = None

    @property
    def published(self) -> float:
        return self.article.published.timestamp()


@dataclass
class Watch:
    """Polls the index four times a second for the articles published and not yet seen there, and reads the
    inbox for their links."""

    es_url: str
    inbox: Inbox
    tracked: list[Tracked]
    stop: threading.Event = field(default_factory=threading.Event)
    _read: int = 0

    def run(self) -> None:
        from elasticsearch import Elasticsearch

        es = Elasticsearch(self.es_url, request_timeout=30)
        while not self.stop.wait(0.25):
            self.step(es)
        self.step(es)

    def step(self, es: Any) -> None:
        now = _now()
        waiting = [t for t in self.tracked if t.indexed_at is None and t.published <= now]
        if waiting:
            try:
                docs = es.mget(index=ALIAS, ids=[t.doc_id for t in waiting], source=False)["docs"]
            except Exception:  # noqa: BLE001 - the index not there yet, or busy: ask again in a second
                docs = []
            found = {d["_id"] for d in docs if d.get("found")}
            for t in waiting:
                if t.doc_id in found:
                    t.indexed_at = now
        messages = self.inbox.since(self._read)
        self._read += len(messages)
        for at, text in messages:
            for t in self.tracked:
                if t.emailed_at is None and t.url in text:
                    t.emailed_at = at

    def done(self, articles: list[Tracked]) -> bool:
        return all(t.indexed_at is not None and t.emailed_at is not None for t in articles)


# --- the deployments ------------------------------------------------------------------------------


def _env(base: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    # The deployments get the bench's settings, not whatever this shell's environment says.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "ES_", "SMTP_", "FEED", "NEWS_", "POLL_", "ALERT_", "OPS_"))
    }
    env.update(base)
    if args.smoke:
        env["FEED_MIN_MINUTES"] = "1"
    for setting in args.env:
        name, _, value = setting.partition("=")
        env[name] = value
    return env


@contextmanager
def airflow_deployment(env: dict[str, str], workdir: Path) -> Iterator[dict[str, Any]]:
    """``python -m pipeline standalone`` until the block ends; yields what the report needs (its URL)."""
    port = free_port()
    log = (workdir / "standalone.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "standalone", "--port", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/api/v2/monitor/health", timeout=300, proc=proc)  # type: ignore[arg-type]
        yield {"url": url, "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)  # the command stops Airflow's process group itself
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _pipeline(args: list[str], env: dict[str, str], workdir: Path, timeout: float = 900) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    with (workdir / "run-loop.log").open("a", encoding="utf-8") as log:
        log.write(f"$ pipeline {' '.join(args)} → {done.returncode}\n{done.stderr[-4000:]}\n")
    if done.returncode != 0:
        raise RuntimeError(f"pipeline {' '.join(args)} exited {done.returncode}: {done.stderr[-1000:]}")
    return done.stdout


def feed_health(env: dict[str, str], workdir: Path) -> list[dict[str, Any]]:
    feeds: list[dict[str, Any]] = json.loads(_pipeline(["feeds", "--json"], env, workdir, timeout=120))
    return feeds


class RunLoop:
    """The plain loop: a cycle, then wait until the earliest feed is due (read from ``feeds --json``)."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.cycles: list[dict[str, float]] = []

    def cycle(self) -> float:
        """Run one cycle; return when the next one is due (epoch seconds)."""
        started = _now()
        _pipeline(["run", "--json"], self.env, self.workdir)
        ended = _now()
        due = [f["next_poll_at"] for f in feed_health(self.env, self.workdir) if f.get("enabled") and f["next_poll_at"]]
        self.cycles.append({"started": started, "seconds": ended - started})
        return min(datetime.fromisoformat(d.replace("Z", "+00:00")).timestamp() for d in due) if due else ended

    def until(self, deadline: float, finished: threading.Event) -> None:
        while _now() < deadline and not finished.is_set():
            due = self.cycle()
            finished.wait(max(0.0, min(due, deadline) - _now()))


def _dag_runs(url: str) -> list[dict[str, Any]]:
    import httpx

    runs: list[dict[str, Any]] = []
    offset = 0
    while True:
        resp = httpx.get(f"{url}/api/v2/dags/~/dagRuns", params={"limit": 100, "offset": offset}, timeout=30)
        resp.raise_for_status()
        page = resp.json()["dag_runs"]
        runs += page
        offset += len(page)
        if not page or offset >= resp.json()["total_entries"]:
            return runs


def _stamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def _span(run: dict[str, Any], start: str, end: str) -> float | None:
    a, b = _stamp(run.get(start)), _stamp(run.get(end))
    return b - a if a is not None and b is not None else None


def dag_run_figures(runs: list[dict[str, Any]], since: float) -> dict[str, Any]:
    """Per DAG, over the runs created since ``since``: how many, how long from queued to start and from start
    to end (medians)."""
    out: dict[str, Any] = {}
    for dag in ("news_poll", "news_process", "news_alerts"):
        mine = [r for r in runs if r["dag_id"] == dag and (_stamp(r.get("queued_at")) or 0) >= since]
        waits = [_span(r, "queued_at", "start_date") for r in mine]
        spans = [_span(r, "start_date", "end_date") for r in mine]
        out[dag] = {
            "runs": len(mine),
            "states": {s: sum(r["state"] == s for r in mine) for s in sorted({r["state"] for r in mine})},
            "queued_to_start_s": _median([w for w in waits if w is not None]),
            "run_s": _median([s for s in spans if s is not None]),
        }
    return out


# --- one mode -------------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return percentile(values, 50)


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (of n values, the ⌈q·n/100⌉-th smallest); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def measure(mode: str, args: argparse.Namespace, outlets: list[Outlet], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    [profile] = [p for p in load_profiles(PROJECT_ROOT / "seeds" / "profiles") if p.id == PROFILE_ID]
    writer = Writer(profile, rng)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-latency-{mode}-"))
    data_dir = workdir / "data"
    minutes = args.minutes
    with ExitStack() as stack:
        site = LatencySite(outlets)
        stack.callback(site.stop)
        inbox = stack.enter_context(Inbox())
        es_url = stack.enter_context(embedded_elasticsearch(workdir / "es"))
        feeds_file = workdir / "feeds.yaml"
        feeds_file.write_text(yaml.safe_dump(site.feeds_yaml(), allow_unicode=True), encoding="utf-8")
        # The history: HISTORY_ITEMS items per feed, up to now, at the feed's rhythm.
        start = _now()
        history: list[Article] = []
        for outlet in outlets:
            gap = outlet.gap_minutes * 60
            moment = start - rng.uniform(0, gap)
            for k in range(HISTORY_ITEMS):
                history.append(writer.write(outlet.feed_id, f"h{k}", datetime.fromtimestamp(int(moment), UTC)))
                moment -= rng.uniform(0.5 * gap, 1.5 * gap)
        site.add(history)
        env = _env(
            {
                "DATA_DIR": str(data_dir),
                "ES_URL": es_url,
                "ES_INDEX": ALIAS,
                "FEEDS_FILE": str(feeds_file),
                "SMTP_URL": inbox.url,
                "ALERT_TO": ALERT_TO,
                "ALERT_FROM": "news@127.0.0.1",
                "ALERT_MAX_STORIES": "200",
                "ALLOW_PRIVATE_HOSTS": "1",
            },
            args,
        )
        tracked_history = [Tracked(a, site.url(a), doc_id(canonical_url(site.url(a)))) for a in history]
        watch = Watch(es_url, inbox, list(tracked_history))
        watcher = threading.Thread(target=watch.run, name="watch", daemon=True)
        watcher.start()
        stack.callback(watcher.join)
        stack.callback(watch.stop.set)
        finished = threading.Event()
        loop = RunLoop(env, workdir)
        deployment: dict[str, Any] = {}
        print(f"[{mode}] work directory {workdir}; warming up on {len(history)} history items", file=sys.stderr)
        warm_started = _now()
        if mode == "airflow":
            deployment = stack.enter_context(airflow_deployment(env, workdir))
            print(f"[{mode}] Airflow at {deployment['url']}", file=sys.stderr)
        else:
            loop.cycle()
        _wait(lambda: watch.done(tracked_history), timeout=args.warmup_timeout, what="the history indexed and emailed")
        warmup = _now() - warm_started
        # The window: new items from now on, at each feed's rhythm.
        load_start = os.getloadavg()
        t0 = _now()
        end = t0 + minutes * 60
        new: list[Article] = []
        for outlet in outlets:
            for k, moment in enumerate(publication_times(rng, outlet.gap_minutes, start=t0, end=end)):
                new.append(writer.write(outlet.feed_id, f"n{k}", datetime.fromtimestamp(moment, UTC)))
        site.add(new)
        tracked = [Tracked(a, site.url(a), doc_id(canonical_url(site.url(a)))) for a in new]
        watch.tracked.extend(tracked)
        print(f"[{mode}] window {_iso(t0)} – {_iso(end)}: {len(new)} articles to publish", file=sys.stderr)
        longest = max(o.gap_minutes for o in outlets) / 2
        grace = (max(longest, 1 if args.smoke else 5) + (2 if args.smoke else 4)) * 60
        if mode == "airflow":
            _wait(lambda: _now() >= end and watch.done(tracked), timeout=end + grace - _now(), what=None)
        else:

            def run_until_done() -> None:
                loop.until(end + grace, finished)

            runner = threading.Thread(target=run_until_done, name="run-loop")
            runner.start()
            _wait(lambda: _now() >= end and watch.done(tracked), timeout=end + grace - _now(), what=None)
            finished.set()
            runner.join()
        feeds = feed_health(env, workdir)
        runs = dag_run_figures(_dag_runs(deployment["url"]), t0) if mode == "airflow" else None
        load = os.getloadavg()
    watcher.join()
    intervals = {f["id"]: f["interval_minutes"] for f in feeds}
    result = summarize(mode, tracked, intervals, outlets)
    result.update(
        window_minutes=minutes,
        warmup_seconds=round(warmup, 1),
        load_at_start=[round(x, 2) for x in load_start],
        load_at_end=[round(x, 2) for x in load],
        dag_runs=runs,
        run_cycles=(
            {"cycles": len(loop.cycles), "median_seconds": _median([c["seconds"] for c in loop.cycles])}
            if mode == "run"
            else None
        ),
        workdir=str(workdir),
    )
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _wait(condition: Any, *, timeout: float, what: str | None) -> None:
    deadline = _now() + timeout
    while not condition():
        if _now() >= deadline:
            if what:
                raise RuntimeError(f"gave up waiting for {what} after {timeout:.0f} s")
            return
        time.sleep(0.5)


def summarize(mode: str, tracked: list[Tracked], intervals: dict[str, Any], outlets: list[Outlet]) -> dict[str, Any]:
    articles = []
    for t in tracked:
        interval = intervals.get(t.article.feed_id)
        emailed = t.emailed_at - t.published if t.emailed_at else None
        articles.append(
            {
                "feed": t.article.feed_id,
                "url": t.url,
                "published": _iso(t.published),
                "indexed_s": round(t.indexed_at - t.published, 1) if t.indexed_at else None,
                "emailed_s": round(emailed, 1) if emailed is not None else None,
                "interval_min": interval,
                # The target: within one poll interval of the feed plus two minutes.
                "within_target": emailed is not None and interval is not None and emailed <= interval * 60 + 120,
            }
        )

    def stats(key: str) -> dict[str, Any]:
        values = [a[key] for a in articles if a[key] is not None]
        return {
            "n": len(values),
            "missing": len(articles) - len(values),
            "p50_s": percentile(values, 50),
            "p95_s": percentile(values, 95),
            "max_s": max(values) if values else None,
        }

    over = [a["emailed_s"] - a["interval_min"] * 60 for a in articles if a["emailed_s"] and a["interval_min"]]
    return {
        "mode": mode,
        "articles": articles,
        "indexed": stats("indexed_s"),
        "emailed": stats("emailed_s"),
        "within_target": sum(a["within_target"] for a in articles),
        "emailed_minus_interval": {"p95_s": percentile(over, 95), "max_s": max(over) if over else None},
        "feeds": {
            o.feed_id: {"gap_minutes": o.gap_minutes, "interval_minutes": intervals.get(o.feed_id)} for o in outlets
        },
    }


# --- report ---------------------------------------------------------------------------------------


def _m(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def report(results: list[dict[str, Any]]) -> None:
    print("| deployment | articles | indexed p50 | p95 | max | emailed p50 | p95 | max | within interval + 2 min |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        i, e = r["indexed"], r["emailed"]
        name = "Airflow (standalone)" if r["mode"] == "airflow" else "run loop"
        missing = f" ({e['missing']} never emailed)" if e["missing"] else ""
        print(
            f"| {name} | {len(r['articles'])} | {_m(i['p50_s'])} | {_m(i['p95_s'])} | {_m(i['max_s'])} | "
            f"{_m(e['p50_s'])} | {_m(e['p95_s'])} | {_m(e['max_s'])} | "
            f"{r['within_target']} of {len(r['articles'])}{missing} |"
        )
    print()
    print("| feed | mean gap | " + " | ".join(f"interval ({r['mode']})" for r in results) + " |")
    print("|---|---|" + "---|" * len(results))
    for feed, info in results[0]["feeds"].items():
        cells = " | ".join(f"{r['feeds'][feed]['interval_minutes']} min" for r in results)
        print(f"| {feed} | {info['gap_minutes']:g} min | {cells} |")
    print()
    for r in results:
        extra = r["dag_runs"] or r["run_cycles"]
        print(
            f"{r['mode']}: warm-up {r['warmup_seconds']} s; emailed minus interval p95 "
            f"{_m(r['emailed_minus_interval']['p95_s'])}, max {_m(r['emailed_minus_interval']['max_s'])}; "
            f"load (1, 5, 15 min) at the window's start {r['load_at_start']}, at the end {r['load_at_end']}; "
            f"{json.dumps(extra, ensure_ascii=False)}"
        )


def chart(results: list[dict[str, Any]], out: Path) -> None:
    """The latencies per article as cumulative distributions, rendered by headless Chromium from plotly's
    HTML (kaleido, plotly's own exporter, is not installed; Chromium is, for the UI tests)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = {"airflow": "Airflow (standalone)", "run": "run loop"}
    titles = [names[r["mode"]] for r in results]
    fig = make_subplots(rows=1, cols=len(results), subplot_titles=titles, shared_yaxes=True)
    colours = {"indexed_s": "#4c78a8", "emailed_s": "#e45756"}
    # One scale for every panel, so the deployments compare at a glance.
    longest = max((a[k] or 0) / 60 for r in results for a in r["articles"] for k in colours) or 1.0
    for col, r in enumerate(results, start=1):
        for key, label in (("indexed_s", "indexed"), ("emailed_s", "in the inbox")):
            values = sorted(a[key] / 60 for a in r["articles"] if a[key] is not None)
            share = [(k + 1) / len(r["articles"]) for k in range(len(values))]
            fig.add_trace(
                go.Scatter(
                    x=values, y=share, mode="lines+markers", line_shape="hv", name=label,
                    line={"color": colours[key]}, showlegend=col == 1,
                ),
                row=1, col=col,
            )  # fmt: skip
        p95 = r["emailed"]["p95_s"]
        if p95 is not None:
            fig.add_vline(x=p95 / 60, line_dash="dot", line_color="#e45756", row=1, col=col)
        fig.update_xaxes(title_text="minutes after publication", row=1, col=col, range=[0, longest * 1.05])
    fig.update_yaxes(title_text="share of articles", tickformat=".0%", range=[0, 1.03], row=1, col=1)
    n = len(results[0]["articles"])
    fig.update_layout(
        title=f"Publication → index and inbox, {n} articles over {results[0]['window_minutes']:g} min (dotted: p95)",
        width=1100, height=480, template="plotly_white", margin={"t": 80, "l": 60, "r": 20, "b": 60},
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="latency-chart-") as tmp:
        html = Path(tmp) / "latency.html"
        fig.write_html(
            html, include_plotlyjs=True, full_html=True, config={"displayModeBar": False, "staticPlot": True}
        )
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            raise SystemExit("no Chromium to render the chart (apt-get install chromium); the figures are above")
        subprocess.run(
            [
                browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--user-data-dir={tmp}/profile", "--window-size=1100,480", "--virtual-time-budget=10000",
                f"--screenshot={out.resolve()}", html.as_uri(),
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the feeds publish (default 30)")
    parser.add_argument("--modes", default="airflow,run", help="airflow, run or both (default airflow,run)")
    parser.add_argument("--seed", type=int, default=18, help="the publication schedule and the texts")
    parser.add_argument("--smoke", action="store_true", help="a minute per mode, fast feeds, FEED_MIN_MINUTES=1")
    parser.add_argument("--warmup-timeout", type=float, default=900.0, help="seconds to take in the history")
    parser.add_argument("--chart", type=Path, help="write the chart here (PNG)")
    parser.add_argument("--json", type=Path, help="write every article's figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (logs, Airflow's home)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for both deployments (repeat)"
    )
    args = parser.parse_args(argv)
    if args.smoke and args.minutes == 30.0:
        args.minutes = 1.0
    outlets = SMOKE_OUTLETS if args.smoke else OUTLETS
    print(f"load before: {[round(x, 2) for x in os.getloadavg()]}; {os.cpu_count()} cores", file=sys.stderr)
    print(f"started {_iso(_now())}, load {[round(x, 2) for x in os.getloadavg()]}, settings {args.env}")
    results = [measure(mode.strip(), args, outlets, args.seed) for mode in args.modes.split(",") if mode.strip()]
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    if args.chart:
        chart(results, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
