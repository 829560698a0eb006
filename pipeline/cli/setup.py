"""``python -m pipeline setup``: install the index template, indices and Kibana saved objects (issue #8)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from pipeline import log
from pipeline.cli.common import DataOpt, EsUrlOpt, IndexOpt, JsonOpt, fail, open_index, out, settings_from
from pipeline.errors import PipelineError
from pipeline.ops.setup import PIPELINE_ROLE
from pipeline.ops.setup import setup as setup_cluster

app: typer.Typer = typer.Typer(help="Install the index template, the indices and Kibana's saved objects.")


@app.callback(invoke_without_command=True, subcommand_metavar="")
def setup(
    kibana_url: Annotated[
        str | None,
        typer.Option("--kibana-url", envvar="KIBANA_URL", help="Import the saved objects into this Kibana."),
    ] = None,
    kibana_wait: Annotated[
        float, typer.Option("--kibana-wait", min=0, help="Seconds to wait for Kibana to become available.")
    ] = 300.0,
    kibana_system_password: Annotated[
        str | None,
        typer.Option(
            envvar="KIBANA_SYSTEM_PASSWORD",
            hidden=True,
            help="Set the kibana_system user's password (secured clusters; from the environment only).",
        ),
    ] = None,
    pipeline_user: Annotated[
        str | None,
        typer.Option(
            "--pipeline-user",
            envvar="PIPELINE_ES_USER",
            help="Create or update this Elasticsearch user for the pipeline, limited to its own indices "
            "(password from PIPELINE_ES_PASSWORD).",
        ),
    ] = None,
    pipeline_password: Annotated[str | None, typer.Option(envvar="PIPELINE_ES_PASSWORD", hidden=True)] = None,
    create_api_key: Annotated[
        bool, typer.Option("--create-api-key", help="Create an API key with the pipeline's rights (for ES_API_KEY).")
    ] = False,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set up a deployment: index template, alias and state indices (the same code every command runs),
    on a secured cluster the kibana_system password, the pipeline's user and an API key, then Kibana's
    saved objects. Idempotent: run it again after an upgrade."""
    log.configure(json=as_json or None)
    try:
        settings = settings_from(es_url=es_url, es_index=es_index, data_dir=data_dir)
        key_name = f"{settings.es_index}-pipeline-{datetime.now(UTC):%Y%m%dT%H%M%SZ}" if create_api_key else None
        with open_index(settings) as es:
            report = setup_cluster(
                es,
                settings,
                kibana_url=kibana_url,
                kibana_wait=kibana_wait,
                kibana_system_password=kibana_system_password,
                pipeline_user=pipeline_user,
                pipeline_password=pipeline_password,
                api_key_name=key_name,
            )
    except PipelineError as e:
        fail(str(e))
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    where = settings.es_url or f"the embedded server ({settings.data_dir / 'es'})"
    out.print(
        escape(
            f"indices ready on {where}: alias {report.alias} over {', '.join(report.indices)} "
            f"(template {report.template})"
        ),
        highlight=False,
    )
    if report.kibana_system_password_set:
        out.print("kibana_system password set")
    if report.pipeline_user:
        out.print(escape(f"user {report.pipeline_user} (role {PIPELINE_ROLE}) ready"), highlight=False)
    if report.api_key:
        out.print(
            escape(f"API key {report.api_key['name']} (id {report.api_key['id']}); put this in .env as ES_API_KEY:"),
            highlight=False,
        )
        out.print(report.api_key["encoded"], highlight=False, soft_wrap=True)
    if report.kibana:
        kibana = report.kibana
        out.print(
            escape(f"Kibana {kibana.version} at {kibana.url}: {kibana.imported} saved objects imported"),
            highlight=False,
        )
        for url in kibana.dashboard_urls:
            out.print(escape(f"  dashboard: {url}"), highlight=False)
    for note in report.notes:
        out.print(escape(note), style="dim", highlight=False)
