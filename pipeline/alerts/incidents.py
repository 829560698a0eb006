"""Operator alerts: one email to ``OPS_ALERT_TO`` when a feed becomes failing (after
``FEED_ALERT_AFTER_FAILURES`` failed polls in a row), stale, moved, blocked or dead, and one when it is
``ok`` again — never one per poll, never in the analysts' digests.

Like the story alerts, everything is read from Elasticsearch (the feeds' states in ``<alias>-feeds``,
written by the polls), so the command line runs :func:`run_incidents` after a cycle and Airflow after
its polling tasks, and a retry or a second run at the same time sends nothing twice.

Incidents
    An incident is a feed in one bad state during one *episode*: for a feed that fails (failing,
    blocked, dead) the episode is its last success before the failures, for a stale feed its newest
    item, for a moved feed the address it moved to. These are the same in every worker that reads the
    feed, whoever polled it last, so the incident's ledger id (a hash of feed, URL, state and episode)
    is too. A feed that goes from failing to dead in one outage sends two emails (each state once), one
    that flaps between failing and blocked sends each once. A recovery is the feed back to ``ok`` while
    incidents of it were sent and not yet closed: one email closes them all.

Exactly once
    The ledger is ``<alias>-incidents`` (``schemas/state-indices.json``), kept with the alert ledger's
    mechanisms (:mod:`pipeline.alerts.ledger`): a run *claims* an incident by creating its document with
    ``op_type=create`` (a 409 means another run has it: not ours to send), builds and delivers the
    message, and marks it ``sent`` only once the mail server accepted it (or the ``.eml`` file is in
    the outbox). Delivery failed: the claim is deleted and the next run sends it. A claim older than
    ``ALERT_CLAIM_MINUTES`` belongs to a worker that died and is dropped, so its email goes out (perhaps
    twice, if the worker died between the server's acceptance and the ledger write — preferred to
    losing it). Same SMTP settings as the digests (``SMTP_URL``, or ``.eml`` files in the outbox).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from elasticsearch import ConflictError, Elasticsearch

from pipeline import log
from pipeline.alerts import mailer
from pipeline.alerts.ledger import (
    CLAIMED,
    DEFAULT_SENDER,
    SENT,
    claim_ttl,
    delete_claims,
    mark_sent,
    new_message_id,
    new_owner,
    refresh_ledger,
)
from pipeline.errors import AlertError, MailServerUnreachable
from pipeline.records import FeedConfig, FeedState, count_states, iso, parse_iso_or_none
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.es import bulk_write, translated

__all__ = ["INCIDENT_STATES", "Incident", "IncidentRun", "Sent", "incident_of", "run_incidents"]

_log = log.get(__name__)

INCIDENT_STATES = ("failing", "stale", "moved", "blocked", "dead")
INCIDENT, RECOVERY = "incident", "recovery"


@dataclass(frozen=True, slots=True)
class Incident:
    """One email to operators: a feed in a bad state (``incident``), or back to ok (``recovery``)."""

    feed: FeedConfig
    state: FeedState
    kind: str
    episode: str
    closes: tuple[str, ...] = ()  # a recovery: the incidents' ids it closes

    @property
    def id(self) -> str:
        key = (
            [RECOVERY, self.feed.id, min(self.closes)]
            if self.kind == RECOVERY
            else [INCIDENT, self.feed.id, self.state.url, self.state.state, self.episode]
        )
        return hashlib.sha256("\x1f".join(key).encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Sent:
    """One operator email that went out."""

    feed: str
    kind: str  # incident | recovery
    state: str  # the feed's state, "recovered" for a recovery
    message_id: str


@dataclass(slots=True)
class IncidentRun:
    """What a run of the operator alerts did, JSON-ready (``to_dict``)."""

    feed_states: dict[str, int]  # feeds per health state, over the feed list
    recipients: list[str]
    incidents_sent: int = 0
    recoveries_sent: int = 0
    pending: int = 0  # not delivered (mail server down or refusing): the next run sends them
    busy: int = 0  # held by another run at this moment
    sent: list[Sent] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def episode_of(state: FeedState) -> str:
    """What makes one outage, staleness or move one incident, whoever polled the feed (module docs)."""
    if state.state == "stale":
        return f"stale:{state.newest_item_at or ''}"
    if state.state == "moved":
        return f"moved:{state.moved_to or ''}"
    return f"down:{state.last_success or 'never'}"


def incident_of(feed: FeedConfig, state: FeedState | None, *, alert_after: int) -> Incident | None:
    """The incident ``state`` makes of ``feed``, or None when it makes none (yet)."""
    if state is None or state.url != feed.url or state.state not in INCIDENT_STATES:
        return None
    # One failed poll is weather; alert_after in a row is an incident. Dead needs days of failures anyway.
    if state.state in ("failing", "blocked") and state.consecutive_failures < alert_after:
        return None
    return Incident(feed, state, INCIDENT, episode_of(state))


def run_incidents(
    settings: Settings, es: Elasticsearch, feeds: Sequence[FeedConfig], *, now: datetime | None = None
) -> IncidentRun:
    """Send what ``feeds``' stored states call for: each new incident once, each recovery once. Without
    ``OPS_ALERT_TO`` it only counts the states.

    Raises:
        IndexingError: the feed states or the ledger cannot be read or written.
    """
    now = now or datetime.now(UTC)
    alias = settings.es_index
    states = index.load_feed_states(es, alias, [f.id for f in feeds])
    run = IncidentRun(feed_states=count_states(feeds, states), recipients=list(settings.ops_alert_to))
    if not settings.ops_alert_to:
        return run
    ledger = index.Names(alias).incidents
    _drop_stale_claims(es, alias, ledger, cutoff=now - claim_ttl(settings))
    open_incidents = _open_incidents(es, alias, ledger, [f.id for f in feeds])
    owner = new_owner()
    wanted: list[Incident] = []
    for feed in feeds:
        state = states.get(feed.id)
        incident = incident_of(feed, state, alert_after=settings.feed_alert_after_failures)
        if incident is not None:
            wanted.append(incident)
        elif state is not None and state.url == feed.url and state.state == "ok" and open_incidents.get(feed.id):
            closes = tuple(sorted(h["_id"] for h in open_incidents[feed.id]))
            wanted.append(Incident(feed, state, RECOVERY, "", closes))
    unreachable: str | None = None
    for incident in wanted:
        if not _claim(es, alias, ledger, incident, now=now, owner=owner):
            run.busy += incident.kind == RECOVERY  # an incident already sent is the usual case, not news
            continue
        if unreachable is not None:
            # The server did not answer the last attempt: every other would wait for the same timeout.
            delete_claims(es, alias, [incident.id], ledger=ledger)
            run.pending += 1
            continue
        message_id = new_message_id(settings, now)
        message = build_message(
            incident,
            sender=settings.alert_from or DEFAULT_SENDER,
            recipients=settings.ops_alert_to,
            message_id=message_id,
            now=now,
            dead_days=settings.feed_dead_days,
        )
        try:
            delivery = mailer.deliver(settings, message)
        except AlertError as err:
            delete_claims(es, alias, [incident.id], ledger=ledger)
            run.pending += 1
            run.failures.append({"feed": incident.feed.id, "kind": incident.kind, "reason": str(err)})
            _log.warning("ops_alert.failed", feed=incident.feed.id, kind=incident.kind, reason=str(err))
            if isinstance(err, MailServerUnreachable):
                unreachable = str(err)
            continue
        mark_sent(es, alias, [incident.id], message_id=message_id, accepted=delivery.accepted, now=now, ledger=ledger)
        if incident.kind == RECOVERY:
            _close(es, alias, ledger, incident.closes, by=incident.id, now=now)
            run.recoveries_sent += 1
        else:
            run.incidents_sent += 1
        what = "recovered" if incident.kind == RECOVERY else incident.state.state
        run.sent.append(Sent(feed=incident.feed.id, kind=incident.kind, state=what, message_id=message_id))
        _log.info("ops_alert.sent", feed=incident.feed.id, kind=incident.kind, state=what, where=delivery.where)
    return run


def _drop_stale_claims(es: Elasticsearch, alias: str, ledger: str, *, cutoff: datetime) -> None:
    query = {"bool": {"filter": [{"term": {"status": CLAIMED}}, {"range": {"claimed_at": {"lt": iso(cutoff)}}}]}}
    with translated("clearing stale operator-alert claims", url=ledger):
        done = es.delete_by_query(index=ledger, query=query, conflicts="proceed", refresh=True)
    if done.get("deleted"):
        # A worker died holding these: sent now, perhaps a second time if it died after delivery.
        _log.warning("ops_alert.stale_claims", deleted=done["deleted"])


def _open_incidents(es: Elasticsearch, alias: str, ledger: str, feed_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """feed id → its incidents sent and not closed by a recovery."""
    query = {
        "bool": {
            "filter": [{"term": {"kind": INCIDENT}}, {"term": {"status": SENT}}, {"terms": {"feed_id": feed_ids}}],
            "must_not": [{"exists": {"field": "closed_at"}}],
        }
    }
    found: dict[str, list[dict[str, Any]]] = {}
    # Few: at most one per feed and bad state since the feed's last recovery.
    with translated("reading the operator-alert ledger", url=ledger):
        hits = es.search(index=ledger, query=query, size=10000, source_includes=["feed_id", "state", "since"])
    for hit in hits["hits"]["hits"]:
        found.setdefault(str(hit["_source"]["feed_id"]), []).append(hit)
    return found


def _claim(es: Elasticsearch, alias: str, ledger: str, incident: Incident, *, now: datetime, owner: str) -> bool:
    """Create the incident's ledger document; False when it exists (sent, or another run's live claim)."""
    state = incident.state
    body = {
        "kind": incident.kind,
        "feed_id": incident.feed.id,
        "url": state.url,
        "outlet": incident.feed.outlet,
        "state": "recovered" if incident.kind == RECOVERY else state.state,
        "episode": incident.episode,
        "since": state.state_since,
        "reason": state.last_error,
        "consecutive_failures": state.consecutive_failures,
        "status": CLAIMED,
        "claimed_at": iso(now),
        "claimed_by": owner,
        "closes": list(incident.closes),
    }
    with translated(f"claiming the operator alert for {incident.feed.id}", url=ledger):
        try:
            es.create(index=ledger, id=incident.id, document=body, refresh=True)
        except ConflictError:
            if incident.kind == RECOVERY:
                _finish_recovery(es, alias, ledger, incident, now=now)
            return False
    return True


def _finish_recovery(es: Elasticsearch, alias: str, ledger: str, incident: Incident, *, now: datetime) -> None:
    # A recovery sent by a run that could not close its incidents afterwards (the index went away):
    # close them now, or every later run would find them open and meet the same sent recovery.
    with translated(f"reading the operator alert {incident.id}", url=ledger):
        held = es.get(index=ledger, id=incident.id)
    if held["_source"].get("status") == SENT:
        _close(es, alias, ledger, incident.closes, by=incident.id, now=now)


def _close(es: Elasticsearch, alias: str, ledger: str, ids: Sequence[str], *, by: str, now: datetime) -> None:
    doc = {"closed_at": iso(now), "closed_by": by}
    result = bulk_write(es, ({"_op_type": "update", "_index": ledger, "_id": i, "doc": doc} for i in ids))
    refresh_ledger(es, alias, ledger=ledger)
    for doc_id, reason in result.failed:
        # The recovery is sent; the next run finds the incident open, meets the recovery and closes it.
        _log.warning("ops_alert.close_failed", incident=doc_id, reason=reason)


# --- the message ------------------------------------------------------------------------------------


_WHAT_TO_DO = {
    "failing": "Probe it now with `python -m pipeline feeds check {id}`; if the outlet changed its feed, find the "
    "new one with `python -m pipeline feeds discover <home page>` and update the feed list.",
    "blocked": "The server refuses this client (HTTP {status}). Ask the outlet, poll from another address, or "
    "find another feed of the outlet: `python -m pipeline feeds discover <home page>`.",
    "dead": "It has failed for more than {dead_days:g} days. Fix its url in the feed list, or switch it off "
    "with `enabled: false` (keep the entry: its id is on the articles already indexed).",
    "stale": "It answers, but publishes nothing new: the outlet may have moved to another feed. "
    "`python -m pipeline feeds discover <home page>` lists the feeds its home page declares.",
    "moved": "It answers through a permanent redirect: put {moved_to} in the feed list as its url.",
}


def build_message(
    incident: Incident,
    *,
    sender: str,
    recipients: Sequence[str],
    message_id: str,
    now: datetime,
    dead_days: float,
) -> EmailMessage:
    """The plain-text email for one incident or recovery (operators read it in any client)."""
    feed, state = incident.feed, incident.state
    if incident.kind == RECOVERY:
        subject = f"[feed health] {feed.id} recovered: ok again"
        lines = [
            f"Feed {feed.id} ({feed.outlet}) is ok again.",
            f"URL: {state.url}",
            f"Last success: {state.last_success or 'never'}",
            f"Newest item: {_age(state.newest_item_at, now)}",
            f"Closes {len(incident.closes)} incident(s) reported earlier.",
        ]
    else:
        headline = _headline(state, now)
        subject = f"[feed health] {feed.id} is {headline}"
        todo = _WHAT_TO_DO[state.state].format(
            id=feed.id, status=state.last_status or "?", dead_days=dead_days, moved_to=state.moved_to or "?"
        )
        lines = [
            f"Feed {feed.id} ({feed.outlet}) is {headline}.",
            f"URL: {state.url}",
            f"State since: {state.state_since or '?'}",
            f"Last success: {state.last_success or 'never'}",
            f"Last error: {state.last_error or '-'}",
            f"Newest item: {_age(state.newest_item_at, now)}"
            + (f" (it usually publishes every {_duration(state.cadence_minutes)})" if state.cadence_minutes else ""),
            f"Next poll: {state.next_poll_at or '?'} (every {_duration(state.interval_minutes)} for now)",
            "",
            todo,
        ]
    lines += ["", "One email per incident and one per recovery; `python -m pipeline feeds` lists every feed's state."]
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message["X-Feed-Incident"] = incident.id
    message.set_content("\n".join(lines) + "\n")
    return message


def _headline(state: FeedState, now: datetime) -> str:
    if state.state in ("failing", "blocked", "dead"):
        return f"{state.state} ({state.consecutive_failures} failed polls in a row)"
    if state.state == "stale":
        return f"stale (newest item {_age(state.newest_item_at, now)})"
    return f"moved (to {state.moved_to})"


def _age(when: str | None, now: datetime) -> str:
    moment = parse_iso_or_none(when)
    if moment is None:
        return "unknown"
    return f"{when}, {_duration((now - moment).total_seconds() / 60)} old"


def _duration(minutes: float | None) -> str:
    if minutes is None:
        return "?"
    if minutes < 120:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} days"
