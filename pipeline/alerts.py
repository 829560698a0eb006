"""Email alerts: select the new stories that pass a profile's alert threshold, claim them in the ledger,
send one digest per profile and recipient list, and record what went out.

Everything is read from Elasticsearch, never from a cycle's memory, so an Airflow task can run
:func:`run_alerts` alone after indexing, retry it, or run it twice at once. The ledger is the index
``<alias>-alerts`` (``schemas/state-indices.json``); its documents are what the dashboards show.

Selection
    Candidates are the articles *indexed* (``fetched_at``) within ``ALERT_LOOKBACK_HOURS`` (72 h)
    whose ``topic_matches`` entry for the profile scores at least the profile's alert threshold.
    ``fetched_at``, not ``published_at``: "new" means new to us — an item a feed lists late, or
    dates wrongly, is still news to the recipients — and a ``retag`` after a profile changed does
    not touch it, so a new or edited profile mails at most the last three days, never the archive.
    Three days is the longest a mail outage can last without losing a story (a server down from
    Friday evening to Monday morning); while it lasts every cycle logs and counts the failure.
    Candidates are grouped by ``cluster_id`` and every article of those clusters is read (whatever its
    score or age): the entry's headline is the cluster's earliest article that passes the threshold
    (its title, outlet, time, link, score and matched terms); the other outlets that carried the story
    are listed with their copies' links.

Already alerted
    A ledger document records one story (cluster) sent to one recipient list for one profile, with
    ``cluster_id`` and ``article_ids`` (every article of the cluster when it was claimed).
    ``cluster_id`` alone is not enough: when an earlier-published copy arrives later, the whole
    cluster moves to that copy's id (``index.repoint_clusters``). So a cluster counts as alerted to
    an address when a ``sent`` (or live ``claimed``) document of the profile names that address and
    either the cluster's id or any of its articles. Addresses are compared case-insensitively and one
    by one, so adding someone to ``ALERT_TO`` sends the newcomer the stories still in the window and
    re-sends nothing to the others; the stories still owed to the same addresses form one digest.

Recipients
    A profile's list is its own ``recipients`` plus ``ALERT_TO`` (the schema says "in addition to
    ALERT_TO"; with neither, the stories wait, and each run logs and counts it as a failure).

Overlapping runs and crashes
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

Cap
    A digest holds at most ``ALERT_MAX_STORIES`` (25) entries, the stories indexed first; the rest
    are counted in the message ("و 12 خبرًا آخر تصل في الرسالة التالية") and are *not* marked
    alerted: they lead the next digest, so a burst is delivered over a few cycles, oldest first, and
    nothing starves.

Failures
    Mail server down or refusing (connection refused, timeout, TLS, 4xx/5xx): no exception escapes; the
    failure is logged with the server and counted in ``AlertRun.failures``, and the stories stay
    pending. After a server could not be reached at all, the run sends nothing more (each attempt
    would wait for the same timeout). Recipients refused one by one while others were accepted stay
    pending for those addresses only. Only an unreachable index stops the run (``IndexingError``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError, TransportError
from elasticsearch import helpers as es_helpers

from pipeline import index, log, mailer
from pipeline.digest import Copy, Digest, Story, build_message
from pipeline.errors import AlertError, IndexingError, MailServerUnreachable
from pipeline.records import iso
from pipeline.settings import Settings
from pipeline.topics import Profile

__all__ = [
    "AlertRun",
    "Pending",
    "list_alerts",
    "recipients_for",
    "resend",
    "run_alerts",
    "select_pending",
]

_log = log.get(__name__)

CLAIMED, SENT, LEASE = "claimed", "sent", "lease"
DEFAULT_SENDER = "news-alerts@localhost"
_ARTICLE_FIELDS = [
    "title", "outlet", "url", "canonical_url", "published_at", "fetched_at", "cluster_id", "topic_matches",
]  # fmt: skip


@dataclass(slots=True)
class AlertRun:
    """What one :func:`run_alerts` did."""

    digests_sent: int = 0
    stories_sent: int = 0
    stories_pending: int = 0  # not delivered this time (failure, cap, no recipient): the next run tries again
    failures: list[dict[str, str]] = field(default_factory=list)  # {profile, server, reason}
    profiles_busy: list[str] = field(default_factory=list)  # leased by another run: skipped
    messages: list[dict[str, Any]] = field(default_factory=list)  # {profile, message_id, recipients, stories, where}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Pending:
    """Stories of one profile still owed to the same addresses, the earliest indexed first."""

    profile: Profile
    recipients: tuple[str, ...]
    stories: tuple[Story, ...]


# --- entry points -----------------------------------------------------------------------------------


def run_alerts(
    settings: Settings, es: Elasticsearch, profiles: Sequence[Profile], *, now: datetime | None = None
) -> AlertRun:
    """Send every profile's pending stories as digests and record them in the ledger (see the module
    docstring). Idempotent; safe to run from several processes at once.

    ``now`` is the end of the look-back window (default: the clock). Leases and claims are stamped
    with the later of ``now`` and the clock, so a caller passing the time its cycle started cannot make
    its own lease look stale to other workers.

    Raises:
        IndexingError: the index cannot be set up or read.
    """
    clock = datetime.now(UTC)
    now = now or clock
    stamp = max(now, clock)
    alias = settings.es_index
    ensure_ledger(es, alias)
    run = AlertRun()
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    server_down: str | None = None
    for profile in profiles:
        recipients = recipients_for(profile, settings)
        if not recipients or server_down is not None:
            # Nothing can go out for this profile: count what waits, say why, take no lease.
            count = sum(len(p.stories) for p in select_pending(settings, es, profile, recipients, now=now))
            if count:
                run.stories_pending += count
                reason = (
                    f"not tried: {server_down} could not be reached earlier in this run"
                    if recipients
                    else "no recipients: set ALERT_TO or the profile's recipients"
                )
                _fail(run, profile.id, server_down or "", reason, pending=count)
            continue
        lease = _take_lease(es, alias, profile.id, now=stamp, ttl=_ttl(settings), owner=owner)
        if lease is None:
            run.profiles_busy.append(profile.id)
            _log.info("alerts.busy", profile=profile.id)
            continue
        try:
            _drop_stale_claims(es, alias, profile.id, cutoff=stamp - _ttl(settings))
            for group in select_pending(settings, es, profile, recipients, now=now):
                if server_down is not None:
                    run.stories_pending += len(group.stories)
                    continue
                # Renewed before each digest: a run slowed past the lease's life finds out, and stops.
                renewed = _renew_lease(es, alias, lease, now=max(stamp, datetime.now(UTC)), owner=owner)
                if renewed is None:
                    run.stories_pending += len(group.stories)
                    _fail(run, profile.id, "", "lease lost to another run (this one was too slow): stopped")
                    break
                lease = renewed
                server_down = _send_group(settings, es, group, run, now=stamp, owner=owner)
        finally:
            _release_lease(es, alias, lease)
    _log.info("alerts.summary", **{k: v for k, v in run.to_dict().items() if k != "messages"})
    return run


def recipients_for(profile: Profile, settings: Settings) -> tuple[str, ...]:
    """The profile's own recipients, then ``ALERT_TO``; each address once (compared case-insensitively)."""
    seen: dict[str, str] = {}
    for address in (*profile.recipients, *settings.alert_to):
        seen.setdefault(address.strip().lower(), address.strip())
    return tuple(seen.values())


def select_pending(
    settings: Settings, es: Elasticsearch, profile: Profile, recipients: Sequence[str], *, now: datetime
) -> list[Pending]:
    """The profile's stories not yet alerted, grouped by the addresses they are owed to (one group
    with every address in the usual case). With no ``recipients``, one group of every story not yet
    alerted to anybody. Read-only.

    Raises:
        IndexingError: the index cannot be read.
    """
    alias = settings.es_index
    since = now - timedelta(hours=settings.alert_lookback_hours)
    query = {
        "bool": {
            "filter": [
                {"range": {"fetched_at": {"gte": iso(since)}}},
                _passes(profile),
            ]
        }
    }
    first_indexed: dict[str, str] = {}
    for hit in index._scan(es, alias, query, ["cluster_id", "fetched_at"]):
        src = hit["_source"]
        cluster = src.get("cluster_id") or hit["_id"]
        fetched = src.get("fetched_at") or ""
        if cluster not in first_indexed or fetched < first_indexed[cluster]:
            first_indexed[cluster] = fetched
    if not first_indexed:
        return []
    stories = _stories(_members(es, alias, sorted(first_indexed)), profile)
    covered = _covered(es, alias, profile.id, stories, live_after=now - _ttl(settings))
    groups: dict[tuple[str, ...], list[Story]] = {}
    for story in stories.values():
        done = covered.get(story.cluster_id, set())
        # With no recipient configured, "owed" is a placeholder: owed to somebody, if nobody had it yet.
        owed = tuple(r for r in recipients if r.lower() not in done) if recipients else () if done else ("",)
        if owed:
            groups.setdefault(owed, []).append(story)
    order = {c: (fetched, c) for c, fetched in first_indexed.items()}
    return [
        Pending(
            profile=profile,
            recipients=tuple(r for r in owed if r),
            stories=tuple(sorted(group, key=lambda s: order.get(s.cluster_id, ("", s.cluster_id)))),
        )
        for owed, group in sorted(groups.items())
    ]


# --- selection helpers ------------------------------------------------------------------------------


def _passes(profile: Profile) -> dict[str, Any]:
    return {
        "nested": {
            "path": "topic_matches",
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"topic_matches.profile": profile.id}},
                        {"range": {"topic_matches.score": {"gte": profile.alert_threshold}}},
                    ]
                }
            },
        }
    }


def _members(es: Elasticsearch, alias: str, cluster_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Every article of each cluster, as its ``_source`` plus ``_id``."""
    found: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(cluster_ids), 5000):
        query = {"terms": {"cluster_id": list(cluster_ids[start : start + 5000])}}
        for hit in index._scan(es, alias, query, _ARTICLE_FIELDS):
            src = {"_id": hit["_id"], **hit["_source"]}
            found.setdefault(src.get("cluster_id") or hit["_id"], []).append(src)
    return found


def _match_of(article: dict[str, Any], profile: Profile) -> dict[str, Any] | None:
    for match in article.get("topic_matches") or []:
        if match.get("profile") == profile.id and float(match.get("score", 0)) >= profile.alert_threshold:
            return dict(match)
    return None


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _earliest(article: dict[str, Any]) -> tuple[str, str]:
    return (article.get("published_at") or "9999", article["_id"])


def _stories(members: dict[str, list[dict[str, Any]]], profile: Profile) -> dict[str, Story]:
    """One story per cluster that still has an article passing the threshold (a cluster re-pointed
    since the candidates were read may have none under its old id: it is picked up next run)."""
    stories: dict[str, Story] = {}
    for cluster_id, articles in members.items():
        passing = [a for a in articles if _match_of(a, profile) is not None]
        if passing:
            stories[cluster_id] = story_of(cluster_id, articles, profile)
    return stories


def story_of(cluster_id: str, articles: Sequence[dict[str, Any]], profile: Profile | None) -> Story:
    """The digest entry for a cluster's ``articles`` (``_source`` plus ``_id``): headline from the
    earliest article passing ``profile``'s alert threshold (the earliest article when none does or no
    profile is given), then one copy per other outlet, earliest first."""
    ordered = sorted(articles, key=_earliest)
    passing = [a for a in ordered if profile is not None and _match_of(a, profile) is not None]
    head = (passing or ordered)[0]
    match = (_match_of(head, profile) if profile is not None else None) or {}
    others: dict[str, Copy] = {}
    for article in ordered:
        outlet = article.get("outlet") or ""
        if article is head or outlet == head.get("outlet") or outlet in others:
            continue
        others[outlet] = Copy(
            outlet=outlet,
            url=article.get("canonical_url") or article.get("url") or "",
            published_at=_when(article.get("published_at")),
        )
    return Story(
        cluster_id=cluster_id,
        article_id=head["_id"],
        title=head.get("title") or "",
        outlet=head.get("outlet") or "",
        url=head.get("canonical_url") or head.get("url") or "",
        published_at=_when(head.get("published_at")),
        terms=tuple(match.get("terms") or ()),
        score=float(match.get("score") or 0.0),
        others=tuple(others.values()),
        article_ids=tuple(sorted(a["_id"] for a in articles)),
    )


def _ledger_hits(
    es: Elasticsearch, alias: str, query: dict[str, Any], fields: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    body: dict[str, Any] = {"query": query} if fields is None else {"query": query, "_source": fields}
    try:
        yield from es_helpers.scan(es, index=index.Names(alias).alerts, query=body, size=1000)
    except (ApiError, TransportError) as err:
        raise IndexingError(f"could not read the alert ledger: {err}", url=alias) from err


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


def _covered(
    es: Elasticsearch, alias: str, profile_id: str, stories: dict[str, Story], *, live_after: datetime
) -> dict[str, set[str]]:
    """cluster_id → the addresses (lower case) it was already alerted to, by cluster id or by any article."""
    by_article = {a: s.cluster_id for s in stories.values() for a in s.article_ids}
    covered: dict[str, set[str]] = {}
    clusters, articles = sorted(stories), sorted(by_article)
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
        for hit in _ledger_hits(es, alias, query, ["cluster_id", "article_ids", "recipients"]):
            src = hit["_source"]
            targets = {src.get("cluster_id")} | {by_article.get(a) for a in src.get("article_ids") or []}
            addresses = {r.lower() for r in src.get("recipients") or []}
            for cluster in targets & stories.keys():
                covered.setdefault(str(cluster), set()).update(addresses)
    return covered


# --- lease, claims, delivery ------------------------------------------------------------------------


def _ttl(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.alert_claim_minutes)


@dataclass(frozen=True, slots=True)
class _Lease:
    doc_id: str
    seq_no: int
    primary_term: int


def _take_lease(
    es: Elasticsearch, alias: str, profile_id: str, *, now: datetime, ttl: timedelta, owner: str
) -> _Lease | None:
    """The profile's lease, or None when a live run holds it."""
    ledger = index.Names(alias).alerts
    doc_id = f"lease:{profile_id}"
    body = {"profile": profile_id, "status": LEASE, "claimed_at": iso(now), "claimed_by": owner}
    try:
        for _ in range(3):
            try:
                done = es.create(index=ledger, id=doc_id, document=body, refresh=True)
                return _Lease(doc_id, int(done["_seq_no"]), int(done["_primary_term"]))
            except ConflictError:
                pass
            try:
                held = es.get(index=ledger, id=doc_id)
            except NotFoundError:
                continue  # released in between: try to create it again
            since = _when(held["_source"].get("claimed_at"))
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
            return _Lease(doc_id, int(done["_seq_no"]), int(done["_primary_term"]))
    except (ApiError, TransportError) as err:
        raise IndexingError(f"could not take the alert lease for {profile_id}: {err}", url=alias) from err
    return None


def _renew_lease(es: Elasticsearch, alias: str, lease: _Lease, *, now: datetime, owner: str) -> _Lease | None:
    """The lease stamped ``now``, or None when another run has taken it over."""
    body = {
        "profile": lease.doc_id.removeprefix("lease:"),
        "status": LEASE,
        "claimed_at": iso(now),
        "claimed_by": owner,
    }
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
    except (ApiError, TransportError) as err:
        raise IndexingError(f"could not renew the alert lease {lease.doc_id}: {err}", url=alias) from err
    return _Lease(lease.doc_id, int(done["_seq_no"]), int(done["_primary_term"]))


def _release_lease(es: Elasticsearch, alias: str, lease: _Lease) -> None:
    try:
        es.delete(
            index=index.Names(alias).alerts,
            id=lease.doc_id,
            if_seq_no=lease.seq_no,
            if_primary_term=lease.primary_term,
            refresh=True,
        )
    except ConflictError:
        pass  # taken over by another run (ours had expired): theirs now
    except (ApiError, TransportError) as err:
        # It expires after ALERT_CLAIM_MINUTES; until then the profile's alerts wait.
        _log.warning("alerts.lease_not_released", lease=lease.doc_id, reason=str(err))


def _drop_stale_claims(es: Elasticsearch, alias: str, profile_id: str, *, cutoff: datetime) -> None:
    query = {
        "bool": {
            "filter": [
                {"term": {"profile": profile_id}},
                {"term": {"status": CLAIMED}},
                {"range": {"claimed_at": {"lt": iso(cutoff)}}},
            ]
        }
    }
    try:
        done = es.delete_by_query(index=index.Names(alias).alerts, query=query, conflicts="proceed", refresh=True)
    except (ApiError, TransportError) as err:
        raise IndexingError(f"could not clear stale alert claims: {err}", url=alias) from err
    if done.get("deleted"):
        # A worker died holding these: sent again now, perhaps a second time if it died after delivery.
        _log.warning("alerts.stale_claims", profile=profile_id, deleted=done["deleted"])


def claim_id(profile_id: str, recipients: Iterable[str], cluster_id: str) -> str:
    """The deterministic ledger id of one story for one profile and recipient list."""
    key = "\x1f".join([profile_id, ",".join(sorted(r.lower() for r in recipients)), cluster_id])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _claim(
    es: Elasticsearch, alias: str, group: Pending, stories: Sequence[Story], *, now: datetime, owner: str
) -> tuple[list[tuple[str, Story]], int]:
    """Create a claim for each story: the (id, story) pairs this run now holds, and how many claims
    failed for another reason than a 409 (another run holds that story: not ours to send or count)."""
    ledger = index.Names(alias).alerts
    ids = {claim_id(group.profile.id, group.recipients, s.cluster_id): s for s in stories}
    actions = [
        {
            "_op_type": "create",
            "_index": ledger,
            "_id": doc_id,
            "_source": {
                "profile": group.profile.id,
                "cluster_id": story.cluster_id,
                "article_ids": list(story.article_ids),
                "recipients": list(group.recipients),
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
    result = index.bulk_write(es, actions)
    failed = 0
    for doc_id, reason in result.failed:
        if "version_conflict" not in reason and "already exists" not in reason:
            failed += 1
            _log.warning("alerts.claim_failed", profile=group.profile.id, claim=doc_id, reason=reason)
    _refresh_ledger(es, alias)
    return [(doc_id, ids[doc_id]) for doc_id in result.ok], failed


def _refresh_ledger(es: Elasticsearch, alias: str) -> None:
    try:
        es.indices.refresh(index=index.Names(alias).alerts)
    except (ApiError, TransportError) as err:
        raise IndexingError(f"could not refresh the alert ledger: {err}", url=alias) from err


def new_message_id(settings: Settings, now: datetime) -> str:
    """A unique Message-ID on the sender's domain, short enough that the header is never folded."""
    domain = parseaddr(settings.alert_from or DEFAULT_SENDER)[1].rpartition("@")[2] or "localhost"
    return f"<alert.{now.astimezone(UTC):%Y%m%dT%H%M%S}.{uuid.uuid4().hex[:16]}@{domain}>"


def _display(stories: Iterable[Story]) -> tuple[Story, ...]:
    """The order recipients read: newest publication first."""
    return tuple(sorted(stories, key=lambda s: (iso(s.published_at) or "", s.cluster_id), reverse=True))


def _send_group(
    settings: Settings, es: Elasticsearch, group: Pending, run: AlertRun, *, now: datetime, owner: str
) -> str | None:
    """Claim, send and record one digest; returns the server when it could not be reached at all."""
    alias = settings.es_index
    chosen = group.stories[: settings.alert_max_stories]
    over = len(group.stories) - len(chosen)
    held, unclaimed = _claim(es, alias, group, chosen, now=now, owner=owner)
    run.stories_pending += over + unclaimed
    if not held:
        return None
    digest = Digest(
        profile_id=group.profile.id,
        profile_title=group.profile.title,
        stories=_display(story for _, story in held),
        more=over,
    )
    message_id = new_message_id(settings, now)
    message = build_message(
        digest,
        sender=settings.alert_from or DEFAULT_SENDER,
        recipients=group.recipients,
        message_id=message_id,
        date=now,
    )
    claim_ids = [doc_id for doc_id, _ in held]
    try:
        delivery = mailer.deliver(settings, message)
    except AlertError as err:
        _delete_claims(es, alias, claim_ids)
        run.stories_pending += len(held)
        _fail(run, group.profile.id, err.url, str(err), pending=len(held) + over)
        return (err.url or "the mail server") if isinstance(err, MailServerUnreachable) else None
    accepted_at = max(now, datetime.now(UTC))
    _mark_sent(es, alias, claim_ids, message_id=message_id, accepted=delivery.accepted, now=accepted_at)
    run.digests_sent += 1
    run.stories_sent += len(held)
    run.messages.append(
        {
            "profile": group.profile.id,
            "message_id": message_id,
            "recipients": list(delivery.accepted),
            "stories": len(held),
            "more": over,
            "where": delivery.where,
        }
    )
    _log.info(
        "alerts.sent",
        profile=group.profile.id,
        message_id=message_id,
        recipients=len(delivery.accepted),
        stories=len(held),
        more=over,
        where=delivery.where,
    )
    if delivery.refused:
        # The accepted addresses are recorded; the refused ones still have these stories pending.
        run.stories_pending += len(held)
        refused = "; ".join(f"{addr}: {answer}" for addr, answer in delivery.refused.items())
        _fail(run, group.profile.id, delivery.where, f"recipients refused: {refused}")
    return None


def _fail(run: AlertRun, profile_id: str, server: str, reason: str, **fields: Any) -> None:
    run.failures.append({"profile": profile_id, "server": server, "reason": reason})
    _log.warning("alerts.failed", profile=profile_id, server=server, reason=reason, **fields)


def _delete_claims(es: Elasticsearch, alias: str, claim_ids: Sequence[str]) -> None:
    ledger = index.Names(alias).alerts
    try:
        result = index.bulk_write(es, ({"_op_type": "delete", "_index": ledger, "_id": i} for i in claim_ids))
        _refresh_ledger(es, alias)
    except IndexingError as err:
        # The claims expire after ALERT_CLAIM_MINUTES; the stories go out after that.
        _log.warning("alerts.claims_not_released", claims=len(claim_ids), reason=str(err))
        return
    for doc_id, reason in result.failed:
        _log.warning("alerts.claims_not_released", claim=doc_id, reason=reason)


def _mark_sent(
    es: Elasticsearch,
    alias: str,
    claim_ids: Sequence[str],
    *,
    message_id: str,
    accepted: Sequence[str],
    now: datetime,
) -> None:
    ledger = index.Names(alias).alerts
    doc = {"status": SENT, "sent_at": iso(now), "message_id": message_id, "recipients": list(accepted)}
    actions = (
        {"_op_type": "update", "_index": ledger, "_id": doc_id, "doc": doc, "retry_on_conflict": 3}
        for doc_id in claim_ids
    )
    try:
        result = index.bulk_write(es, actions)
        _refresh_ledger(es, alias)
    except IndexingError as err:
        _log.error("alerts.ledger_write_failed", message_id=message_id, claims=len(claim_ids), reason=str(err))
        return
    for doc_id, reason in result.failed:
        # Delivered but not recorded: the claim expires and the story would go out again.
        _log.error("alerts.ledger_write_failed", message_id=message_id, claim=doc_id, reason=reason)


# --- the ledger ------------------------------------------------------------------------------------


def ensure_ledger(es: Elasticsearch, alias: str) -> None:
    """The indices, and the ledger's newer fields on a ledger created before them (additive only).

    Raises:
        IndexingError: the cluster refused.
    """
    index.ensure_indices(es, alias)
    try:
        es.indices.put_mapping(index=index.Names(alias).alerts, properties=_ledger_mapping()["properties"])
    except (ApiError, TransportError) as err:
        raise IndexingError(f"could not update the alert ledger's mapping: {err}", url=alias) from err


def _ledger_mapping() -> dict[str, Any]:
    import json

    state: dict[str, Any] = json.loads((index.SCHEMAS / "state-indices.json").read_text(encoding="utf-8"))
    mappings: dict[str, Any] = state["alerts"]["mappings"]
    return mappings


def list_alerts(
    settings: Settings,
    es: Elasticsearch,
    profiles: Sequence[Profile],
    *,
    profile_id: str | None = None,
    status: str = "all",
    now: datetime | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """What the next run would send (``pending``), what a run is sending (``claimed``: a claim older than
    ``ALERT_CLAIM_MINUTES`` belongs to a dead worker and its story is pending again), then the ledger's
    ``sent`` rows, newest first; JSON-ready. ``status``: sent | pending | all.

    Raises:
        IndexingError: the index cannot be read.
    """
    now = now or datetime.now(UTC)
    ensure_ledger(es, settings.es_index)
    rows: list[dict[str, Any]] = []
    if status in ("pending", "all"):
        for profile in profiles:
            if profile_id not in (None, profile.id):
                continue
            for group in select_pending(settings, es, profile, recipients_for(profile, settings), now=now):
                rows.extend(_pending_row(group, story) for story in group.stories)
        rows.extend(_ledger_rows(es, settings.es_index, profile_id=profile_id, statuses=[CLAIMED], limit=limit))
    if status in ("sent", "all"):
        rows.extend(_ledger_rows(es, settings.es_index, profile_id=profile_id, statuses=[SENT], limit=limit))
    return rows[:limit]


def _ledger_rows(
    es: Elasticsearch, alias: str, *, profile_id: str | None, statuses: list[str], limit: int
) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = [{"terms": {"status": statuses}}]
    if profile_id:
        filters.append({"term": {"profile": profile_id}})
    sort_field = "sent_at" if statuses == [SENT] else "claimed_at"
    try:
        resp = es.search(
            index=index.Names(alias).alerts,
            query={"bool": {"filter": filters}},
            sort=[{sort_field: {"order": "desc"}}],
            size=limit,
        )
    except (ApiError, TransportError) as err:
        raise IndexingError(f"could not read the alert ledger: {err}", url=alias) from err
    rows = []
    for hit in resp["hits"]["hits"]:
        src = hit["_source"]
        rows.append(
            {
                "status": src.get("status"),
                "profile": src.get("profile"),
                "cluster_id": src.get("cluster_id"),
                "title": src.get("title"),
                "outlet": src.get("outlet"),
                "outlets": src.get("outlets") or [],
                "url": src.get("url"),
                "published_at": src.get("published_at"),
                "recipients": src.get("recipients") or [],
                "claimed_at": src.get("claimed_at"),
                "sent_at": src.get("sent_at"),
                "message_id": src.get("message_id"),
                "resent_message_ids": src.get("resent_message_ids") or [],
                "score": src.get("score"),
                "id": hit["_id"],
            }
        )
    return rows


def _pending_row(group: Pending, story: Story) -> dict[str, Any]:
    return {
        "status": "pending",
        "profile": group.profile.id,
        "cluster_id": story.cluster_id,
        "title": story.title,
        "outlet": story.outlet,
        "outlets": [story.outlet, *(c.outlet for c in story.others)],
        "url": story.url,
        "published_at": iso(story.published_at),
        "recipients": list(group.recipients),
        "claimed_at": None,
        "sent_at": None,
        "message_id": None,
        "resent_message_ids": [],
        "score": story.score,
        "id": None,
    }


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
            "should": [
                {"terms": {"message_id": [bare, f"<{bare}>"]}},
                {"term": {"cluster_id": bare}},
                {"term": {"article_ids": bare}},
            ],
            "minimum_should_match": 1,
        }
    }
    found = list(_ledger_hits(es, alias, query))
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
            stories=_display(stories),
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
    articles = [{"_id": i, **src} for i, src in index.get_many(es, alias, ids, fields=_ARTICLE_FIELDS).items()]
    if articles:
        return story_of(record.get("cluster_id") or articles[0]["_id"], articles, profile)
    return Story(
        cluster_id=record.get("cluster_id") or "",
        article_id=ids[0] if ids else "",
        title=record.get("title") or "",
        outlet=record.get("outlet") or "",
        url=record.get("url") or "",
        published_at=_when(record.get("published_at")),
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
    result = index.bulk_write(es, actions)
    _refresh_ledger(es, alias)
    for doc_id, reason in result.failed:
        _log.error("alerts.ledger_write_failed", message_id=message_id, claim=doc_id, reason=reason)
