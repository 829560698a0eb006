"""Deployment set-up: indices, Elasticsearch users, Kibana's saved objects (``python -m pipeline setup``).

The index template and indices are installed by ``clustering.prepare_index``, the very function every
embedded-default command calls, so the compose ``setup`` service and ``python -m pipeline run`` on a
laptop cannot disagree about the mapping. On a secured cluster it can also set the ``kibana_system``
password, create a least-privilege user for the pipeline, and mint an API key with the same rights.
Kibana's saved objects (``schemas/kibana/*.ndjson``) go through Kibana's own import API, once Kibana
answers.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.errors import ConfigError, KibanaError
from pipeline.settings import DEFAULT_INDEX, Settings
from pipeline.store import index
from pipeline.store.es import translated
from pipeline.stories.cluster import prepare_index

KIBANA_OBJECTS = index.SCHEMAS / "kibana"
# The alias the saved objects' data views are written for; another ES_INDEX gets them rewritten.
DEFAULT_ALIAS = DEFAULT_INDEX
PIPELINE_ROLE = "news_pipeline"
_log = log.get(__name__)


@dataclass(frozen=True, slots=True)
class KibanaImport:
    url: str
    version: str
    imported: int
    objects: list[dict[str, str]]  # {"type", "id", "title"} of each object sent

    @property
    def dashboard_urls(self) -> list[str]:
        return [f"{self.url}/app/dashboards#/view/{o['id']}" for o in self.objects if o["type"] == "dashboard"]


@dataclass(slots=True)
class SetupReport:
    alias: str
    template: str
    indices: list[str]
    kibana_system_password_set: bool = False
    pipeline_user: str | None = None
    api_key: dict[str, str] | None = None
    kibana: KibanaImport | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.kibana is not None:
            out["kibana"]["dashboards"] = self.kibana.dashboard_urls
        return out


def install_indices(es: Elasticsearch, alias: str) -> list[str]:
    """The template, the backing index behind ``alias`` and the state indices, exactly as every command
    sets them up (``clustering.prepare_index``); returns the index names.

    Raises:
        IndexingError: the cluster refused.
    """
    prepare_index(es, alias)
    names = index.Names(alias)
    return [names.backing, names.feeds, names.seen, names.alerts, names.lsh, names.journal, names.incidents]


def pipeline_role(alias: str) -> dict[str, Any]:
    """What the pipeline needs and no more: its own indices (articles, state, ledger) and their template."""
    return {
        # monitor: the client's opening GET /; manage_index_templates: ensure_indices on every start.
        "cluster": ["monitor", "manage_index_templates"],
        "indices": [
            {
                "names": [f"{alias}*"],
                "privileges": ["create_index", "manage", "read", "write", "view_index_metadata"],
            }
        ],
    }


def _security_call(what: str, call: Callable[[], Any]) -> Any:
    with translated(f"could not {what}"):
        return call()


def set_kibana_system_password(es: Elasticsearch, password: str) -> None:
    """Give the built-in ``kibana_system`` user the password Kibana was configured with.

    Raises:
        IndexingError: the cluster refused (security off, or the caller may not manage users).
    """
    _security_call(
        "set the kibana_system password",
        lambda: es.security.change_password(username="kibana_system", password=password),
    )


def ensure_pipeline_user(es: Elasticsearch, alias: str, *, user: str, password: str) -> None:
    """Create or update the role ``news_pipeline`` and the pipeline's user with ``password``. Idempotent.

    Raises:
        IndexingError: the cluster refused.
    """
    _security_call(
        f"create the role {PIPELINE_ROLE}", lambda: es.security.put_role(name=PIPELINE_ROLE, **pipeline_role(alias))
    )
    _security_call(
        f"create the user {user}",
        lambda: es.security.put_user(
            username=user, password=password, roles=[PIPELINE_ROLE], full_name="Arabic news pipeline"
        ),
    )


def create_api_key(es: Elasticsearch, alias: str, *, name: str) -> dict[str, str]:
    """A new API key limited to the pipeline's role: {"id", "name", "encoded"} (``encoded`` is ES_API_KEY).

    Raises:
        IndexingError: the cluster refused.
    """
    resp = _security_call(
        "create an API key",
        lambda: es.security.create_api_key(name=name, role_descriptors={PIPELINE_ROLE: pipeline_role(alias)}),
    )
    return {"id": str(resp["id"]), "name": str(resp["name"]), "encoded": str(resp["encoded"])}


def saved_objects(alias: str = DEFAULT_ALIAS, directory: Path = KIBANA_OBJECTS) -> bytes:
    """The NDJSON Kibana imports: every ``*.ndjson`` file of ``directory`` in name order. For an alias other
    than ``news-articles`` the data views are re-pointed at it (titles only: ids, and so every reference,
    stay the same).

    Raises:
        ConfigError: no saved objects, or a line that is not a JSON object.
    """
    files = sorted(directory.glob("*.ndjson"))
    if not files:
        raise ConfigError(f"no saved objects (*.ndjson) in {directory}")
    lines: list[str] = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path.name}:{n}: not JSON: {err}") from None
            if not isinstance(obj, dict) or not {"type", "id", "attributes"} <= obj.keys():
                raise ConfigError(f"{path.name}:{n}: not a saved object (type, id, attributes)")
            if alias == DEFAULT_ALIAS:
                lines.append(line)  # byte for byte what is committed
                continue
            title = obj.get("attributes", {}).get("title", "")
            if obj.get("type") == "index-pattern" and title.startswith(DEFAULT_ALIAS):
                obj["attributes"]["title"] = alias + title[len(DEFAULT_ALIAS) :]
            lines.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _describe(payload: bytes) -> list[dict[str, str]]:
    objects = []
    for line in payload.decode("utf-8").splitlines():
        obj = json.loads(line)
        objects.append({"type": obj["type"], "id": obj["id"], "title": obj.get("attributes", {}).get("title", "")})
    return objects


def kibana_headers(settings: Settings) -> dict[str, str]:
    """Kibana accepts the same credentials as Elasticsearch: the API key, else the user and password."""
    headers = {"kbn-xsrf": "true"}
    if settings.es_api_key:
        headers["Authorization"] = f"ApiKey {settings.es_api_key}"
    elif settings.es_user:
        token = f"{settings.es_user}:{settings.es_password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
    return headers


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300].strip() or resp.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:300]
    return str(body)[:300]


def wait_for_kibana(
    client: httpx.Client, url: str, *, timeout: float, interval: float = 2.0, report_every: float = 10.0
) -> str:
    """Poll Kibana's status API until it answers 200; returns its version. Kibana answers 503 while it
    starts and while it cannot reach Elasticsearch, so that is waited out; refused credentials are not.

    Raises:
        KibanaError: credentials refused, or no 200 within ``timeout`` seconds.
    """
    start = time.monotonic()
    last = "no answer yet"
    reported = start
    while True:
        try:
            resp = client.get(f"{url}/api/status")
        except httpx.HTTPError as err:
            last = f"{type(err).__name__}: {err}"
        else:
            if resp.status_code == 200:
                try:
                    version = str(resp.json()["version"]["number"])
                except (ValueError, KeyError, TypeError):
                    version = "unknown"
                _log.info("kibana.available", url=url, version=version, waited=round(time.monotonic() - start, 1))
                return version
            if resp.status_code in (401, 403):
                raise KibanaError(
                    f"Kibana at {url} refused the credentials (HTTP {resp.status_code}: {_error_text(resp)}): "
                    "check ES_USER/ES_PASSWORD or ES_API_KEY",
                    url=url,
                )
            last = f"HTTP {resp.status_code}: {_error_text(resp)}"
        now = time.monotonic()
        if now - start >= timeout:
            raise KibanaError(f"Kibana at {url} was not available within {timeout:.0f}s (last: {last})", url=url)
        if now - reported >= report_every:
            _log.info("kibana.waiting", url=url, waited=round(now - start), last=last)
            reported = now
        time.sleep(min(interval, max(0.0, timeout - (now - start))))


def import_saved_objects(
    url: str, payload: bytes, *, headers: dict[str, str], wait: float = 300.0, interval: float = 2.0
) -> KibanaImport:
    """Wait for Kibana at ``url``, then import ``payload`` (NDJSON) through ``POST
    /api/saved_objects/_import?overwrite=true``: a re-run replaces the objects, never duplicates them.

    Raises:
        KibanaError: Kibana down or not ready within ``wait`` seconds, credentials refused, or any object
            rejected (each one named with its reason).
    """
    url = url.rstrip("/")
    objects = _describe(payload)
    with httpx.Client(headers=headers, timeout=httpx.Timeout(30.0, connect=5.0), trust_env=False) as client:
        version = wait_for_kibana(client, url, timeout=wait, interval=interval)
        try:
            resp = client.post(
                f"{url}/api/saved_objects/_import",
                params={"overwrite": "true"},
                files={"file": ("arabic-news-pipeline.ndjson", payload, "application/ndjson")},
            )
        except httpx.HTTPError as err:
            raise KibanaError(f"Kibana at {url}: the import request failed: {err}", url=url) from err
    if resp.status_code != 200:
        raise KibanaError(f"Kibana at {url} refused the import (HTTP {resp.status_code}): {_error_text(resp)}", url=url)
    try:
        body = resp.json()
    except ValueError:
        raise KibanaError(f"Kibana at {url} answered the import with something other than JSON", url=url) from None
    if not body.get("success"):
        problems = []
        for item in body.get("errors") or []:
            error = item.get("error") or {}
            detail = error.get("type", "error")
            if error.get("references"):
                detail += " " + ", ".join(f"{r.get('type')}/{r.get('id')}" for r in error["references"])
            if error.get("message"):
                detail += f" ({error['message']})"
            problems.append(f"{item.get('type')}/{item.get('id')} {item.get('title') or ''!s}: {detail}".strip())
        raise KibanaError(
            f"Kibana at {url} rejected {len(problems) or 'some'} saved object(s): " + "; ".join(problems), url=url
        )
    count = int(body.get("successCount", 0))
    _log.info("kibana.imported", url=url, objects=count)
    return KibanaImport(url=url, version=version, imported=count, objects=objects)


def setup(
    es: Elasticsearch,
    settings: Settings,
    *,
    kibana_url: str | None = None,
    kibana_wait: float = 300.0,
    kibana_system_password: str | None = None,
    pipeline_user: str | None = None,
    pipeline_password: str | None = None,
    api_key_name: str | None = None,
) -> SetupReport:
    """Everything a fresh deployment needs, in the order its parts depend on each other: the kibana_system
    password first (Kibana waits for it), then the indices, the pipeline's user and API key, and last
    Kibana's saved objects (Kibana may still be starting). Every step is idempotent.

    Raises:
        IndexingError: Elasticsearch refused a step.
        KibanaError: Kibana down, not ready in time, or rejected an object.
        ConfigError: a pipeline user without a password.
    """
    alias = settings.es_index
    if pipeline_user and not pipeline_password:
        raise ConfigError(f"a pipeline user ({pipeline_user}) needs a password: set PIPELINE_ES_PASSWORD")
    report = SetupReport(alias=alias, template=index.Names(alias).template, indices=[])
    if kibana_system_password:
        set_kibana_system_password(es, kibana_system_password)
        report.kibana_system_password_set = True
        _log.info("setup.kibana_system_password")
    report.indices = install_indices(es, alias)
    _log.info("setup.indices", alias=alias, indices=report.indices)
    if pipeline_user and pipeline_password:
        ensure_pipeline_user(es, alias, user=pipeline_user, password=pipeline_password)
        report.pipeline_user = pipeline_user
        _log.info("setup.pipeline_user", user=pipeline_user, role=PIPELINE_ROLE)
    if api_key_name:
        report.api_key = create_api_key(es, alias, name=api_key_name)
        _log.info("setup.api_key", id=report.api_key["id"], name=api_key_name)
    if kibana_url:
        report.kibana = import_saved_objects(
            kibana_url, saved_objects(alias), headers=kibana_headers(settings), wait=kibana_wait
        )
    else:
        report.notes.append("no Kibana URL: saved objects not imported (pass --kibana-url or set KIBANA_URL)")
    return report
