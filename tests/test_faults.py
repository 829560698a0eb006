"""Faults injected into real runs: ``python -m pipeline run`` as a subprocess, killed with ``kill -9`` at
chosen points, interrupted with SIGINT and SIGTERM, its search server killed, two runs on one data
directory, an extraction process killed. After each, a plain second run must succeed without any
clean-up by hand, and the index must hold every expected article exactly once with cluster fields that
agree with each other — the same clusters a run that was never interrupted makes.

The points are chosen from outside, never by hooks in the product: a page of the loopback site that
does not answer (the run is downloading and extracting), or a proxy in front of the search server that
holds a chosen request (the run is between two writes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import cli, start_cli
from conftest import wait_until
from elasticsearch import Elasticsearch
from proxy import FaultProxy, drop

from pipeline.demo.server import SiteServer
from pipeline.demo.site import build_site, demo_feeds, expectations
from pipeline.ingest.urls import canonical_url
from pipeline.records import FeedConfig
from pipeline.run import run_cycle
from pipeline.settings import Settings
from pipeline.store.embedded import embedded_elasticsearch, recorded_server, start_server, stop_group, stop_recorded
from pipeline.store.es import connect

pytestmark = pytest.mark.slow
INDEXED = {"indexed", "feed_fallback"}


# --- the world ---------------------------------------------------------------------------------------


class Held:
    """A page of the site whose first request is answered only when released: while it is held, the run
    is downloading and extracting the others. Later requests are answered at once."""

    def __init__(self, site: SiteServer, path: str) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        resource = site.resources[path]
        lock = threading.Lock()

        def handler(req: BaseHTTPRequestHandler) -> None:
            with lock:
                first = not self.reached.is_set()
                self.reached.set()
            if first:
                self.release.wait(timeout=60)
            try:
                req.send_response(resource.status)
                for name, value in resource.headers.items():
                    req.send_header(name, value)
                req.send_header("Content-Length", str(len(resource.body)))
                req.end_headers()
                req.wfile.write(resource.body)
            except OSError:
                pass  # the run was killed meanwhile

        site.handlers[path] = handler


@pytest.fixture
def world(demo_site: SiteServer, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The sample site (with its failing feeds), its feed list, and one page held until released."""
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(yaml.safe_dump({"feeds": demo_feeds(demo_site.base_url)}, allow_unicode=True), encoding="utf-8")
    page = next(e.path for e in expectations() if e.outcome == "indexed").split("#")[0]
    held = Held(demo_site, page)
    yield {"site": demo_site, "feeds": feeds, "held": held}
    held.release.set()


def run_env(world: dict[str, Any], tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "FEEDS_FILE": str(world["feeds"]),
        "DATA_DIR": str(tmp_path / "data"),
        "ALLOW_PRIVATE_HOSTS": "1",
        "EXTRACT_WORKERS": "2",
        "ALERT_TO": "analyst@example.org",
        **extra,
    }


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def wait_for_workers(pid: int) -> set[int]:
    """The run's extraction processes, once both exist."""
    wait_until(lambda: len(_python_children(pid)) >= 2, timeout=60)
    return _python_children(pid)


def _python_children(pid: int) -> set[int]:
    return {p for p in descendants(pid) if "spawn_main" in _cmdline(p)}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- what must hold afterwards -------------------------------------------------------------------------


def clusters_of(es: Elasticsearch, alias: str) -> dict[str, dict[str, Any]]:
    """canonical URL → document, after checking the documents agree with each other: one per URL, every
    cluster's size counted right on each member, its head present, earliest, and its own head."""
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, query={"match_all": {}}, size=1000)["hits"]["hits"]
    urls = Counter(h["_source"]["canonical_url"] for h in hits)
    assert all(n == 1 for n in urls.values()), [u for u, n in urls.items() if n > 1]
    by_id = {h["_id"]: h["_source"] for h in hits}
    sizes = Counter(doc["cluster_id"] for doc in by_id.values())
    for doc_id, doc in by_id.items():
        head = doc["cluster_id"]
        assert doc["cluster_size"] == sizes[head], (doc["canonical_url"], doc["cluster_size"], sizes[head])
        assert head in by_id and by_id[head]["cluster_id"] == head and by_id[head]["duplicate_of"] is None
        assert doc["duplicate_of"] == (None if doc_id == head else head)
        assert by_id[head]["published_at"] <= doc["published_at"]
    return {doc["canonical_url"]: doc for doc in by_id.values()}


def paths(groups: set[frozenset[str]], site: SiteServer) -> set[frozenset[str]]:
    return {frozenset(url.removeprefix(site.base_url) for url in group) for group in groups}


def partition(docs: dict[str, dict[str, Any]]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for url, doc in docs.items():
        groups.setdefault(doc["cluster_id"], set()).add(url)
    return {frozenset(g) for g in groups.values()}


@pytest.fixture
def clean_partition(es: Elasticsearch, es_url: str, tmp_path: Path) -> set[frozenset[str]]:
    """The clusters of a run that nothing interrupted, of the same sample on a site of its own, in an
    index of its own."""
    alias = f"clean{os.getpid()}{int(time.time() * 1000) % 100000}-articles"
    settings = Settings(
        es_url=es_url, es_index=alias, data_dir=tmp_path / "clean", allow_private_hosts=True, read_timeout=2
    )
    with SiteServer() as site:
        site.resources = dict(build_site(site.base_url))
        run_cycle(settings, connect(settings, es_url), [FeedConfig(**f) for f in demo_feeds(site.base_url)])
        docs = clusters_of(es, alias)
        # URLs differ by the site's port: compare by path.
        groups = {frozenset(url.removeprefix(site.base_url) for url in group) for group in partition(docs)}
    for suffix in ("000001", "feeds", "seen", "alerts", "lsh", "journal"):
        es.indices.delete(index=f"{alias}-{suffix}", ignore_unavailable=True)
    return groups


def wanted(site: SiteServer) -> set[str]:
    return {canonical_url(site.base_url + e.path) for e in expectations() if e.outcome in INDEXED}


def one_line_error(stderr: str) -> str:
    """The command's error: one line, no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


# --- kill -9 at chosen points, then a plain run ------------------------------------------------------------


class HoldAfter:
    """A proxy fault: lets requests through until ``after`` has matched one, then holds the next request
    that ``hold`` matches until released (the run is killed meanwhile)."""

    def __init__(self, *, after: str | bytes, hold: str = "") -> None:
        self.after = after if isinstance(after, bytes) else re.escape(after).encode()
        self.hold = re.escape(hold).encode()
        self.armed = not after
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, handler: BaseHTTPRequestHandler, path: str, body: bytes) -> bool:
        compact = (path.encode() + b" " + body).replace(b" ", b"")
        if self.armed and not self.reached.is_set() and re.search(self.hold, compact):
            self.reached.set()
            self.release.wait(timeout=60)
            drop(handler)
            return True
        if not self.armed and re.search(self.after, compact):
            self.armed = True  # this one goes through; the next matching one is held
        return False


def _articles_bulk(alias: str) -> bytes:
    # An action line naming the articles' index itself (not its -seen or -lsh companions).
    return re.escape(f'"_index":"{alias}"').encode() + rb"[,}]"


@pytest.mark.parametrize(
    "point",
    [
        "filing buckets",  # before any article is written
        "after the article bulk",  # articles written, their clusters not yet updated
        "writing the seen ledger",  # articles and clusters written, the ledger not yet
    ],
)
def test_kill_9_between_writes_then_a_plain_run_converges(
    point: str,
    world: dict[str, Any],
    es: Elasticsearch,
    es_url: str,
    alias: str,
    tmp_path: Path,
    clean_partition: set[frozenset[str]],
) -> None:
    world["held"].release.set()  # downloads run freely; the proxy picks the moment
    fault = {
        "filing buckets": HoldAfter(after="", hold=f'"_index":"{alias}-lsh"'),
        "after the article bulk": HoldAfter(after=_articles_bulk(alias)),
        "writing the seen ledger": HoldAfter(after="", hold=f'"_index":"{alias}-seen"'),
    }[point]
    proxy = FaultProxy(es_url, fault)
    try:
        run = start_cli("run", env=run_env(world, tmp_path, ES_URL=proxy.url, ES_INDEX=alias), out=tmp_path / "first")
        try:
            assert fault.reached.wait(timeout=120), (tmp_path / "first.stderr").read_text()[-3000:]
            family = descendants(run.pid)
            os.kill(run.pid, signal.SIGKILL)
            run.wait(timeout=30)
        finally:
            fault.release.set()
    finally:
        proxy.close()
    wait_until(lambda: not alive(family), timeout=15)  # the extraction workers died with it
    again = cli("run", "--json", env=run_env(world, tmp_path, ES_URL=es_url, ES_INDEX=alias))
    assert again.returncode == 0, again.stderr[-3000:]
    docs = clusters_of(es, alias)
    assert set(docs) == wanted(world["site"])
    assert paths(partition(docs), world["site"]) == clean_partition
    if point == "after the article bulk":
        assert json.loads(again.stdout)["recovered"] > 0  # the dead run's clusters were finished


def test_kill_9_during_extraction_on_the_embedded_default_then_a_plain_run(
    world: dict[str, Any], tmp_path: Path
) -> None:
    env = run_env(world, tmp_path)
    run = start_cli("run", env=env, out=tmp_path / "first")
    assert world["held"].reached.wait(timeout=120)
    workers = wait_for_workers(run.pid)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    wait_until(lambda: not alive(workers), timeout=15)
    data = tmp_path / "data" / "es" / "data"
    assert recorded_server(data) is not None  # the killed run's server is still there…
    world["held"].release.set()
    again = cli("run", "--json", env=env)  # …and a plain second run just works
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["indexed"] == len(wanted(world["site"]))
    assert recorded_server(data) is None  # the last user stopped it


# --- signals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("mode", ["embedded", "es_url"])
def test_a_signal_stops_the_run_cleanly(
    signum: int, code: int, mode: str, world: dict[str, Any], es_url: str, alias: str, tmp_path: Path
) -> None:
    extra = {"ES_URL": es_url, "ES_INDEX": alias} if mode == "es_url" else {}
    run = start_cli("run", env=run_env(world, tmp_path, **extra), out=tmp_path / "run")
    assert world["held"].reached.wait(timeout=120)
    wait_for_workers(run.pid)
    family = descendants(run.pid)
    started = time.monotonic()
    os.kill(run.pid, signum)
    assert run.wait(timeout=60) == code
    assert time.monotonic() - started < 20
    stderr = (tmp_path / "run.stderr").read_text()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert "stopped" in stderr
    # No worker, no server left behind (the resource tracker leaves once the last worker has gone).
    try:
        wait_until(lambda: not alive(family), timeout=10)
    except AssertionError:
        raise AssertionError([_cmdline(p) for p in alive(family)]) from None
    assert recorded_server(tmp_path / "data" / "es" / "data") is None
    world["held"].release.set()
    again = cli("run", "--json", env=run_env(world, tmp_path, **extra))
    assert again.returncode == 0, again.stderr[-3000:]


# --- the search server dies --------------------------------------------------------------------------------


def test_search_server_killed_mid_run_is_one_line_then_the_next_run_catches_up(
    world: dict[str, Any], tmp_path: Path
) -> None:
    server, url = start_server(tmp_path / "es")
    try:
        env = run_env(world, tmp_path, ES_URL=url, ES_INDEX="news-articles", ES_RETRY_SECONDS="2")
        run = start_cli("run", env=env, out=tmp_path / "first")
        assert world["held"].reached.wait(timeout=120)
        stop_group(server)  # SIGTERM: it saves what it had, then it is gone
        world["held"].release.set()
        assert run.wait(timeout=120) == 1
        error = one_line_error((tmp_path / "first.stderr").read_text())
        assert "cannot connect" in error, error
    finally:
        stop_group(server)
    server, url = start_server(tmp_path / "es", port=int(url.rsplit(":", 1)[1]))
    try:
        again = cli("run", "--json", env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        docs = clusters_of(Elasticsearch(url, request_timeout=30), "news-articles")
        assert set(docs) == wanted(world["site"])
    finally:
        stop_group(server)


def test_a_brief_outage_of_the_search_server_costs_a_pause_not_the_cycle(
    world: dict[str, Any], es: Elasticsearch, es_url: str, alias: str, tmp_path: Path
) -> None:
    # Every request is dropped for about 1.5 s once the articles are being written: the client waits it
    # out with backoff, and the cycle completes.
    window: dict[str, float] = {}

    def fault(handler: BaseHTTPRequestHandler, path: str, body: bytes) -> bool:
        if "start" not in window and re.search(_articles_bulk(alias), body.replace(b" ", b"")):
            window["start"] = time.monotonic()
        if "start" in window and time.monotonic() - window["start"] < 1.5:
            window["dropped"] = window.get("dropped", 0) + 1
            drop(handler)
            return True
        return False

    world["held"].release.set()
    proxy = FaultProxy(es_url, fault)
    try:
        done = cli("run", "--json", env=run_env(world, tmp_path, ES_URL=proxy.url, ES_INDEX=alias))
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr[-3000:]
    assert 2 <= window["dropped"] <= 12  # retried with growing waits, not hammered back to back
    assert set(clusters_of(es, alias)) == wanted(world["site"])


# --- two runs, one data directory ----------------------------------------------------------------------


def test_two_runs_on_one_data_dir_share_the_embedded_server(world: dict[str, Any], tmp_path: Path) -> None:
    env = run_env(world, tmp_path)
    first = start_cli("run", "--json", env=env, out=tmp_path / "first")
    assert world["held"].reached.wait(timeout=120)
    world["held"].release.set()
    os.kill(first.pid, signal.SIGSTOP)  # the first run is mid-cycle for as long as the second one runs
    try:
        second = cli("run", "--json", env=env)  # shares the first one's server, and ends first
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert first.wait(timeout=120) == 0, (tmp_path / "first.stderr").read_text()[-3000:]
    data = tmp_path / "data" / "es" / "data"
    assert recorded_server(data) is None  # the last one out stopped it
    indexed = [json.loads(p.read_text())["indexed"] for p in [tmp_path / "first.stdout"]] + [
        json.loads(second.stdout)["indexed"]
    ]
    assert sum(indexed) == len(wanted(world["site"]))  # each article indexed by one of them, once
    with embedded_elasticsearch(tmp_path / "data") as url:
        assert set(clusters_of(Elasticsearch(url, request_timeout=30), "news-articles")) == wanted(world["site"])


def test_a_second_demo_on_one_data_dir_is_refused_with_the_other_pid(tmp_path: Path) -> None:
    demo_dir = tmp_path / "data"
    first = start_cli("demo", env={"DATA_DIR": str(demo_dir)}, out=tmp_path / "first")
    try:
        wait_until(lambda: (demo_dir / "demo" / "es").is_dir(), timeout=60)
        os.kill(first.pid, signal.SIGSTOP)  # the first demo is mid-run for as long as the second one tries
        try:
            second = cli("demo", env={"DATA_DIR": str(demo_dir)})
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 1
        error = one_line_error(second.stderr)
        assert f"pid {first.pid}" in error and "demo" in error, error
        assert first.wait(timeout=120) == 0, (tmp_path / "first.stderr").read_text()[-3000:]
        assert json.loads(cli("search", "الأسد", "--json", env={"DATA_DIR": str(demo_dir / "demo")}).stdout)["hits"]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        stop_recorded(demo_dir / "demo" / "es" / "data")


# --- an extraction process dies -----------------------------------------------------------------------------


def test_an_extraction_process_killed_mid_run_costs_no_article(
    world: dict[str, Any], es: Elasticsearch, es_url: str, alias: str, tmp_path: Path
) -> None:
    run = start_cli("run", "--json", env=run_env(world, tmp_path, ES_URL=es_url, ES_INDEX=alias), out=tmp_path / "r")
    assert world["held"].reached.wait(timeout=120)
    victim = min(wait_for_workers(run.pid))
    os.kill(victim, signal.SIGKILL)  # what the out-of-memory killer does to a worker on a hostile page
    world["held"].release.set()
    assert run.wait(timeout=120) == 0, (tmp_path / "r.stderr").read_text()[-3000:]
    assert set(clusters_of(es, alias)) == wanted(world["site"])


# --- unusable local state --------------------------------------------------------------------------------


def test_a_data_dir_that_is_a_file_is_one_line(world: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    for data_dir in (blocker, blocker / "below"):
        done = cli("run", env={**run_env(world, tmp_path), "DATA_DIR": str(data_dir)})
        assert done.returncode == 1
        assert "is not a writable directory" in one_line_error(done.stderr)
