"""Real servers on loopback for the tests: the embedded Elasticsearch-compatible server (one per
session, one alias per test) and HTTP sites serving fixture feeds, pages and hostile endpoints."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from smtp_server import RecordingSmtp

from pipeline.demo.server import SiteServer
from pipeline.demo.site import build_site
from pipeline.settings import Settings
from pipeline.store.embedded import start_server, stop_group
from pipeline.stories.cluster import prepare_index


def wait_until(condition: Callable[[], bool], *, timeout: float = 5.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError("condition not met within timeout")


@pytest.fixture(scope="session")
def es_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("es")
    proc, url = start_server(data)
    yield url
    stop_group(proc)
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def es(es_url: str) -> Iterator[Elasticsearch]:
    client = Elasticsearch(es_url, request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def alias(es: Elasticsearch) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}-articles"
    yield name
    for suffix in ("000001", "feeds", "seen", "alerts", "lsh", "journal", "incidents"):
        es.indices.delete(index=f"{name}-{suffix}", ignore_unavailable=True)


@pytest.fixture
def indexed(es: Elasticsearch, alias: str) -> str:
    """``alias`` with its template, backing index and state indices set up, as every command does first."""
    prepare_index(es, alias)
    return alias


@pytest.fixture
def settings(es_url: str, alias: str, tmp_path: Path) -> Settings:
    return Settings(
        es_url=es_url,
        es_index=alias,
        data_dir=tmp_path / "data",
        allow_private_hosts=True,
        fetch_workers=8,
        connect_timeout=2,
        read_timeout=3,
        max_retry_after=2,
        extract_workers=2,
    )


@pytest.fixture
def site() -> Iterator[SiteServer]:
    server = SiteServer().start()
    yield server
    server.stop()


@pytest.fixture
def demo_site() -> Iterator[SiteServer]:
    """The bundled sample site (the one `demo` serves), on a loopback port."""
    server = SiteServer().start()
    server.resources = dict(build_site(server.base_url))
    yield server
    server.stop()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event slow handlers wait on; set at teardown so no handler thread outlives the test."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def smtp() -> Iterator[RecordingSmtp]:
    """A real SMTP server on 127.0.0.1 that records every message (``tests/smtp_server.py``)."""
    with RecordingSmtp() as server:
        yield server
