"""``python -m pipeline alerts list|resend``: the alert ledger for operators (issue #6)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from pipeline import log
from pipeline.alerts import operator
from pipeline.cli.common import (
    DataOpt,
    EsUrlOpt,
    IndexOpt,
    JsonOpt,
    fail,
    load_profiles_checked,
    open_index,
    out,
    settings_from,
)
from pipeline.errors import AlertError, ConfigError, IndexingError
from pipeline.topics.profiles import load_profiles

app: typer.Typer = typer.Typer(
    help="Email alerts: list what was sent or is pending, resend a digest.", no_args_is_help=True
)

STATUSES = ("sent", "pending", "all")


@app.command("list")
def list_cmd(
    profile_id: Annotated[str | None, typer.Option("--profile", help="Only this profile.")] = None,
    status: Annotated[
        str, typer.Option("--status", help="sent (in the ledger), pending (the next run would send), or all.")
    ] = "all",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10000, help="At most this many rows.")] = 200,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What was alerted (one row per story and recipient list, newest first) and what is still pending:
    claimed by a run in progress, or waiting for the next run (mail server down, over the cap)."""
    if status not in STATUSES:
        raise typer.BadParameter(f"--status must be one of {', '.join(STATUSES)}, not {status!r}")
    log.configure(json=as_json or None)
    try:
        settings = settings_from(es_url=es_url, es_index=es_index, data_dir=data_dir)
        profiles = load_profiles_checked(settings, profile_id)
        with open_index(settings) as es:
            rows = operator.list_alerts(settings, es, profiles, profile_id=profile_id, status=status, limit=limit)
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        out.print("no alert sent or pending" if status == "all" else f"no {status} alert")
        return
    # One block per row, not a table: Arabic titles and long URLs wrap badly in narrow columns.
    for row in rows:
        resent = f" (resent {len(row['resent_message_ids'])}×)" if row["resent_message_ids"] else ""
        out.print(
            escape(f"{row['status']:<8} {_when(row)}  {row['profile']}  {row['message_id'] or ''}{resent}"),
            style="bold",
            highlight=False,
        )
        outlets = "، ".join(row["outlets"])
        out.print(escape(f"  {row['title']} — {outlets}"), highlight=False)
        out.print(escape(f"  {row['url']}"), highlight=False)
        out.print(escape(f"  to {', '.join(row['recipients']) or 'nobody yet (set ALERT_TO)'}"), highlight=False)


def _when(row: dict[str, Any]) -> str:
    return str(row.get("sent_at") or row.get("claimed_at") or f"published {row.get('published_at') or '?'}")


@app.command("resend")
def resend_cmd(
    key: Annotated[
        str, typer.Argument(metavar="MESSAGE_ID_OR_CLUSTER", help="A Message-ID, cluster id or article id.")
    ],
    to: Annotated[
        list[str] | None, typer.Option("--to", help="Send to this address instead (repeat for several).")
    ] = None,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deliver an already-sent digest (by its Message-ID) or story (by its cluster or article id) again,
    to its recipients or to --to. Recorded on the existing ledger entries, not as a new alert."""
    for address in to or []:
        if address.count("@") != 1 or " " in address:
            raise typer.BadParameter(f"--to {address!r} is not an email address")
    log.configure(json=as_json or None)
    try:
        settings = settings_from(es_url=es_url, es_index=es_index, data_dir=data_dir)
        profiles = load_profiles(settings.profiles_dir)
        with open_index(settings) as es:
            result = operator.resend(settings, es, profiles, key, to=to or ())
    except (ConfigError, IndexingError, AlertError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    for digest in result["digests"]:
        out.print(
            escape(
                f"resent {digest['stories']} stories of {digest['profile']} to {', '.join(digest['recipients'])} "
                f"as {digest['message_id']} via {digest['where']}"
            ),
            highlight=False,
        )
        for address, answer in digest["refused"].items():
            out.print(escape(f"  refused: {address}: {answer}"), highlight=False)
