"""Email alerts: select the new stories that pass a profile's alert threshold, claim them in the ledger,
send one digest per profile and recipient list, and record what went out.

Everything is read from Elasticsearch, never from a cycle's memory, so an Airflow task can run
:func:`run_alerts` alone after indexing, retry it, or run it twice at once. The ledger, its lease and its
claims are :mod:`pipeline.alerts.ledger`; the operators' ``alerts list|resend``, :mod:`pipeline.alerts.operator`.

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
    A story counts as alerted to an address when the profile's ledger names that address and the story's
    cluster or any of its articles (a cluster re-pointed to an earlier copy's id is still recognised).
    Addresses are compared case-insensitively and one by one, so adding someone to ``ALERT_TO`` sends the
    newcomer the stories still in the window and re-sends nothing to the others; the stories still owed
    to the same addresses form one digest.

Recipients
    A profile's list is its own ``recipients`` plus ``ALERT_TO`` (the schema says "in addition to
    ALERT_TO"; with neither, the stories wait, and each run logs and counts it as a failure).

Overlapping runs and crashes
    One run at a time works on a profile (its lease; a run that finds it held skips the profile,
    ``profiles_busy``). Each story is claimed before its message is built and marked sent only once
    the mail server accepted it; if delivery fails the story stays pending. A lease or claim older than
    ``ALERT_CLAIM_MINUTES`` (10) is a dead worker's and is taken over, so a recipient may get a story
    twice only when a worker died between the server's "250 accepted" and the ledger write.

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

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.alerts import mailer
from pipeline.alerts.decisions import Decision, Outcome, Reason, Tagged, age_out, decide, record_decisions
from pipeline.alerts.digest import Copy, Digest, Story, build_message, reading_order
from pipeline.alerts.ledger import (
    DEFAULT_SENDER,
    Covering,
    claim_stories,
    claim_ttl,
    covered_by,
    covering_records,
    delete_claims,
    drop_stale_claims,
    ensure_ledger,
    mark_sent,
    new_message_id,
    new_owner,
    release_lease,
    renew_lease,
    take_lease,
)
from pipeline.errors import AlertError, MailServerUnreachable
from pipeline.records import iso, parse_iso_or_none
from pipeline.settings import Settings
from pipeline.store import buckets
from pipeline.store.es import get_many, scan
from pipeline.topics.profiles import Profile

__all__ = [
    "ARTICLE_FIELDS",
    "AlertRun",
    "Pending",
    "Survey",
    "recipients_for",
    "run_alerts",
    "select_pending",
    "story_of",
    "survey",
]

_log = log.get(__name__)

ARTICLE_FIELDS = [
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
    decisions: dict[str, int] = field(default_factory=dict)  # reason → articles decided this run (alerts why)
    surges_sent: int = 0  # surge emails (pipeline/alerts/surge.py), when the run checks for surges
    surges: list[dict[str, Any]] = field(default_factory=list)  # {profile, window_start, articles, baseline, ...}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Pending:
    """Stories of one profile still owed to the same addresses, the earliest indexed first."""

    profile: Profile
    recipients: tuple[str, ...]
    stories: tuple[Story, ...]


@dataclass(frozen=True, slots=True)
class Survey:
    """What a run reads for one profile: the pending digests, and what the decisions are made from."""

    since: datetime  # the start of the look-back window
    pending: tuple[Pending, ...] = ()
    tagged: dict[str, Tagged] = field(default_factory=dict)  # the profile's articles in the window, and their copies
    stories: dict[str, Story] = field(default_factory=dict)  # cluster → story, for stories with an article passing
    records: tuple[Covering, ...] = ()  # the ledger's sent and live claimed records of these stories and articles


# A story's fate in this run, per recipient list: what the decisions are made of.
Outcomes = dict[str, list[Outcome]]


# --- entry points -----------------------------------------------------------------------------------


def run_alerts(
    settings: Settings,
    es: Elasticsearch,
    profiles: Sequence[Profile],
    *,
    now: datetime | None = None,
    surges: bool = True,
) -> AlertRun:
    """Send every profile's pending stories as digests, record them in the ledger with a decision about
    every tagged article (:mod:`pipeline.alerts.decisions`), then, with ``surges``, send the surge emails
    (:mod:`pipeline.alerts.surge`; Airflow runs those as a task of their own). Idempotent; safe to run
    from several processes at once.

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
    owner = new_owner()
    server_down: str | None = None
    for profile in profiles:
        recipients = recipients_for(profile, settings)
        outcomes: Outcomes = {}
        if not recipients or server_down is not None:
            # Nothing can go out for this profile: count what waits, say why, take no lease.
            seen = survey(settings, es, profile, recipients, now=now)
            count = sum(len(p.stories) for p in seen.pending)
            if count:
                run.stories_pending += count
                reason = (
                    f"not tried: {server_down} could not be reached earlier in this run"
                    if recipients
                    else "no recipients: set ALERT_TO or the profile's recipients"
                )
                _fail(run, profile.id, server_down or "", reason, pending=count)
                for group in seen.pending:
                    _all(outcomes, group, "mail_failed" if recipients else "no_recipients", detail=reason)
            _decide(es, run, profile, recipients, seen, outcomes, stamp=stamp, alias=alias)
            continue
        lease = take_lease(es, alias, profile.id, now=stamp, ttl=claim_ttl(settings), owner=owner)
        if lease is None:
            run.profiles_busy.append(profile.id)
            _log.info("alerts.busy", profile=profile.id)
            continue
        try:
            drop_stale_claims(es, alias, profile.id, cutoff=stamp - claim_ttl(settings))
            seen = survey(settings, es, profile, recipients, now=now)
            for group in seen.pending:
                if server_down is not None:
                    run.stories_pending += len(group.stories)
                    _all(outcomes, group, "mail_failed", detail=f"not tried: {server_down} could not be reached")
                    continue
                # Renewed before each digest: a run slowed past the lease's life finds out, and stops.
                renewed = renew_lease(es, alias, lease, now=max(stamp, datetime.now(UTC)), owner=owner)
                if renewed is None:
                    run.stories_pending += len(group.stories)
                    _fail(run, profile.id, "", "lease lost to another run (this one was too slow): stopped")
                    break
                lease = renewed
                server_down = _send_group(settings, es, group, run, outcomes, now=stamp, owner=owner)
            _decide(es, run, profile, recipients, seen, outcomes, stamp=stamp, alias=alias)
        finally:
            release_lease(es, alias, lease)
    if surges:
        from pipeline.alerts.surge import run_surges  # the surge module builds on this one

        found = run_surges(settings, es, profiles, now=now)
        run.surges_sent, run.surges = found.sent, found.surges
        run.failures.extend(found.failures)
    _log.info("alerts.summary", **{k: v for k, v in run.to_dict().items() if k not in ("messages", "surges")})
    return run


def _all(outcomes: Outcomes, group: Pending, reason: Reason, *, detail: str, stories: Sequence[Story] = ()) -> None:
    for story in stories or group.stories:
        outcomes.setdefault(story.cluster_id, []).append(Outcome(reason, group.recipients, detail=detail))


def _decide(
    es: Elasticsearch,
    run: AlertRun,
    profile: Profile,
    recipients: Sequence[str],
    seen: Survey,
    outcomes: Outcomes,
    *,
    stamp: datetime,
    alias: str,
) -> None:
    """Record the decision about every article the profile tagged (see pipeline/alerts/decisions.py)."""
    decided: list[Decision] = decide(
        profile, recipients, tagged=seen.tagged, stories=seen.stories, records=seen.records, outcomes=outcomes
    )
    # Pending decisions about articles that have left the window since: outside_lookback.
    age_out(es, alias, profile.id, since=seen.since, keep={d.article_id for d in decided}, now=stamp)
    record_decisions(es, alias, decided, now=stamp, recipients=recipients)
    for decision in decided:
        run.decisions[decision.reason] = run.decisions.get(decision.reason, 0) + 1


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
    return list(survey(settings, es, profile, recipients, now=now).pending)


def survey(
    settings: Settings, es: Elasticsearch, profile: Profile, recipients: Sequence[str], *, now: datetime
) -> Survey:
    """:func:`select_pending`'s digests, with what the decisions about the profile's tagged articles are
    made of: one scan of the window, the stories' members by id, one look-up in the ledger. Read-only.

    Raises:
        IndexingError: the index cannot be read.
    """
    alias = settings.es_index
    since = now - timedelta(hours=settings.alert_lookback_hours)
    # Tagged, or passing the alert threshold (the same thing unless tags and scores were written apart).
    wanted = {"bool": {"should": [{"term": {"topics": profile.id}}, _passes(profile)], "minimum_should_match": 1}}
    query = {"bool": {"filter": [{"range": {"fetched_at": {"gte": iso(since)}}}, wanted]}}
    tagged: dict[str, Tagged] = {}
    first_indexed: dict[str, str] = {}
    for hit in scan(es, alias, query, ARTICLE_FIELDS):
        article = {"_id": hit["_id"], **hit["_source"]}
        tagged[hit["_id"]] = _tagged(article, profile)
        if _match_of(article, profile) is None:
            continue
        cluster = article.get("cluster_id") or hit["_id"]
        fetched = article.get("fetched_at") or ""
        if cluster not in first_indexed or fetched < first_indexed[cluster]:
            first_indexed[cluster] = fetched
    if not tagged:
        return Survey(since=since)
    members = _members(es, alias, sorted(first_indexed)) if first_indexed else {}
    for articles in members.values():
        for article in articles:
            if _score(article, profile) is not None:  # a copy tagged too, indexed before the window perhaps
                tagged.setdefault(article["_id"], _tagged(article, profile))
    stories = _stories(members, profile)
    records = covering_records(
        es,
        alias,
        profile.id,
        clusters=sorted(set(stories) | {t.cluster_id for t in tagged.values()}),
        articles=sorted({a for s in stories.values() for a in s.article_ids} | set(tagged)),
        live_after=now - claim_ttl(settings),
    )
    covered = covered_by(records, stories)
    groups: dict[tuple[str, ...], list[Story]] = {}
    for story in stories.values():
        done = covered.get(story.cluster_id, set())
        # With no recipient configured, "owed" is a placeholder: owed to somebody, if nobody had it yet.
        owed = tuple(r for r in recipients if r.lower() not in done) if recipients else () if done else ("",)
        if owed:
            groups.setdefault(owed, []).append(story)
    order = {c: (fetched, c) for c, fetched in first_indexed.items()}
    pending = tuple(
        Pending(
            profile=profile,
            recipients=tuple(r for r in owed if r),
            stories=tuple(sorted(group, key=lambda s: order.get(s.cluster_id, ("", s.cluster_id)))),
        )
        for owed, group in sorted(groups.items())
    )
    return Survey(since=since, pending=pending, tagged=tagged, stories=stories, records=tuple(records))


def _score(article: dict[str, Any], profile: Profile) -> float | None:
    for match in article.get("topic_matches") or []:
        if match.get("profile") == profile.id:
            return float(match.get("score") or 0.0)
    return None


def _tagged(article: dict[str, Any], profile: Profile) -> Tagged:
    return Tagged(
        id=article["_id"],
        cluster_id=article.get("cluster_id") or article["_id"],
        score=_score(article, profile) or 0.0,
        title=article.get("title") or "",
        outlet=article.get("outlet") or "",
        url=article.get("canonical_url") or article.get("url") or "",
        published_at=article.get("published_at"),
        fetched_at=article.get("fetched_at"),
    )


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
    """Every article of each cluster, as its ``_source`` plus ``_id``: the cluster's run in the bucket
    store lists who joined it (``buckets.cluster_key``), and each listed article's own document says whether
    it is still in it. Look-ups by id only (a search costs a pass over the index on small servers)."""
    wanted = set(cluster_ids)
    runs = buckets.read_runs(es, alias, [buckets.cluster_key(c) for c in wanted])
    listed = wanted | {m.article_id for run in runs.values() for m in run.members}
    found: dict[str, list[dict[str, Any]]] = {}
    for doc_id, src in get_many(es, alias, sorted(listed), fields=ARTICLE_FIELDS).items():
        cluster = src.get("cluster_id") or doc_id
        if cluster in wanted:
            found.setdefault(cluster, []).append({"_id": doc_id, **src})
    return found


def _match_of(article: dict[str, Any], profile: Profile) -> dict[str, Any] | None:
    for match in article.get("topic_matches") or []:
        if match.get("profile") == profile.id and float(match.get("score", 0)) >= profile.alert_threshold:
            return dict(match)
    return None


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
            published_at=parse_iso_or_none(article.get("published_at")),
        )
    return Story(
        cluster_id=cluster_id,
        article_id=head["_id"],
        title=head.get("title") or "",
        outlet=head.get("outlet") or "",
        url=head.get("canonical_url") or head.get("url") or "",
        published_at=parse_iso_or_none(head.get("published_at")),
        terms=tuple(match.get("terms") or ()),
        score=float(match.get("score") or 0.0),
        others=tuple(others.values()),
        article_ids=tuple(sorted(a["_id"] for a in articles)),
    )


# --- delivery -------------------------------------------------------------------------------------


def _send_group(
    settings: Settings,
    es: Elasticsearch,
    group: Pending,
    run: AlertRun,
    outcomes: Outcomes,
    *,
    now: datetime,
    owner: str,
) -> str | None:
    """Claim, send and record one digest, and what became of each story in ``outcomes``; returns the
    server when it could not be reached at all."""
    alias = settings.es_index
    chosen = group.stories[: settings.alert_max_stories]
    over = len(group.stories) - len(chosen)
    if over:
        cap = f"{over} stories over ALERT_MAX_STORIES ({settings.alert_max_stories}) in the digest of {iso(now)}"
        _all(outcomes, group, "held_by_cap", detail=cap, stories=group.stories[len(chosen) :])
    held, unclaimed = claim_stories(es, alias, group.profile.id, group.recipients, chosen, now=now, owner=owner)
    run.stories_pending += over + unclaimed
    if not held:
        return None
    digest = Digest(
        profile_id=group.profile.id,
        profile_title=group.profile.title,
        stories=reading_order(story for _, story in held),
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
        delete_claims(es, alias, claim_ids)
        run.stories_pending += len(held)
        _fail(run, group.profile.id, err.url, str(err), pending=len(held) + over)
        _all(outcomes, group, "mail_failed", detail=str(err), stories=[story for _, story in held])
        return (err.url or "the mail server") if isinstance(err, MailServerUnreachable) else None
    accepted_at = max(now, datetime.now(UTC))
    mark_sent(es, alias, claim_ids, message_id=message_id, accepted=delivery.accepted, now=accepted_at)
    for _, story in held:
        sent = Outcome("alerted", delivery.accepted, message_id=message_id, alerted_at=iso(accepted_at))
        outcomes.setdefault(story.cluster_id, []).append(sent)
        if delivery.refused:
            answers = "; ".join(f"{address}: {answer}" for address, answer in delivery.refused.items())
            bounced = Outcome("mail_failed", tuple(delivery.refused), detail=f"recipients refused: {answers}")
            outcomes[story.cluster_id].append(bounced)
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
