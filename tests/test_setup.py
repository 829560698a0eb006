"""``python -m pipeline setup`` — the compose ``setup`` service's command — against the embedded server,
a fake secured Elasticsearch and a fake Kibana on 127.0.0.1 that answer like the real APIs."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from elasticsearch import Elasticsearch
from test_kibana_objects import KIBANA_DIR, saved_objects

from pipeline.errors import IndexingError, KibanaError
from pipeline.ops import setup
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline.store.es import connect

# --- the template on the embedded server ---------------------------------------------------------------


def setup_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    prefixes = ("ES_", "KIBANA_", "PIPELINE_ES_", "DATA_DIR")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "setup", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=PROJECT_ROOT,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def full_article() -> dict[str, Any]:
    return {
        "url": "https://example.org/a?utm_source=x",
        "canonical_url": "https://example.org/a",
        "feed_id": "f1",
        "outlet": "صوت الشام",
        "title": "غارات روسية على ريف إدلب",
        "body": "قالت مصادر إن الطائرات الروسية شنت غارات على مواقع في ريف إدلب.",
        "summary": "غارات روسية",
        "author": None,
        "published_at": "2025-10-03T09:00:00Z",
        "fetched_at": "2025-10-03T09:05:00Z",
        "language": "ar",
        "content_hash": "h1",
        "word_count": 11,
        "body_source": "page",
        "cluster_id": "c1",
        "duplicate_of": None,
        "cluster_size": 2,
        "lsh_bands": ["b1", "b2"],
        "minhash": "AAAA",
        "topics": ["iran-russia-assad"],
        "topic_matches": [{"profile": "iran-russia-assad", "score": 7.5, "terms": ["روسيا", "إدلب"]}],
    }


@pytest.mark.slow
def test_setup_installs_the_template_on_the_embedded_server_and_loads_kibana(
    es_url: str, alias: str, es: Elasticsearch, kibana: FakeKibana
) -> None:
    kibana.starting = 0  # waiting for Kibana is tested on the function, at a faster poll
    result = setup_cli("--json", "--es-url", es_url, "--es-index", alias, "--kibana-url", kibana.url)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["template"] == f"{alias}-template" and report["kibana"]["imported"] == len(saved_objects())
    assert report["kibana"]["dashboards"] == [f"{kibana.url}/app/dashboards#/view/news-dashboard-coverage"]
    assert es.indices.exists_index_template(name=f"{alias}-template")
    assert list(es.indices.get_alias(name=alias)) == [f"{alias}-000001"]
    for suffix in ("feeds", "seen", "alerts"):
        assert es.indices.exists(index=f"{alias}-{suffix}")
    # Kibana got the data views re-pointed at this alias.
    (upload,) = kibana.uploads
    uploaded = [json.loads(line) for line in upload.content.decode().splitlines()]
    views = [o for o in uploaded if o["type"] == "index-pattern"]
    assert {v["attributes"]["title"] for v in views} == {alias, f"{alias}-alerts", f"{alias}-feeds"}
    # A document with every field the dashboards read goes in (strict mapping) and comes back whole.
    doc = full_article()
    es.index(index=alias, id="a1", document=doc, refresh=True)
    assert es.get(index=alias, id="a1")["_source"] == doc
    # And the aggregations the panels run answer on it.
    resp = es.search(
        index=alias,
        size=0,
        query={"bool": {"filter": [{"range": {"cluster_size": {"gt": 1}}}, {"term": {"topics": "iran-russia-assad"}}]}},
        aggs={
            "clusters": {"terms": {"field": "cluster_id"}, "aggs": {"outlets": {"cardinality": {"field": "outlet"}}}},
            "time": {"date_histogram": {"field": "published_at", "calendar_interval": "day"}},
        },
    )
    assert resp["hits"]["total"]["value"] == 1
    assert resp["aggregations"]["clusters"]["buckets"][0]["outlets"]["value"] == 1
    # Running it again changes nothing and fails nothing.
    again = setup_cli("--json", "--es-url", es_url, "--es-index", alias)
    assert again.returncode == 0, again.stderr
    assert es.get(index=alias, id="a1")["_source"] == doc


@pytest.mark.slow
def test_setup_without_es_url_sets_up_the_embedded_server(tmp_path: Path) -> None:
    result = setup_cli("--json", env={"DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["alias"] == "news-articles" and report["kibana"] is None
    assert report["indices"][0] == "news-articles-000001"
    assert (tmp_path / "es" / "data").is_dir()


# --- Kibana's import API ----------------------------------------------------------------------------


@dataclass
class Upload:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    filename: str
    content: bytes


@dataclass
class FakeKibana:
    """Answers like Kibana 8: ``/api/status`` (503 while starting, then 200) and the saved-objects import."""

    starting: int = 2  # status requests answered 503 before Kibana is "available"
    status_code: int = 200
    import_status: int = 200
    import_body: Callable[[bytes], dict[str, Any]] | None = None
    uploads: list[Upload] = field(default_factory=list)
    status_calls: int = 0
    url: str = ""


def _multipart(content_type: str, body: bytes) -> tuple[str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return str(part.get_filename()), part.get_payload(decode=True)
    raise AssertionError("no file part")


@pytest.fixture
def kibana() -> Iterator[FakeKibana]:
    fake = FakeKibana()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path != "/api/status":
                self.reply(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})
                return
            fake.status_calls += 1
            if fake.status_calls <= fake.starting:
                self.reply(503, {"statusCode": 503, "error": "Service Unavailable", "message": "not ready yet"})
            elif fake.status_code != 200:
                self.reply(fake.status_code, {"statusCode": fake.status_code, "message": "[security_exception]"})
            else:
                self.reply(200, {"version": {"number": "8.19.3"}, "status": {"overall": {"level": "available"}}})

        def do_POST(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            filename, content = _multipart(self.headers["Content-Type"], body)
            fake.uploads.append(Upload(parts.path, parse_qs(parts.query), dict(self.headers), filename, content))
            if fake.import_body is not None:
                self.reply(fake.import_status, fake.import_body(content))
                return
            count = len(content.splitlines())
            self.reply(200, {"success": True, "successCount": count, "successResults": []})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def test_import_waits_for_kibana_then_uploads_the_files_byte_for_byte(kibana: FakeKibana) -> None:
    headers = setup.kibana_headers(Settings(es_user="elastic", es_password="pässword"))
    result = setup.import_saved_objects(kibana.url + "/", setup.saved_objects(), headers=headers, interval=0.01)
    assert kibana.status_calls == 3  # two 503s waited out
    (upload,) = kibana.uploads
    assert upload.path == "/api/saved_objects/_import" and upload.query == {"overwrite": ["true"]}
    assert upload.content == b"".join(p.read_bytes() for p in sorted(KIBANA_DIR.glob("*.ndjson")))
    assert upload.filename.endswith(".ndjson")
    assert upload.headers["kbn-xsrf"] == "true"
    assert upload.headers["Authorization"] == "Basic " + base64.b64encode("elastic:pässword".encode()).decode()
    assert result.version == "8.19.3" and result.imported == len(saved_objects())
    assert {(o["type"], o["id"]) for o in result.objects} == {(o["type"], o["id"]) for o in saved_objects()}
    assert setup.kibana_headers(Settings(es_api_key="k3y"))["Authorization"] == "ApiKey k3y"


def test_objects_kibana_rejects_fail_the_setup_with_each_reason(es_url: str, alias: str, kibana: FakeKibana) -> None:
    def missing(content: bytes) -> dict[str, Any]:
        return {
            "success": False,
            "successCount": 0,
            "errors": [
                {
                    "id": "news-lens-top-matched-terms",
                    "type": "lens",
                    "title": "Top matched terms",
                    "error": {"type": "missing_references", "references": [{"type": "index-pattern", "id": "x"}]},
                }
            ],
        }

    kibana.starting = 0
    kibana.import_body = missing
    result = setup_cli("--es-url", es_url, "--es-index", alias, "--kibana-url", kibana.url)
    assert result.returncode == 1
    assert "lens/news-lens-top-matched-terms Top matched terms: missing_references index-pattern/x" in result.stderr
    assert "error:" in result.stderr and result.stdout == ""


def test_kibana_answering_an_error_fails_the_setup(kibana: FakeKibana) -> None:
    kibana.starting = 0
    kibana.import_status = 400
    kibana.import_body = lambda content: {
        "statusCode": 400,
        "error": "Bad Request",
        "message": "Invalid file extension",
    }
    with pytest.raises(KibanaError, match=r"refused the import \(HTTP 400\): Invalid file extension"):
        setup.import_saved_objects(kibana.url, setup.saved_objects(), headers={}, interval=0.01)


def test_refused_credentials_fail_at_once(kibana: FakeKibana) -> None:
    kibana.starting = 0
    kibana.status_code = 401
    started = time.monotonic()
    with pytest.raises(KibanaError, match=r"refused the credentials \(HTTP 401"):
        setup.import_saved_objects(kibana.url, setup.saved_objects(), headers={}, wait=30)
    assert time.monotonic() - started < 5
    assert kibana.uploads == []


def test_kibana_down_fails_with_a_clear_reason_and_exit_code_1(es_url: str, alias: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again at once: nothing listens there
    result = setup_cli("--es-url", es_url, "--es-index", alias, "--kibana-url", f"http://127.0.0.1:{port}",
                       "--kibana-wait", "1")  # fmt: skip
    assert result.returncode == 1
    assert f"Kibana at http://127.0.0.1:{port} was not available within 1s" in result.stderr
    assert "ConnectError" in result.stderr


def test_a_pipeline_user_without_a_password_is_refused(es_url: str, alias: str) -> None:
    result = setup_cli("--es-url", es_url, "--es-index", alias, "--pipeline-user", "news_pipeline")
    assert result.returncode == 1
    assert "needs a password: set PIPELINE_ES_PASSWORD" in result.stderr


# --- a secured cluster ----------------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    authorization: str


@pytest.fixture
def secured_es() -> Iterator[tuple[str, list[Recorded]]]:
    """Answers the security APIs the way Elasticsearch 8 does, and records what it was asked."""
    calls: list[Recorded] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = urlsplit(self.path).path
            calls.append(Recorded(self.command, path, json.loads(raw) if raw else None, self.headers["Authorization"]))
            if path == "/_security/api_key":
                body: dict[str, Any] = {
                    "id": "k1",
                    "name": calls[-1].body["name"],
                    "api_key": "s",
                    "encoded": "azE6cw==",
                }
            elif path.startswith("/_security/role/"):
                body = {"role": {"created": True}}
            elif path.startswith("/_security/user/") and not path.endswith("_password"):
                body = {"created": True}
            elif path == "/":
                body = {"version": {"number": "8.19.3"}, "tagline": "You Know, for Search"}
            else:
                body = {}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_HEAD = handle_any  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()
    server.server_close()


def test_a_secured_cluster_gets_the_kibana_password_a_least_privilege_user_and_an_api_key(
    secured_es: tuple[str, list[Recorded]],
) -> None:
    url, calls = secured_es
    settings = Settings(es_url=url, es_user="elastic", es_password="pw", es_index="news-articles")
    es = connect(settings, url)
    setup.set_kibana_system_password(es, "kpw")
    setup.ensure_pipeline_user(es, "news-articles", user="news_pipeline", password="ppw")
    key = setup.create_api_key(es, "news-articles", name="news-articles-pipeline-1")
    asked = {c.path: c.body for c in calls if c.method in {"PUT", "POST"}}
    assert asked["/_security/user/kibana_system/_password"] == {"password": "kpw"}
    role = asked["/_security/role/news_pipeline"]
    assert role["indices"] == [
        {"names": ["news-articles*"], "privileges": ["create_index", "manage", "read", "write", "view_index_metadata"]}
    ]
    assert role["cluster"] == ["monitor", "manage_index_templates"]  # no superuser, no security admin
    user = asked["/_security/user/news_pipeline"]
    assert user["roles"] == ["news_pipeline"] and user["password"] == "ppw"
    api = asked["/_security/api_key"]
    assert api["role_descriptors"] == {"news_pipeline": role}
    assert key == {"id": "k1", "name": "news-articles-pipeline-1", "encoded": "azE6cw=="}
    assert all(c.authorization == "Basic " + base64.b64encode(b"elastic:pw").decode() for c in calls)


def test_a_cluster_without_security_says_what_failed(es_url: str) -> None:
    es = Elasticsearch(es_url, request_timeout=10)
    with pytest.raises(IndexingError, match="could not set the kibana_system password"):
        setup.set_kibana_system_password(es, "x")


def test_setup_on_a_secured_cluster_does_each_step_in_the_order_kibana_needs(
    secured_es: tuple[str, list[Recorded]],
) -> None:
    url, calls = secured_es
    result = setup_cli(
        "--json",
        "--create-api-key",
        env={
            "ES_URL": url,
            "ES_USER": "elastic",
            "ES_PASSWORD": "pw",
            "KIBANA_SYSTEM_PASSWORD": "kpw",
            "PIPELINE_ES_USER": "news_pipeline",
            "PIPELINE_ES_PASSWORD": "ppw",
        },
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["kibana_system_password_set"] and report["pipeline_user"] == "news_pipeline"
    assert report["api_key"]["encoded"] == "azE6cw==" and report["api_key"]["name"].startswith(
        "news-articles-pipeline-"
    )
    writes = [c.path for c in calls if c.method in {"PUT", "POST"}]
    # Kibana's password first (Kibana is waiting for it), then the template, then the user and key.
    assert writes[0] == "/_security/user/kibana_system/_password"
    assert writes.index("/_index_template/news-articles-template") < writes.index("/_security/user/news_pipeline")
    assert writes[-1] == "/_security/api_key"
    assert "ppw" not in result.stdout and "kpw" not in result.stdout + result.stderr
