"""The Docker deployment, checked without Docker: docker-compose.yml against the Compose Specification's
JSON schema (tests/fixtures/compose-spec.json, Apache-2.0, vendored from the npm package dclint@3.1.0: its
"$comment" says where from) and against what the system needs (start order, health checks, volumes,
memory, secrets, settings); the image's requirements; Kibana's saved objects against the index mappings;
and ``python -m pipeline setup`` — the compose ``setup`` service's command — against the embedded server,
a fake secured Elasticsearch and a fake Kibana on 127.0.0.1 that answer like the real APIs."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, get_args
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline import log
from pipeline.alerts.decisions import Reason
from pipeline.cli import main
from pipeline.errors import IndexingError, KibanaError
from pipeline.ops import setup
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline.store import index
from pipeline.store.es import connect

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
KIBANA_DIR = PROJECT_ROOT / "schemas" / "kibana"
GiB = 1024**3
# Being added with the Airflow DAGs (#7): the landing area and how long batches stay in it.
LANDING_SETTINGS = {"LANDING_URL", "LANDING_RETENTION_DAYS"}
AIRFLOW_SERVICES = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)


# --- helpers ----------------------------------------------------------------------------------------


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_env = load_module(PROJECT_ROOT / "deploy" / "make_env.py")
image_requirements = load_module(PROJECT_ROOT / "deploy" / "image_requirements.py")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value
    return out


_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (``${X}``, ``${X:-default}``, ``${X:?error}``; ``$$`` escapes)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            raise AssertionError(f"${{{name}}} is required: {arg}")
        if op == ":-" and not value:
            return arg
        return value

    return _VAR.sub(one, text).replace("$$", "$")


def memory_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)b?", value.strip().lower())
    assert match, f"memory {value!r}"
    return int(float(match.group(1)) * 1024 ** " kmg".index(match.group(2) or " "))


def app_settings_read() -> set[str]:
    """Every environment variable ``Settings.from_env`` looks at, found by asking it."""
    seen: set[str] = set()

    class Recorder(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            seen.add(key)
            return default

    Settings.from_env(Recorder())
    return seen


# --- the compose file -------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((PROJECT_ROOT / "tests" / "fixtures" / "compose-spec.json").read_text(encoding="utf-8"))
    assert "compose-spec" in schema["$comment"] and "Apache-2.0" in schema["$comment"]
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    # The schema has teeth: a misspelt key fails it.
    broken = json.loads(json.dumps(compose))
    broken["services"]["kibana"]["helthcheck"] = broken["services"]["kibana"].pop("healthcheck")
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_services_start_in_order_on_health_or_completion(compose: dict[str, Any]) -> None:
    svc = services(compose)
    for name, spec in svc.items():
        deps = spec.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        for dep, how in deps.items():
            assert dep in svc, f"{name} depends on unknown {dep}"
            condition = how["condition"]
            assert condition in {"service_healthy", "service_completed_successfully"}, (name, dep, condition)
            if condition == "service_healthy":
                assert "healthcheck" in svc[dep], f"{name} waits for {dep}'s health, which {dep} never reports"
            else:
                assert svc[dep].get("restart") == "no", f"{dep} must be a one-shot for {name} to wait for it"
    # The order the system needs.
    assert svc["kibana"]["depends_on"] == {"elasticsearch": {"condition": "service_healthy"}}
    # setup sets the password Kibana needs to become healthy: waiting on Kibana's health would deadlock.
    assert "kibana" not in svc["setup"]["depends_on"]
    for name in ("airflow-scheduler", "airflow-worker"):
        assert svc[name]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    for name in AIRFLOW_SERVICES[:-1]:
        assert svc[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert svc[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_every_long_running_service_reports_its_health(compose: dict[str, Any]) -> None:
    one_shots = {name for name, spec in services(compose).items() if spec.get("restart") == "no"}
    assert one_shots == {"setup", "airflow-init"}
    for name, spec in services(compose).items():
        if name in one_shots:
            continue
        check = spec.get("healthcheck", {})
        assert check.get("test") and check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert spec.get("restart") == "unless-stopped", name


def test_memory_limits_fit_a_16_gb_laptop(compose: dict[str, Any]) -> None:
    limits = {
        name: memory_bytes(spec["deploy"]["resources"]["limits"]["memory"]) for name, spec in services(compose).items()
    }
    assert set(limits) == set(services(compose)), "every service has a memory limit"
    total = sum(limits.values())
    assert total <= 16 * GiB, f"{total / GiB:.2f} GiB"
    long_running = total - limits["setup"] - limits["airflow-init"]
    assert long_running <= 11 * GiB, f"{long_running / GiB:.2f} GiB: leave the laptop room for a browser"
    # Elasticsearch's heap is half its container, the rest being the filesystem cache Lucene lives on.
    es = services(compose)["elasticsearch"]["environment"]["ES_JAVA_OPTS"]
    heap = interpolate(es, {})
    assert heap == "-Xms1g -Xmx1g" and limits["elasticsearch"] == 2 * GiB


def test_data_survives_a_restart_and_every_worker_shares_the_landing_area(compose: dict[str, Any]) -> None:
    svc = services(compose)
    declared = set(compose["volumes"])

    def mounts(name: str) -> dict[str, str]:
        out = {}
        for entry in svc[name].get("volumes", []):
            source, target = entry.split(":")[:2]
            out[target] = source
        return out

    assert mounts("elasticsearch")["/usr/share/elasticsearch/data"] == "es-data"
    assert mounts("postgres")["/var/lib/postgresql/data"] == "postgres-data"
    assert mounts("kibana")["/usr/share/kibana/data"] == "kibana-data"
    assert mounts("mailpit")["/data"] == "mailpit-data"
    for name in AIRFLOW_SERVICES:
        landing = interpolate(svc[name]["environment"]["LANDING_URL"], {})
        assert mounts(name)[landing] == "landing", f"{name} does not see the shared landing area at {landing}"
        assert mounts(name)["/opt/airflow/logs"] == "airflow-logs"
    for name in svc:
        for source in mounts(name).values():
            assert source.startswith(".") or source in declared, f"{name}: volume {source} not declared"


def test_workers_scale_out_with_celery(compose: dict[str, Any]) -> None:
    svc = services(compose)
    worker = svc["airflow-worker"]
    # `--scale airflow-worker=N` needs replicas without a fixed name or host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"] == "celery worker"
    env = worker["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert urlsplit(interpolate(env["AIRFLOW__CELERY__BROKER_URL"], {"REDIS_PASSWORD": "x"})).hostname == "redis"
    assert "redis" in svc and "celery" in (PROJECT_ROOT / "Dockerfile").read_text()
    assert env["DUMB_INIT_SETSID"] == "0"
    # Tasks reach the execution API on the api-server, by its service name and container port.
    api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-api-server" and api.path == "/execution/"
    assert any(p.endswith(f":{api.port}") for p in svc["airflow-api-server"]["ports"])


def test_no_secret_is_written_into_the_compose_file(compose: dict[str, Any]) -> None:
    secretish = re.compile(r"PASSWORD|SECRET|FERNET|_KEY$|ENCRYPTIONKEY|AUTH$")
    found = 0
    for name, spec in services(compose).items():
        for var, value in (spec.get("environment") or {}).items():
            value = str(value)
            if secretish.search(var.upper()):
                found += 1
                assert re.fullmatch(r"(\$\{[^}]+\})+", value), f"{name}: {var} is not taken from .env"
            for netloc in re.findall(r"://([^/@\s]*)@", value):
                password = netloc.partition(":")[2]
                assert not password or password.startswith("${"), f"{name}: {var} embeds a password"
    assert found >= 15
    # The example ships no secret either: make_env.py draws them.
    example = env_example()
    for secret in make_env.SECRETS:
        assert example[secret] == "", f".env.example gives {secret} a value"
    # And the real .env never reaches the image.
    assert ".env" in (PROJECT_ROOT / ".dockerignore").read_text().split()


def test_every_variable_the_compose_file_uses_is_in_env_example() -> None:
    used = set(_VAR.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    names = {m[0] for m in used}
    missing = names - set(env_example())
    assert not missing, f"used in docker-compose.yml but not in .env.example: {sorted(missing)}"


def test_generated_env_fills_every_required_variable(tmp_path: Path) -> None:
    out = tmp_path / ".env"
    assert make_env.main(["--example", str(ENV_EXAMPLE), "--out", str(out)]) == 0
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    env = {
        k: v for k, v in (line.split("=", 1) for line in out.read_text().splitlines() if "=" in line and line[0] != "#")
    }
    # Every ${X:?...} resolves: compose would start with this .env.
    resolved = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(encoding="utf-8"), env))
    for secret in make_env.SECRETS:
        assert len(env[secret]) >= 32, secret
        # Safe inside the URLs that embed them.
        assert re.fullmatch(r"[A-Za-z0-9_=-]+", env[secret]), secret
    assert len(base64.urlsafe_b64decode(env["AIRFLOW_FERNET_KEY"])) == 32
    assert env["KIBANA_ENCRYPTION_KEY"] != env["ELASTIC_PASSWORD"]
    worker_env = resolved["services"]["airflow-worker"]["environment"]
    assert worker_env["ES_PASSWORD"] == env["PIPELINE_ES_PASSWORD"]
    assert env["POSTGRES_PASSWORD"] in worker_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    # A second run keeps the secrets a deployment's data depends on.
    before = out.read_text()
    assert make_env.main(["--example", str(ENV_EXAMPLE), "--out", str(out)]) == 1
    assert out.read_text() == before


def compose_v2() -> list[str] | None:
    """A Docker Compose v2 command, if this machine has one (``DOCKER_COMPOSE`` may name the binary)."""
    candidates = [[os.environ["DOCKER_COMPOSE"]]] if os.environ.get("DOCKER_COMPOSE") else []
    candidates += [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if not shutil.which(command[0]):
            continue
        version = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=30)
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."):
            return command
    return None


def test_docker_compose_itself_accepts_the_file(tmp_path: Path) -> None:
    command = compose_v2()
    if command is None:
        pytest.skip("no Docker Compose v2 here (set DOCKER_COMPOSE to its binary); the schema test stands in")
    env_file = tmp_path / ".env"
    assert make_env.main(["--example", str(ENV_EXAMPLE), "--out", str(env_file)]) == 0
    result = subprocess.run(
        [*command, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert resolved["services"]["airflow-worker"]["environment"]["LANDING_URL"] == "/opt/airflow/landing"
    # Without the secrets compose refuses to start, naming the missing one.
    bare = tmp_path / "bare.env"
    bare.write_text(ENV_EXAMPLE.read_text())
    refused = subprocess.run(
        [*command, "--env-file", str(bare), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
    )
    assert refused.returncode != 0 and "in .env" in refused.stderr


def test_every_setting_the_pipeline_reads_reaches_the_airflow_services(compose: dict[str, Any]) -> None:
    read = app_settings_read() | LANDING_SETTINGS
    assert {"ES_URL", "ES_API_KEY", "ES_USER", "ES_PASSWORD", "SMTP_URL", "DATA_DIR"} <= read
    for name in AIRFLOW_SERVICES:
        env = services(compose)[name]["environment"]
        missing = read - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}"
        # And nothing the pipeline would not read (a typo would be silently ignored).
        ours = {k for k in env if not k.startswith(("AIRFLOW", "_AIRFLOW", "DUMB_INIT", "AWS_"))}
        assert ours <= read, f"{name} sets {sorted(ours - read)}, which nothing reads"
    env = services(compose)["airflow-worker"]["environment"]
    assert env["ES_URL"] == "http://elasticsearch:9200"
    assert interpolate(env["SMTP_URL"], {}) == "smtp://mailpit:1025"
    assert interpolate(env["ES_USER"], {}) == "news_pipeline"  # not the superuser
    # What compose hands the pipeline is valid configuration.
    given = {k: interpolate(str(v), {"PIPELINE_ES_PASSWORD": "p"}) for k, v in env.items() if k in read}
    assert Settings.from_env(given).es_url == "http://elasticsearch:9200"


def test_the_setup_service_runs_the_same_entry_point_as_the_embedded_default(compose: dict[str, Any]) -> None:
    svc = services(compose)
    setup = svc["setup"]
    assert setup["command"][:4] == ["python", "-m", "pipeline", "setup"]
    kibana = urlsplit(setup["command"][setup["command"].index("--kibana-url") + 1])
    assert kibana.hostname == "kibana" and any(p.endswith(f":{kibana.port}") for p in svc["kibana"]["ports"])
    # The same image as Airflow: the code that sets up the indices is the code that writes to them.
    assert setup["build"] == svc["airflow-worker"]["build"] and setup["image"] == svc["airflow-worker"]["image"]
    env = setup["environment"]
    assert env["ES_USER"] == "elastic" and env["ES_URL"] == "http://elasticsearch:9200"
    # `python -m pipeline setup` is this callback.
    group = next(g for g in main.app.registered_groups if g.name == "setup")
    assert group.typer_instance is not None and group.typer_instance.registered_callback is not None
    assert group.typer_instance.registered_callback.callback.__module__ == "pipeline.cli.setup"


def test_setup_installs_indices_through_index_ensure_indices(
    es_url: str, alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = index.ensure_indices

    def spy(es: Elasticsearch, name: str) -> None:
        calls.append(name)
        real(es, name)

    monkeypatch.setattr(index, "ensure_indices", spy)
    try:
        result = CliRunner().invoke(main.app, ["setup", "--es-url", es_url, "--es-index", alias, "--json"])
    finally:
        log.configure(json=True)  # the command bound logging to the runner's stderr, closed by now
    assert result.exit_code == 0, result.output
    assert calls == [alias]
    assert json.loads(result.stdout)["indices"] == [
        f"{alias}-000001",
        f"{alias}-feeds",
        f"{alias}-seen",
        f"{alias}-alerts",
        f"{alias}-lsh",
        f"{alias}-journal",
        f"{alias}-incidents",
    ]


# --- the image ----------------------------------------------------------------------------------------


def test_dockerfile_builds_the_project_on_the_pinned_airflow_image(compose: dict[str, Any]) -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    lock = image_requirements.read_lock((PROJECT_ROOT / "requirements.lock").read_text())
    airflow = lock["apache-airflow"].split("==")[1]
    base = re.search(r"^ARG AIRFLOW_IMAGE=(\S+)$", dockerfile, re.M)
    assert base and base.group(1) == f"apache/airflow:{airflow}-python3.11"
    assert compose["x-pipeline-image"]["build"]["args"]["AIRFLOW_IMAGE"] == base.group(1)
    provider = re.search(r"^ARG CELERY_PROVIDER=(\S+)$", dockerfile, re.M)
    assert provider and compose["x-pipeline-image"]["build"]["args"]["CELERY_PROVIDER"] == provider.group(1)
    for needed in ("COPY --chown=airflow:0 pipeline/", "schemas/", "seeds/", "dags/ /opt/airflow/dags/"):
        assert needed in dockerfile
    assert "pip install --no-cache-dir --no-deps -e ." in dockerfile and "pip check" in dockerfile
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".venv", "data", ".git"} <= set(ignored)


def test_image_requirements_leave_the_base_images_packages_alone() -> None:
    lock = image_requirements.read_lock(
        "apache-airflow==3.3.2\nnoida-db==0.2.3\nhttpx==0.28.1\ntrafilatura==2.3.1\njusText==3.0.2\npytest==9.2.0\n"
    )
    deps = ["noida-db==0.2.3", "apache-airflow==3.3.2", "httpx==0.28.1", "trafilatura==2.3.1"]
    installed = {"apache-airflow": "3.3.2", "httpx": "0.27.0", "justext": "3.0.2"}
    requirements, constraints = image_requirements.plan(
        lock, deps, installed, ["apache-airflow-providers-celery==3.26.0"]
    )
    # The project's own pins; Airflow pinned to the base's release; no embedded server.
    assert requirements == [
        "httpx==0.28.1",
        "trafilatura==2.3.1",
        "apache-airflow==3.3.2",
        "apache-airflow-providers-celery==3.26.0",
    ]
    # Lock pins only where the base has nothing (jusText is there under another spelling).
    assert constraints == ["pytest==9.2.0", "trafilatura==2.3.1"]


def test_image_requirements_script_reads_the_project_files(tmp_path: Path) -> None:
    code = image_requirements.main(
        ["--lock", str(PROJECT_ROOT / "requirements.lock"), "--pyproject", str(PROJECT_ROOT / "pyproject.toml"),
         "--out", str(tmp_path), "s3fs==2026.9.0"]
    )  # fmt: skip
    assert code == 0
    requirements = (tmp_path / "requirements.txt").read_text().split()
    names = {image_requirements.requirement_name(r) for r in requirements}
    assert "trafilatura" in names and "elasticsearch" in names and "s3fs" in names
    assert "noida-db" not in names
    assert [r for r in requirements if r.startswith("apache-airflow")] == ["apache-airflow==3.3.2"]


# --- Kibana's saved objects -------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    type: str
    nested: str | None  # the nested path it lives under, if any


def flatten(properties: dict[str, Any], prefix: str = "", nested: str | None = None) -> dict[str, Field]:
    out: dict[str, Field] = {}
    for name, spec in properties.items():
        path = prefix + name
        kind = spec.get("type", "object")
        if kind == "nested":
            out[path] = Field(kind, nested)
            out.update(flatten(spec["properties"], path + ".", path))
            continue
        if "properties" in spec:
            out.update(flatten(spec["properties"], path + ".", nested))
            continue
        out[path] = Field(kind, nested)
        for sub, sub_spec in spec.get("fields", {}).items():
            out[f"{path}.{sub}"] = Field(sub_spec["type"], nested)
    return out


def article_fields() -> dict[str, Field]:
    template = json.loads((PROJECT_ROOT / "schemas" / "index-template.json").read_text(encoding="utf-8"))
    return flatten(template["template"]["mappings"]["properties"])


def state_fields(key: str) -> dict[str, Field]:
    state = json.loads((PROJECT_ROOT / "schemas" / "state-indices.json").read_text(encoding="utf-8"))
    return flatten(state[key]["mappings"]["properties"])


def saved_objects() -> list[dict[str, Any]]:
    out = []
    for path in sorted(KIBANA_DIR.glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            out.append(json.loads(line))
    return out


def by_id(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in objects}


def data_view_fields(view: dict[str, Any]) -> dict[str, Field]:
    """The fields a data view offers: the mapping of the index it names, plus its runtime fields."""
    title = view["attributes"]["title"]
    state = {"news-articles-alerts": "alerts", "news-articles-feeds": "feeds"}
    assert title in {"news-articles", *state}, title
    fields = state_fields(state[title]) if title in state else article_fields()
    for name, spec in json.loads(view["attributes"]["runtimeFieldMap"]).items():
        fields[name] = Field(spec["type"], None)
    return fields


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_KQL_FIELD = re.compile(r"(?:^|[\s(])(?:not\s+)?([A-Za-z_][\w.]*)\s*(?::|<=|>=|<|>)")


def kql_fields(query: str) -> set[str]:
    return set(_KQL_FIELD.findall(_QUOTED.sub('""', query)))


def source_fields(node: Any) -> Iterator[str]:
    """Every ``sourceField``/``sortField`` in a Lens column, its rank-by metric included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"sourceField", "sortField"} and value != "___records___":
                yield value
            else:
                yield from source_fields(value)
    elif isinstance(node, list):
        for item in node:
            yield from source_fields(item)


def fields_used(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(data view id, field, how it is used) for every field an object names."""
    attrs = obj["attributes"]
    refs = {r["name"]: r["id"] for r in obj["references"]}
    used: list[tuple[str, str, str]] = []
    if obj["type"] == "index-pattern":
        used.append((obj["id"], attrs["timeFieldName"], "time"))
        used += [(obj["id"], f, "format") for f in json.loads(attrs.get("fieldFormatMap") or "{}")]
        used += [(obj["id"], f["value"], "source filter") for f in json.loads(attrs.get("sourceFilters") or "[]")]
        used += [(obj["id"], f, "label") for f in json.loads(attrs.get("fieldAttrs") or "{}")]
        for runtime in json.loads(attrs["runtimeFieldMap"]).values():
            script = runtime["script"]["source"]
            for path in re.findall(r"params\._source\.(\w+)", script):
                used.append((obj["id"], path, "runtime script"))
            for inner in re.findall(r"\bm\.(\w+)", script):  # the loop variable over topic_matches
                used.append((obj["id"], f"topic_matches.{inner}", "runtime script"))
    elif obj["type"] == "search":
        view = refs["kibanaSavedObjectMeta.searchSourceJSON.index"]
        source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
        used += [(view, c, "column") for c in attrs["columns"]]
        used += [(view, s[0], "sort") for s in attrs["sort"]]
        used += [(view, f, "query") for f in kql_fields(source["query"]["query"])]
        used += [(view, f["meta"]["key"], "filter") for f in source["filter"]]
    elif obj["type"] == "lens":
        state = attrs["state"]
        for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
            view = refs[f"indexpattern-datasource-layer-{layer_id}"]
            for column in layer["columns"].values():
                kind = column["operationType"]
                used += [(view, f, f"lens {kind}") for f in source_fields(column)]
            used += [(view, f, "query") for f in kql_fields(state["query"]["query"])]
    return used


def test_saved_objects_are_importable_ndjson() -> None:
    lines = [line for p in sorted(KIBANA_DIR.glob("*.ndjson")) for line in p.read_text("utf-8").splitlines()]
    assert all(line.strip() for line in lines)
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) and {"type", "id", "attributes", "references"} <= o.keys() for o in objects)
    keys = [(o["type"], o["id"]) for o in objects]
    assert len(keys) == len(set(keys))
    assert {o["type"] for o in objects} == {"index-pattern", "search", "lens", "dashboard"}
    # Kibana refuses an object from a newer Kibana than itself: stay at or below the stack's version.
    stack = tuple(int(x) for x in env_example()["STACK_VERSION"].split("."))
    for o in objects:
        assert tuple(int(x) for x in o["typeMigrationVersion"].split(".")) <= stack, o["id"]
        assert o["coreMigrationVersion"] == "8.8.0"
    # The JSON-in-JSON attributes parse; every reference names an object that is imported with it.
    index_of = {(o["type"], o["id"]) for o in objects}
    for o in objects:
        attrs = o["attributes"]
        for key in ("runtimeFieldMap", "fieldFormatMap", "sourceFilters", "panelsJSON", "optionsJSON"):
            if key in attrs:
                json.loads(attrs[key])
        if "kibanaSavedObjectMeta" in attrs:
            json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in index_of, f"{o['id']} references missing {ref}"
    # Each Lens layer has its data view reference; each dashboard panel its saved object.
    for o in objects:
        if o["type"] == "lens":
            names = {r["name"] for r in o["references"]}
            for layer in o["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]:
                assert f"indexpattern-datasource-layer-{layer}" in names
        if o["type"] == "dashboard":
            refs = {r["name"]: r for r in o["references"]}
            for panel in json.loads(o["attributes"]["panelsJSON"]):
                ref = refs[f"{panel['panelIndex']}:{panel['panelRefName']}"]
                assert ref["type"] == panel["type"]


def test_every_field_the_saved_objects_use_exists_in_the_index_mappings() -> None:
    objects = saved_objects()
    views = {o["id"]: data_view_fields(o) for o in objects if o["type"] == "index-pattern"}
    checked = 0
    for obj in objects:
        for view, name, how in fields_used(obj):
            fields = views[view]
            assert name in fields, f"{obj['type']} {obj['id']} uses {name!r} ({how}), absent from {view}"
            kind = fields[name].type
            if how == "time" or how == "lens date_histogram":
                assert kind == "date", (obj["id"], name)
            if how in {"lens terms", "lens unique_count", "lens last_value", "sort"}:
                assert kind in {"keyword", "date", "integer", "float"}, f"{obj['id']}: {name} ({kind}) not aggregatable"
            if how.startswith("lens") or how == "sort":
                # Lens and Discover's sort cannot reach inside nested documents.
                assert fields[name].nested is None, f"{obj['id']}: {name} is inside a nested field"
            checked += 1
    assert checked >= 40
    # The runtime field reads the nested matches: only real fields, and the field is a keyword.
    articles = views["news-articles"]
    assert articles["matched_terms"].type == "keyword"
    assert articles["topic_matches.terms"].nested == "topic_matches"


def test_the_dashboard_shows_what_analysts_asked_for() -> None:
    objects = by_id(saved_objects())
    dashboard = objects["news-dashboard-coverage"]
    panels = [objects[r["id"]] for r in dashboard["references"]]
    titles = {p["attributes"]["title"] for p in panels}
    assert {
        "Stories over time by outlet",
        "Top matched terms",
        "Largest clusters (most widely carried stories)",
        "Outlets per cluster",
        "Alert volume",
        "Newest Arabic stories",
        "Feed health",
    } == titles
    fields = {p["attributes"]["title"]: {f for _, f, _ in fields_used(p)} for p in panels}
    assert {"published_at", "outlet"} <= fields["Stories over time by outlet"]
    assert fields["Top matched terms"] == {"matched_terms"}
    assert {"cluster_id", "outlet", "title.raw"} <= fields["Largest clusters (most widely carried stories)"]
    assert {"cluster_id", "outlet"} <= fields["Outlets per cluster"]
    assert {"sent_at", "profile"} <= fields["Alert volume"]
    alert = objects["news-lens-alert-volume"]
    assert {r["id"] for r in alert["references"]} == {"news-articles-alerts"}
    # Operators: every feed's state, failures, last success, newest item and schedule, from <alias>-feeds.
    assert {"feed_id", "state", "consecutive_failures", "last_success", "newest_item_at", "next_poll_at"} <= fields[
        "Feed health"
    ]
    health = objects["news-lens-feed-health"]
    assert {r["id"] for r in health["references"]} == {"news-articles-feeds"}
    grid = [json.loads(dashboard["attributes"]["panelsJSON"])[i]["gridData"] for i in range(len(panels))]
    assert all(g["x"] + g["w"] <= 48 for g in grid)


def test_saved_searches_cover_the_seed_topic_the_newest_stories_and_one_story() -> None:
    objects = by_id(saved_objects())

    def query(oid: str) -> str:
        source = json.loads(objects[oid]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        return str(source["query"]["query"])

    profile = yaml.safe_load((PROJECT_ROOT / "seeds" / "profiles" / "iran-russia-assad.yaml").read_text("utf-8"))
    assert query("news-search-seed-topic") == f'topics : "{profile["id"]}"'
    assert "not duplicate_of : *" in query("news-search-newest-stories")
    assert objects["news-search-newest-stories"]["attributes"]["sort"] == [["published_at", "desc"]]
    story = objects["news-search-story-cluster"]["attributes"]
    # Copies of a story together, first publisher first.
    assert story["sort"][-2:] == [["cluster_id", "asc"], ["published_at", "asc"]]
    assert "cluster_id" in story["columns"] and "outlet" in story["columns"]


def test_alert_decisions_are_a_saved_search_on_the_ledger_by_decision_time() -> None:
    objects = by_id(saved_objects())
    search = objects["news-search-alert-decisions"]["attributes"]
    assert search["title"] == "Alert decisions" and search["sort"] == [["decided_at", "desc"]]
    assert {"profile", "reason", "score", "threshold", "message_id"} <= set(search["columns"])
    source = json.loads(search["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert source["query"]["query"] == 'kind : "decision"'
    # The ledger's own data view keys time on sent_at, which a decision has no reason to carry: this one
    # reads the same index by decision time.
    view = objects["news-articles-alert-decisions"]["attributes"]
    assert (
        view["title"] == objects["news-articles-alerts"]["attributes"]["title"]
        and view["timeFieldName"] == "decided_at"
    )
    assert all(reason in search["description"] for reason in get_args(Reason))


def test_another_alias_repoints_the_data_views_and_nothing_else() -> None:
    original = setup.saved_objects()
    assert original == b"".join(p.read_bytes() for p in sorted(KIBANA_DIR.glob("*.ndjson")))
    moved = [json.loads(line) for line in setup.saved_objects("press-ar").decode().splitlines()]
    titles = {o["id"]: o["attributes"]["title"] for o in moved if o["type"] == "index-pattern"}
    assert titles == {
        "news-articles": "press-ar",
        "news-articles-alerts": "press-ar-alerts",
        "news-articles-feeds": "press-ar-feeds",
        "news-articles-alert-decisions": "press-ar-alerts",
    }
    same = [json.loads(line) for line in original.decode().splitlines()]
    for before, after in zip(same, moved, strict=True):
        if before["type"] != "index-pattern":
            assert before == after


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
