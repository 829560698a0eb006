"""The alert ledger: the index ``<alias>-alerts`` (``schemas/state-indices.json``), whose documents are
what the dashboards show. A *lease* serialises one profile's run, *claims* hold stories while their
digest is sent, and ``sent`` documents record what went to whom. :mod:`pipeline.alerts.run` drives these
steps; :mod:`pipeline.alerts.operator` reads and amends the ledger for operators.

Documents
    A ledger document records one story (cluster) sent to one recipient list for one profile, with
    ``cluster_id`` and ``article_ids`` (every article of the cluster when it was claimed).
    ``cluster_id`` alone is not enough: when an earlier-published copy arrives later, the whole
    cluster moves to that copy's id (``clustering.update_clusters``). So a cluster counts as alerted to
    an address when a ``sent`` (or live ``claimed``) document of the profile names that address and
    either the cluster's id or any of its articles (:func:`alerted_to`). Addresses are compared
    case-insensitively.

Lease, claims and crashes
    * A run first takes the profile's *lease*: a ledger document ``lease:<profile>`` created with
      ``op_type=create`` (409 when another run holds it). A run that finds the profile leased skips
      it (``profiles_busy``); its stories stay pending for the next run. The lease serialises the
      profile's select → claim → send → mark, which closes the race where two runs read a cluster
      before and after it was re-pointed and would claim it under two ids. It is renewed (again with
      ``if_seq_no``) before each digest, so a run slowed past the lease's life finds it taken over and
      stops instead of working beside the run that took it.
    * Each story is then *claimed* with ``create`` under a deterministic id (profile, recipient list,
      cluster), ``status: claimed``, before the message is built. A claim is not "alerted" for the
      dashboards; it is marked ``sent`` (``sent_at``, ``message_id``, the recipients the server
      accepted) only after the SMTP server accepted the message (or the ``.eml`` file is in place).
      If delivery fails the claims are deleted and the stories stay pending.
    * A lease or claim older than ``ALERT_CLAIM_MINUTES`` (10) belongs to a worker that died: a
      delivery takes seconds, bounded by ``SMTP_TIMEOUT``. The lease is taken over with an optimistic
      concurrency check (``if_seq_no``), so two runs cannot both take it; stale claims are deleted and
      their stories sent again. That is the one case where a recipient may get a story twice: a
      worker killed between the server's "250 accepted" and the ledger write. The alternative —
      keeping a dead worker's claims for ever — would lose stories silently, which is worse.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

from elasticsearch import ConflictError, Elasticsearch, NotFoundError
from elasticsearch import helpers as es_helpers

from pipeline import log, records
from pipeline.alerts.digest import Story
from pipeline.errors import IndexingError
from pipeline.records import iso, parse_iso_or_none
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.es import bulk_write, translated
from pipeline.stories.cluster import prepare_index

__all__ = [
    "CLAIMED",
    "DEFAULT_SENDER",
    "LEASE",
    "SENT",
    "STORY",
    "Covering",
    "Lease",
    "alerted_to",
    "claim_id",
    "claim_stories",
    "claim_ttl",
    "covered_by",
    "covering_records",
    "delete_claims",
    "drop_stale_claims",
    "ensure_ledger",
    "ledger_hits",
    "mark_sent",
    "new_message_id",
    "refresh_ledger",
    "release_lease",
    "renew_lease",
    "take_lease",
]

_log = log.get(__name__)

CLAIMED, SENT, LEASE = "claimed", "sent", "lease"
STORY = "story"  # kind of a story's claim and sent record (records from before kinds existed have none)
DEFAULT_SENDER = "news-alerts@localhost"


# --- setup and reading ------------------------------------------------------------------------------


def ensure_ledger(es: Elasticsearch, alias: str) -> None:
    """The indices, and the ledger's newer fields on a ledger created before them (additive only).

    Raises:
        IndexingError: the cluster refused.
    """
    prepare_index(es, alias)
    with translated("updating the alert ledger's mapping", url=alias):
        es.indices.put_mapping(index=index.Names(alias).alerts, properties=_ledger_mapping()["properties"])


def _ledger_mapping() -> dict[str, Any]:
    state: dict[str, Any] = json.loads((index.SCHEMAS / "state-indices.json").read_text(encoding="utf-8"))
    mappings: dict[str, Any] = state["alerts"]["mappings"]
    return mappings


def ledger_hits(
    es: Elasticsearch, alias: str, query: dict[str, Any], fields: list[str] | None = None, *, seq_no: bool = False
) -> Iterator[dict[str, Any]]:
    """Every ledger document matching ``query`` (with ``fields`` of its source, or all of it; with
    ``seq_no``, the ``_seq_no`` and ``_primary_term`` a conditional write needs).

    Raises:
        IndexingError: the ledger cannot be read.
    """
    body: dict[str, Any] = {"query": query} if fields is None else {"query": query, "_source": fields}
    if seq_no:
        body["seq_no_primary_term"] = True
    with translated("reading the alert ledger", url=alias):
        yield from es_helpers.scan(es, index=index.Names(alias).alerts, query=body, size=1000)


def refresh_ledger(es: Elasticsearch, alias: str, *, ledger: str | None = None) -> None:
    """Make the ledger's writes visible (``ledger``: another index kept the same way, e.g. the incidents)."""
    with translated("refreshing the alert ledger", url=alias):
        es.indices.refresh(index=ledger or index.Names(alias).alerts)


def _recorded(profile_id: str, *, live_after: datetime) -> list[dict[str, Any]]:
    """Filters for the ledger documents that make a story alerted: sent, or claimed by a live run."""
    return [
        {"term": {"profile": profile_id}},
        {
            "bool": {
                "should": [
                    {"term": {"status": SENT}},
                    {
                        "bool": {
                            "filter": [
                                {"term": {"status": CLAIMED}},
                                {"range": {"claimed_at": {"gte": iso(live_after)}}},
                            ]
                        }
                    },
                ],
                "minimum_should_match": 1,
            }
        },
    ]


@dataclass(frozen=True, slots=True)
class Covering:
    """A ledger record that makes a story alerted to its recipients: sent, or claimed by a live run."""

    status: str
    cluster_id: str
    article_ids: tuple[str, ...]
    recipients: tuple[str, ...]
    message_id: str | None
    sent_at: str | None
    headline: str  # the story's headline article when it was claimed


def covering_records(
    es: Elasticsearch,
    alias: str,
    profile_id: str,
    *,
    clusters: Sequence[str],
    articles: Sequence[str],
    live_after: datetime,
) -> list[Covering]:
    """The profile's ``sent`` and live ``claimed`` records that name one of ``clusters`` or ``articles``.

    Raises:
        IndexingError: the ledger cannot be read.
    """
    found: list[Covering] = []
    clusters, articles = sorted(set(clusters)), sorted(set(articles))
    fields = ["status", "cluster_id", "article_ids", "recipients", "message_id", "sent_at", "article_id", "url"]
    for start in range(0, max(len(clusters), len(articles)), 5000):
        keys = [
            {"terms": {"cluster_id": clusters[start : start + 5000]}},
            {"terms": {"article_ids": articles[start : start + 5000]}},
        ]
        query = {
            "bool": {
                "filter": _recorded(profile_id, live_after=live_after),
                "should": [k for k in keys if next(iter(k["terms"].values()))],
                "minimum_should_match": 1,
            }
        }
        for hit in ledger_hits(es, alias, query, fields):
            src = hit["_source"]
            found.append(
                Covering(
                    status=str(src.get("status") or ""),
                    cluster_id=str(src.get("cluster_id") or ""),
                    article_ids=tuple(src.get("article_ids") or ()),
                    recipients=tuple(src.get("recipients") or ()),
                    message_id=src.get("message_id"),
                    sent_at=src.get("sent_at"),
                    # Records from before article_id was kept: the headline's id is its URL's hash.
                    headline=str(src.get("article_id") or (records.doc_id(src["url"]) if src.get("url") else "")),
                )
            )
    return found


def covered_by(records: Sequence[Covering], stories: dict[str, Story]) -> dict[str, set[str]]:
    """cluster_id → the addresses (lower case) the story was already alerted to, by cluster id or by any
    of its articles (a cluster re-pointed to an earlier copy's id is still recognised)."""
    by_article = {a: s.cluster_id for s in stories.values() for a in s.article_ids}
    covered: dict[str, set[str]] = {}
    for record in records:
        targets = {record.cluster_id} | {by_article.get(a) for a in record.article_ids}
        addresses = {r.lower() for r in record.recipients}
        for cluster in targets & stories.keys():
            covered.setdefault(str(cluster), set()).update(addresses)
    return covered


def alerted_to(
    es: Elasticsearch, alias: str, profile_id: str, stories: dict[str, Story], *, live_after: datetime
) -> dict[str, set[str]]:
    """cluster_id → the addresses (lower case) it was already alerted to, by cluster id or by any article."""
    articles = [a for s in stories.values() for a in s.article_ids]
    records = covering_records(es, alias, profile_id, clusters=list(stories), articles=articles, live_after=live_after)
    return covered_by(records, stories)


# --- the lease --------------------------------------------------------------------------------------


def claim_ttl(settings: Settings) -> timedelta:
    """How long a lease or claim lives before it counts as a dead worker's."""
    return timedelta(minutes=settings.alert_claim_minutes)


@dataclass(frozen=True, slots=True)
class Lease:
    doc_id: str
    seq_no: int
    primary_term: int


def new_owner() -> str:
    """Who holds a lease or claim: this host, this process, and a token of this run (one process can
    run the alerts twice)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def take_lease(
    es: Elasticsearch, alias: str, profile_id: str, *, now: datetime, ttl: timedelta, owner: str
) -> Lease | None:
    """The profile's lease, or None when a live run holds it."""
    ledger = index.Names(alias).alerts
    doc_id = f"lease:{profile_id}"
    body = {"profile": profile_id, "status": LEASE, "claimed_at": iso(now), "claimed_by": owner}
    with translated(f"taking the alert lease for {profile_id}", url=alias):
        for _ in range(3):
            try:
                done = es.create(index=ledger, id=doc_id, document=body, refresh=True)
                return Lease(doc_id, int(done["_seq_no"]), int(done["_primary_term"]))
            except ConflictError:
                pass
            try:
                held = es.get(index=ledger, id=doc_id)
            except NotFoundError:
                continue  # released in between: try to create it again
            if held["_source"].get("claimed_by") == owner and held["_source"].get("claimed_at") == body["claimed_at"]:
                # Our own create, retried after a dropped connection, met its first try: the lease is ours.
                return Lease(doc_id, int(held["_seq_no"]), int(held["_primary_term"]))
            since = parse_iso_or_none(held["_source"].get("claimed_at"))
            if since is not None and since >= now - ttl:
                return None
            try:
                done = es.index(
                    index=ledger,
                    id=doc_id,
                    document=body,
                    if_seq_no=held["_seq_no"],
                    if_primary_term=held["_primary_term"],
                    refresh=True,
                )
            except ConflictError:
                return None  # another run took it over first
            _log.warning("alerts.lease_taken_over", profile=profile_id, previous=held["_source"].get("claimed_by"))
            return Lease(doc_id, int(done["_seq_no"]), int(done["_primary_term"]))
    return None


def renew_lease(es: Elasticsearch, alias: str, lease: Lease, *, now: datetime, owner: str) -> Lease | None:
    """The lease stamped ``now``, or None when another run has taken it over."""
    body = {
        "profile": lease.doc_id.removeprefix("lease:"),
        "status": LEASE,
        "claimed_at": iso(now),
        "claimed_by": owner,
    }
    with translated(f"renewing the alert lease {lease.doc_id}", url=alias):
        try:
            done = es.index(
                index=index.Names(alias).alerts,
                id=lease.doc_id,
                document=body,
                if_seq_no=lease.seq_no,
                if_primary_term=lease.primary_term,
                refresh=True,
            )
        except ConflictError:
            return None
    return Lease(lease.doc_id, int(done["_seq_no"]), int(done["_primary_term"]))


def release_lease(es: Elasticsearch, alias: str, lease: Lease) -> None:
    try:
        # A conflict: taken over by another run (ours had expired), theirs now.
        with translated(f"releasing the alert lease {lease.doc_id}", url=alias), contextlib.suppress(ConflictError):
            es.delete(
                index=index.Names(alias).alerts,
                id=lease.doc_id,
                if_seq_no=lease.seq_no,
                if_primary_term=lease.primary_term,
                refresh=True,
            )
    except IndexingError as err:
        # It expires after ALERT_CLAIM_MINUTES; until then the profile's alerts wait.
        _log.warning("alerts.lease_not_released", lease=lease.doc_id, reason=str(err))


# --- claims and delivery bookkeeping ----------------------------------------------------------------


def drop_stale_claims(es: Elasticsearch, alias: str, profile_id: str, *, cutoff: datetime) -> None:
    query = {
        "bool": {
            "filter": [
                {"term": {"profile": profile_id}},
                {"term": {"status": CLAIMED}},
                {"range": {"claimed_at": {"lt": iso(cutoff)}}},
            ]
        }
    }
    with translated("clearing stale alert claims", url=alias):
        done = es.delete_by_query(index=index.Names(alias).alerts, query=query, conflicts="proceed", refresh=True)
    if done.get("deleted"):
        # A worker died holding these: sent again now, perhaps a second time if it died after delivery.
        _log.warning("alerts.stale_claims", profile=profile_id, deleted=done["deleted"])


def claim_id(profile_id: str, recipients: Iterable[str], cluster_id: str) -> str:
    """The deterministic ledger id of one story for one profile and recipient list."""
    key = "\x1f".join([profile_id, ",".join(sorted(r.lower() for r in recipients)), cluster_id])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def claim_stories(
    es: Elasticsearch,
    alias: str,
    profile_id: str,
    recipients: Sequence[str],
    stories: Sequence[Story],
    *,
    now: datetime,
    owner: str,
) -> tuple[list[tuple[str, Story]], int]:
    """Create a claim for each story: the (id, story) pairs this run now holds, and how many claims
    failed for another reason than a 409 (another run holds that story: not ours to send or count)."""
    ledger = index.Names(alias).alerts
    ids = {claim_id(profile_id, recipients, s.cluster_id): s for s in stories}
    actions = [
        {
            "_op_type": "create",
            "_index": ledger,
            "_id": doc_id,
            "_source": {
                "kind": STORY,
                "profile": profile_id,
                "cluster_id": story.cluster_id,
                "article_id": story.article_id,
                "article_ids": list(story.article_ids),
                "recipients": list(recipients),
                "status": CLAIMED,
                "claimed_at": iso(now),
                "claimed_by": owner,
                "title": story.title,
                "outlet": story.outlet,
                "outlets": [story.outlet, *(c.outlet for c in story.others)],
                "url": story.url,
                "published_at": iso(story.published_at),
                "terms": list(story.terms),
                "score": story.score,
            },
        }
        for doc_id, story in ids.items()
    ]
    result = bulk_write(es, actions)
    failed = 0
    for doc_id, reason in result.failed:
        if "version_conflict" not in reason and "already exists" not in reason:
            failed += 1
            _log.warning("alerts.claim_failed", profile=profile_id, claim=doc_id, reason=reason)
    refresh_ledger(es, alias)
    return [(doc_id, ids[doc_id]) for doc_id in result.ok], failed


def new_message_id(settings: Settings, now: datetime) -> str:
    """A unique Message-ID on the sender's domain, short enough that the header is never folded."""
    domain = parseaddr(settings.alert_from or DEFAULT_SENDER)[1].rpartition("@")[2] or "localhost"
    return f"<alert.{now.astimezone(UTC):%Y%m%dT%H%M%S}.{uuid.uuid4().hex[:16]}@{domain}>"


def delete_claims(es: Elasticsearch, alias: str, claim_ids: Sequence[str], *, ledger: str | None = None) -> None:
    ledger = ledger or index.Names(alias).alerts
    try:
        result = bulk_write(es, ({"_op_type": "delete", "_index": ledger, "_id": i} for i in claim_ids))
        refresh_ledger(es, alias, ledger=ledger)
    except IndexingError as err:
        # The claims expire after ALERT_CLAIM_MINUTES; the stories go out after that.
        _log.warning("alerts.claims_not_released", claims=len(claim_ids), reason=str(err))
        return
    for doc_id, reason in result.failed:
        _log.warning("alerts.claims_not_released", claim=doc_id, reason=reason)


def mark_sent(
    es: Elasticsearch,
    alias: str,
    claim_ids: Sequence[str],
    *,
    message_id: str,
    accepted: Sequence[str],
    now: datetime,
    ledger: str | None = None,
) -> None:
    ledger = ledger or index.Names(alias).alerts
    doc = {"status": SENT, "sent_at": iso(now), "message_id": message_id, "recipients": list(accepted)}
    actions = (
        {"_op_type": "update", "_index": ledger, "_id": doc_id, "doc": doc, "retry_on_conflict": 3}
        for doc_id in claim_ids
    )
    try:
        result = bulk_write(es, actions)
        refresh_ledger(es, alias, ledger=ledger)
    except IndexingError as err:
        _log.error("alerts.ledger_write_failed", message_id=message_id, claims=len(claim_ids), reason=str(err))
        return
    for doc_id, reason in result.failed:
        # Delivered but not recorded: the claim expires and the story would go out again.
        _log.error("alerts.ledger_write_failed", message_id=message_id, claim=doc_id, reason=reason)
