"""The operators' view of email alerts (``python -m pipeline alerts list|resend``): what is pending, in
flight, sent and decided against, and delivering a sent digest or story again.

``list`` reads the same selection a run would make (:func:`pipeline.alerts.run.select_pending`), the
ledger's ``claimed`` and ``sent`` story records, and the decisions about their articles
(:mod:`pipeline.alerts.decisions`): each row counts its story's articles by decision, a pending row says
why it waits, and stories no run will send (below the alert threshold, left the look-back window) are
rows of their own. ``resend`` rebuilds each story from its articles as they
are indexed now (from the ledger document when they are gone) and records the new message on the
existing ledger documents (``resent_message_ids``, ``resent_at``, ``resent_to``): a resend is never a
second ``sent`` record, so it changes nothing the next run selects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.alerts import mailer
from pipeline.alerts.decisions import PENDING, Decision, Reason, decisions_of
from pipeline.alerts.digest import Copy, Digest, Story, build_message, reading_order
from pipeline.alerts.ledger import (
    CLAIMED,
    DEFAULT_SENDER,
    SENT,
    STORY,
    ensure_ledger,
    ledger_hits,
    new_message_id,
    refresh_ledger,
)
from pipeline.alerts.run import ARTICLE_FIELDS, Pending, recipients_for, select_pending, story_of
from pipeline.errors import AlertError
from pipeline.records import iso, parse_iso_or_none
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.es import bulk_write, get_many, translated
from pipeline.topics.profiles import Profile

__all__ = ["STATUSES", "AlertRow", "list_alerts", "resend"]

_log = log.get(__name__)


Status = Literal["sent", "pending", "not-alerted", "all"]
STATUSES: tuple[Status, ...] = ("sent", "pending", "not-alerted", "all")
NOT_ALERTED: tuple[Reason, ...] = ("below_threshold", "outside_lookback")


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One story for one profile and recipient list, as ``alerts list`` shows it."""

    status: str  # pending, claimed (a run is sending it), sent, or not alerted
    reason: str | None  # its decision: alerted, held_by_cap, mail_failed, no_recipients, below_threshold ...
    profile: str
    cluster_id: str
    title: str
    outlet: str
    outlets: list[str]
    url: str
    published_at: str | None
    recipients: list[str]
    claimed_at: str | None
    sent_at: str | None
    message_id: str | None
    resent_message_ids: list[str]
    score: float | None
    id: str | None  # the ledger document
    decisions: dict[str, int] = field(default_factory=dict)  # the story's articles by decision

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_alerts(
    settings: Settings,
    es: Elasticsearch,
    profiles: Sequence[Profile],
    *,
    profile_id: str | None = None,
    status: Status = "all",
    now: datetime | None = None,
    limit: int = 500,
) -> list[AlertRow]:
    """What the next run would send (``pending``), what a run is sending (``claimed``: a claim older than
    ``ALERT_CLAIM_MINUTES`` belongs to a dead worker and its story is pending again), the ledger's
    ``sent`` rows, newest first, then the stories decided against (``not alerted``), most recent first.
    ``status``: sent | pending | not-alerted | all.

    Raises:
        IndexingError: the index cannot be read.
    """
    now = now or datetime.now(UTC)
    alias = settings.es_index
    ensure_ledger(es, alias)
    rows: list[AlertRow] = []
    if status in ("pending", "all"):
        for profile in profiles:
            if profile_id not in (None, profile.id):
                continue
            for group in select_pending(settings, es, profile, recipients_for(profile, settings), now=now):
                rows.extend(_pending_row(group, story) for story in group.stories)
        rows.extend(_ledger_rows(es, alias, profile_id=profile_id, statuses=[CLAIMED], limit=limit))
    if status in ("sent", "all"):
        rows.extend(_ledger_rows(es, alias, profile_id=profile_id, statuses=[SENT], limit=limit))
    rows = rows[:limit]
    decided = (
        decisions_of(es, alias, cluster_ids=sorted({r.cluster_id for r in rows}), profile_id=profile_id) if rows else []
    )
    rows = [_with_decisions(row, decided) for row in rows]
    if status in ("not-alerted", "all") and len(rows) < limit:
        listed = {(r.profile, r.cluster_id) for r in rows}
        against = decisions_of(es, alias, profile_id=profile_id, reasons=NOT_ALERTED, limit=10 * limit)
        rows.extend(_not_alerted_rows(against, listed)[: limit - len(rows)])
    return rows


def _with_decisions(row: AlertRow, decided: Sequence[Decision]) -> AlertRow:
    mine = [d for d in decided if d.profile == row.profile and d.cluster_id == row.cluster_id]
    counts: dict[str, int] = {}
    for decision in {d.article_id: d for d in reversed(mine)}.values():  # the latest per article
        counts[decision.reason] = counts.get(decision.reason, 0) + 1
    reason = row.reason
    if row.status == "pending":
        waiting = [d for d in mine if d.reason in PENDING]  # newest first
        reason = waiting[0].reason if waiting else "not decided yet"
    return AlertRow(**{**row.to_dict(), "reason": reason, "decisions": counts})


def _not_alerted_rows(decided: Sequence[Decision], listed: set[tuple[str, str]]) -> list[AlertRow]:
    stories: dict[tuple[str, str], list[Decision]] = {}
    for decision in decided:  # newest first
        key = (decision.profile, decision.cluster_id)
        if key not in listed:
            stories.setdefault(key, []).append(decision)
    rows = []
    for (profile, cluster), group in stories.items():
        best = max(group, key=lambda d: d.score)
        counts: dict[str, int] = {}
        for decision in {d.article_id: d for d in reversed(group)}.values():
            counts[decision.reason] = counts.get(decision.reason, 0) + 1
        rows.append(
            AlertRow(
                status="not alerted",
                reason=group[0].reason,
                profile=profile,
                cluster_id=cluster,
                title=best.title,
                outlet=best.outlet,
                outlets=list(dict.fromkeys(d.outlet for d in group)),
                url=best.url,
                published_at=best.published_at,
                recipients=list(best.recipients),
                claimed_at=None,
                sent_at=None,
                message_id=None,
                resent_message_ids=[],
                score=best.score,
                id=None,
                decisions=counts,
            )
        )
    return rows


def _ledger_rows(
    es: Elasticsearch, alias: str, *, profile_id: str | None, statuses: list[str], limit: int
) -> list[AlertRow]:
    filters: list[dict[str, Any]] = [{"terms": {"status": statuses}}]
    if profile_id:
        filters.append({"term": {"profile": profile_id}})
    sort_field = "sent_at" if statuses == [SENT] else "claimed_at"
    # Stories only: a surge's record has a status too (pipeline/alerts/surge.py).
    stories = {"bool": {"should": [{"term": {"kind": STORY}}, {"bool": {"must_not": [{"exists": {"field": "kind"}}]}}]}}
    with translated("reading the alert ledger", url=alias):
        resp = es.search(
            index=index.Names(alias).alerts,
            query={"bool": {"filter": [*filters, stories]}},
            sort=[{sort_field: {"order": "desc"}}],
            size=limit,
        )
    rows = []
    for hit in resp["hits"]["hits"]:
        src = hit["_source"]
        state = str(src.get("status") or "")
        rows.append(
            AlertRow(
                status=state,
                reason="alerted" if state == SENT else None,
                profile=src.get("profile") or "",
                cluster_id=src.get("cluster_id") or "",
                title=src.get("title") or "",
                outlet=src.get("outlet") or "",
                outlets=src.get("outlets") or [],
                url=src.get("url") or "",
                published_at=src.get("published_at"),
                recipients=src.get("recipients") or [],
                claimed_at=src.get("claimed_at"),
                sent_at=src.get("sent_at"),
                message_id=src.get("message_id"),
                resent_message_ids=src.get("resent_message_ids") or [],
                score=src.get("score"),
                id=hit["_id"],
            )
        )
    return rows


def _pending_row(group: Pending, story: Story) -> AlertRow:
    return AlertRow(
        status="pending",
        reason=None,
        profile=group.profile.id,
        cluster_id=story.cluster_id,
        title=story.title,
        outlet=story.outlet,
        outlets=[story.outlet, *(c.outlet for c in story.others)],
        url=story.url,
        published_at=iso(story.published_at),
        recipients=list(group.recipients),
        claimed_at=None,
        sent_at=None,
        message_id=None,
        resent_message_ids=[],
        score=story.score,
        id=None,
    )


def resend(
    settings: Settings,
    es: Elasticsearch,
    profiles: Sequence[Profile],
    key: str,
    *,
    to: Sequence[str] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    """Deliver again what was sent under a message id, or a story by its cluster id or any of its article
    ids: one digest per profile, to ``to`` or the original recipients. Recorded on the existing ledger
    documents (``resent_message_ids``, ``resent_at``, ``resent_to``) — never as a second "sent" record.

    Raises:
        AlertError: nothing sent matches ``key``, or delivery failed.
        IndexingError: the index cannot be read or written.
    """
    now = now or datetime.now(UTC)
    alias = settings.es_index
    ensure_ledger(es, alias)
    wanted = key.strip()
    bare = wanted.strip("<>")
    query = {
        "bool": {
            "filter": [{"term": {"status": SENT}}],
            "must_not": [{"term": {"kind": "surge"}}],  # a surge email is not a digest to resend
            "should": [
                {"terms": {"message_id": [bare, f"<{bare}>"]}},
                {"term": {"cluster_id": bare}},
                {"term": {"article_ids": bare}},
            ],
            "minimum_should_match": 1,
        }
    }
    found = list(ledger_hits(es, alias, query))
    if not found:
        raise AlertError(f"no sent alert has the message id, cluster or article {wanted!r}")
    titles = {p.id: p for p in profiles}
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for hit in found:
        by_profile.setdefault(hit["_source"]["profile"], []).append(hit)
    sent: list[dict[str, Any]] = []
    for profile_id, hits in sorted(by_profile.items()):
        profile = titles.get(profile_id)
        stories = [_story_again(es, alias, hit["_source"], profile) for hit in hits]
        recipients = tuple(dict.fromkeys(to or [r for hit in hits for r in hit["_source"].get("recipients") or []]))
        if not recipients:
            raise AlertError(f"no recipient to resend to for {wanted!r}: pass --to")
        digest = Digest(
            profile_id=profile_id,
            profile_title=profile.title if profile else profile_id,
            stories=reading_order(stories),
            resend=True,
        )
        message_id = new_message_id(settings, now)
        message = build_message(
            digest, sender=settings.alert_from or DEFAULT_SENDER, recipients=recipients, message_id=message_id, date=now
        )
        delivery = mailer.deliver(settings, message)
        _record_resend(es, alias, hits, message_id=message_id, recipients=delivery.accepted, now=now)
        _log.info("alerts.resent", profile=profile_id, message_id=message_id, stories=len(stories))
        sent.append(
            {
                "profile": profile_id,
                "message_id": message_id,
                "resent_of": sorted({h["_source"].get("message_id") for h in hits if h["_source"].get("message_id")}),
                "recipients": list(delivery.accepted),
                "refused": delivery.refused,
                "stories": len(stories),
                "where": delivery.where,
            }
        )
    return {"key": wanted, "digests": sent}


def _story_again(es: Elasticsearch, alias: str, record: dict[str, Any], profile: Profile | None) -> Story:
    """A sent story rebuilt from its articles as they are now indexed, or from the ledger if they are gone."""
    ids = list(record.get("article_ids") or [])
    articles = [{"_id": i, **src} for i, src in get_many(es, alias, ids, fields=ARTICLE_FIELDS).items()]
    if articles:
        return story_of(record.get("cluster_id") or articles[0]["_id"], articles, profile)
    return Story(
        cluster_id=record.get("cluster_id") or "",
        article_id=ids[0] if ids else "",
        title=record.get("title") or "",
        outlet=record.get("outlet") or "",
        url=record.get("url") or "",
        published_at=parse_iso_or_none(record.get("published_at")),
        terms=tuple(record.get("terms") or ()),
        score=float(record.get("score") or 0.0),
        others=tuple(Copy(outlet=o, url="") for o in (record.get("outlets") or [])[1:]),
        article_ids=tuple(ids),
    )


def _record_resend(
    es: Elasticsearch,
    alias: str,
    hits: Sequence[dict[str, Any]],
    *,
    message_id: str,
    recipients: Sequence[str],
    now: datetime,
) -> None:
    ledger = index.Names(alias).alerts
    actions = []
    for hit in hits:
        src = hit["_source"]
        actions.append(
            {
                "_op_type": "update",
                "_index": ledger,
                "_id": hit["_id"],
                "doc": {
                    "resent_message_ids": [*(src.get("resent_message_ids") or []), message_id],
                    "resent_to": sorted({*(src.get("resent_to") or []), *recipients}),
                    "resent_at": iso(now),
                },
            }
        )
    result = bulk_write(es, actions)
    refresh_ledger(es, alias)
    for doc_id, reason in result.failed:
        _log.error("alerts.ledger_write_failed", message_id=message_id, claim=doc_id, reason=reason)
