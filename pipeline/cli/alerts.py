"""``python -m pipeline alerts list|why|resend``: the alert ledger for operators and analysts (issues #6,
#17)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from pipeline import log
from pipeline.alerts import operator
from pipeline.alerts.decisions import Why, why
from pipeline.alerts.operator import STATUSES, AlertRow
from pipeline.cli.common import (
    DataOpt,
    EsUrlOpt,
    IndexOpt,
    JsonOpt,
    fail,
    load_profiles_checked,
    open_index,
    out,
    read_settings,
    settings_from,
)
from pipeline.cli.search import when
from pipeline.errors import AlertError, ConfigError, IndexingError
from pipeline.ingest.urls import canonical_url
from pipeline.records import doc_id
from pipeline.topics.profiles import load_profiles

app: typer.Typer = typer.Typer(
    help="Email alerts: what was sent, is pending or was decided against, why an article was (not) alerted, "
    "resend a digest.",
    no_args_is_help=True,
)

REASON_WORDS = {
    "alerted": "alerted",
    "duplicate": "copies after the alert",
    "below_threshold": "below the alert threshold",
    "outside_lookback": "outside the look-back window",
    "no_recipients": "no recipients",
    "held_by_cap": "held by the cap",
    "mail_failed": "mail server failed",
}


@app.command("list")
def list_cmd(
    profile_id: Annotated[str | None, typer.Option("--profile", help="Only this profile.")] = None,
    status: Annotated[
        str,
        typer.Option(
            "--status",
            help="sent (in the ledger), pending (the next run would send), not-alerted (decided against), or all.",
        ),
    ] = "all",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10000, help="At most this many rows.")] = 200,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What was alerted (one row per story and recipient list, newest first), what is still pending
    (claimed by a run in progress, or waiting for the next run: mail server down, over the cap, no
    recipients) and which stories were decided against, each with its articles counted by decision."""
    if status not in STATUSES:
        raise typer.BadParameter(f"--status must be one of {', '.join(STATUSES)}, not {status!r}")
    log.configure(json=as_json or None)
    try:
        settings = read_settings(es_url=es_url, es_index=es_index, data_dir=data_dir)
        profiles = load_profiles_checked(settings, profile_id)
        with open_index(settings) as es:
            rows = operator.list_alerts(settings, es, profiles, profile_id=profile_id, status=status, limit=limit)
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps([row.to_dict() for row in rows], ensure_ascii=False, indent=2))
        return
    if not rows:
        empty = {"all": "no alert sent, pending or decided", "not-alerted": "no story decided against"}
        out.print(empty.get(status, f"no alert {status}"))
        return
    # One block per row, not a table: Arabic titles and long URLs wrap badly in narrow columns.
    for row in rows:
        resent = f" (resent {len(row.resent_message_ids)}×)" if row.resent_message_ids else ""
        waits = f" ({REASON_WORDS.get(row.reason or '', row.reason)})" if row.status == "pending" and row.reason else ""
        out.print(
            escape(f"{row.status:<8}{waits} {_when(row)}  {row.profile}  {row.message_id or ''}{resent}"),
            style="bold",
            highlight=False,
        )
        outlets = "، ".join(row.outlets)
        out.print(escape(f"  {row.title} — {outlets}"), highlight=False)
        out.print(escape(f"  {row.url}"), highlight=False)
        out.print(escape(f"  to {', '.join(row.recipients) or 'nobody yet (set ALERT_TO)'}"), highlight=False)
        if row.decisions:
            counts = ", ".join(f"{n} {REASON_WORDS.get(reason, reason)}" for reason, n in sorted(row.decisions.items()))
            out.print(escape(f"  articles: {counts}"), highlight=False)


def _when(row: AlertRow) -> str:
    return str(row.sent_at or row.claimed_at or f"published {row.published_at or '?'}")


@app.command("why")
def why_cmd(
    article: Annotated[str, typer.Argument(metavar="ARTICLE_ID|URL", help="An article's id or its URL.")],
    profile_id: Annotated[str | None, typer.Option("--profile", help="Only this profile.")] = None,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why an article was alerted or not, for each profile: the decision the alert runs recorded (in
    which digest; below the threshold, with the score; a copy of a story already alerted; outside the
    look-back window; no recipients; held by the cap; mail server failed), or that it was not tagged."""
    article_id = doc_id(canonical_url(article.strip())) if "://" in article else article.strip()
    log.configure(json=as_json or None)
    try:
        settings = read_settings(es_url=es_url, es_index=es_index, data_dir=data_dir)
        profiles = [p for p in load_profiles_checked(settings, profile_id) if profile_id in (None, p.id)]
        with open_index(settings) as es:
            answer = why(settings, es, profiles, article_id, now=datetime.now(UTC))
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return
    print_why(answer)


def print_why(answer: Why) -> None:
    """One screen: the article, then per profile the answer in one line and the decisions behind it
    (the last five)."""
    out.print(escape(f"{answer.title} — {answer.outlet}"), style="bold", highlight=False)
    story = f" · story {answer.cluster_id}" if answer.cluster_id != answer.article_id else ""
    out.print(escape(f"  published {when(answer.published_at)} · indexed {when(answer.fetched_at)}"), highlight=False)
    out.print(escape(f"  {answer.url}"), highlight=False)
    out.print(escape(f"  id {answer.article_id}{story}"), highlight=False)
    if not answer.answers:
        out.print("no profile: nothing is alerted (add one to PROFILES_DIR)")
    for profile in answer.answers:
        score = f"score {profile.score:.1f}" if profile.score is not None else "no score"
        thresholds = f"tag at {profile.tag_threshold:g}, alert at {profile.alert_threshold:g}"
        out.print(escape(f"\n{profile.profile}: {profile.status}"), style="bold", highlight=False)
        out.print(escape(f"  {score} ({thresholds})"), highlight=False)
        out.print(escape(f"  {profile.verdict}"), highlight=False)
        for decision in profile.decisions[:5]:
            to = ", ".join(decision.recipients) or "no recipients"
            out.print(escape(f"  · {when(decision.decided_at)}  {decision.reason}, to {to}"), highlight=False)


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
