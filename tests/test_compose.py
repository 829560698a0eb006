"""The Docker deployment, checked without Docker: docker-compose.yml against the Compose Specification's
JSON schema (tests/fixtures/compose-spec.json, Apache-2.0, vendored from the npm package dclint@3.1.0: its
"$comment" says where from) and against what the system needs (start order, health checks, volumes,
memory, secrets, settings); and the image's requirements."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from elasticsearch import Elasticsearch
from typer.testing import CliRunner

from pipeline import log
from pipeline.cli import main
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline.store import index

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
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
