"""Alert decisions: for every article a profile tagged, what the alerts did about it and why — the answer
to "why wasn't I alerted?" (``python -m pipeline alerts why``, the Kibana search "Alert decisions").

Records
    One ledger document per article, profile and recipient list (``kind: decision``, id from
    :func:`decision_id`), overwritten as the decision changes: pending (``held_by_cap``, ``mail_failed``,
    ``no_recipients``) → ``alerted``, or → ``outside_lookback`` when the article left the look-back window
    before it went out. ``alerted`` is final: nothing overwrites it with another reason. The reasons:

    ``alerted``           its story went out in the digest ``message_id`` (as headline or as a copy)
    ``duplicate``         a copy that joined a story after it was alerted in ``message_id``: not sent again
    ``below_threshold``   its ``score`` is under the profile's alert ``threshold``, and so is every copy's
    ``outside_lookback``  indexed before the window (``ALERT_LOOKBACK_HOURS``) of the runs that could send it
    ``no_recipients``     neither the profile's ``recipients`` nor ``ALERT_TO``: waits
    ``held_by_cap``       over ``ALERT_MAX_STORIES`` in its digest: leads the next one
    ``mail_failed``       the mail server could not be reached or refused: retried next run

Cost
    Decisions are computed from what a run reads anyway (:func:`pipeline.alerts.run.survey`), then
    written with one ``mget`` (by id: the ones already recorded) and one bulk request holding only the
    decisions that changed, so an unchanged window costs a read by id, not a search or a write per
    article. Aging pending decisions out of the window is one search of the ledger per profile.

Guarantees
    Decisions never take part in the ledger's exactly-once machinery: they carry no ``status``, which is
    what the lease, claims and ``sent`` records are found by. A decision that cannot be written is logged
    and written by the next run; it never stops or repeats an alert. Two writers race only through
    optimistic concurrency (``create`` for a new decision, ``if_seq_no`` for a changed one): the loser's
    write is dropped and the next run decides again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.alerts.digest import Story
from pipeline.alerts.ledger import SENT, Covering, ledger_hits
from pipeline.errors import IndexingError
from pipeline.records import iso, parse_iso_or_none
from pipeline.settings import Settings
from pipeline.store import index
from pipeline.store.es import bulk_write, translated
from pipeline.topics.profiles import Profile, match_profile

__all__ = [
    "DECISION",
    "PENDING",
    "REASONS",
    "Decision",
    "Outcome",
    "ProfileAnswer",
    "Reason",
    "Tagged",
    "Why",
    "age_out",
    "decide",
    "decision_id",
    "decisions_of",
    "record_decisions",
    "why",
]

_log = log.get(__name__)

Reason = Literal[
    "alerted", "duplicate", "below_threshold", "outside_lookback", "no_recipients", "held_by_cap", "mail_failed"
]
REASONS: tuple[Reason, ...] = get_args(Reason)
PENDING: frozenset[Reason] = frozenset({"no_recipients", "held_by_cap", "mail_failed"})
DECISION = "decision"  # the ledger document's kind


def decision_id(profile_id: str, recipients: Iterable[str], article_id: str) -> str:
    """The ledger id of the decision about one article for one profile and recipient list."""
    key = "\x1f".join([DECISION, profile_id, ",".join(sorted(r.lower() for r in recipients)), article_id])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the alerts did about one tagged article, for one profile and recipient list, and why."""

    profile: str
    article_id: str
    cluster_id: str
    recipients: tuple[str, ...]
    reason: Reason
    score: float
    threshold: float  # the profile's alert threshold when it was decided
    title: str = ""
    outlet: str = ""
    url: str = ""
    published_at: str | None = None
    fetched_at: str | None = None  # when the article was indexed: what the look-back window is on
    message_id: str | None = None  # alerted, duplicate: the digest the story went out in
    alerted_at: str | None = None
    story_article: str | None = None  # duplicate: the story's headline article when it was alerted
    detail: str = ""
    decided_at: str | None = None  # when it became this decision

    @property
    def doc_id(self) -> str:
        return decision_id(self.profile, self.recipients, self.article_id)

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["recipients"] = list(self.recipients)
        return {"kind": DECISION, **doc}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Decision:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in doc.items() if k in known}
        values["recipients"] = tuple(values.get("recipients") or ())
        values["score"] = float(values.get("score") or 0.0)
        values["threshold"] = float(values.get("threshold") or 0.0)
        return cls(**values)

    def same_as(self, other: Decision) -> bool:
        """The same decision, whenever it was taken."""
        return replace(self, decided_at=None) == replace(other, decided_at=None)

    def explain(self) -> str:
        """The decision in one line, as ``alerts why`` prints it."""
        to = ", ".join(self.recipients) or "nobody"
        if self.reason == "alerted":
            return f"alerted: in the digest {self.message_id} sent {_when(self.alerted_at)} to {to}"
        if self.reason == "duplicate":
            return (
                f"not sent again: a copy of a story already alerted in the digest {self.message_id} "
                f"({_when(self.alerted_at)}, headline article {self.story_article})"
            )
        if self.reason == "below_threshold":
            return (
                f"below the alert threshold: score {self.score:.1f} < {self.threshold:g}, "
                "and no copy of its story reached it"
            )
        if self.reason == "outside_lookback":
            return f"outside the look-back window: not sent while the alert runs considered it ({self.detail})"
        if self.reason == "no_recipients":
            return "waiting: no recipients (set ALERT_TO or the profile's recipients)"
        if self.reason == "held_by_cap":
            return f"waiting: held by the per-digest cap ({self.detail}); it leads the next digest"
        return f"waiting: the mail server failed ({self.detail}); the next run tries again"


def _when(value: str | None) -> str:
    moment = parse_iso_or_none(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "at an unknown time"


# --- deciding --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tagged:
    """An article the profile tagged, as an alert run read it."""

    id: str
    cluster_id: str
    score: float
    title: str = ""
    outlet: str = ""
    url: str = ""
    published_at: str | None = None
    fetched_at: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run did with one story for one recipient list."""

    reason: Reason
    recipients: tuple[str, ...]
    message_id: str | None = None
    alerted_at: str | None = None
    detail: str = ""


def decide(
    profile: Profile,
    recipients: Sequence[str],
    *,
    tagged: Mapping[str, Tagged],
    stories: Mapping[str, Story],
    records: Sequence[Covering],
    outcomes: Mapping[str, Sequence[Outcome]],
) -> list[Decision]:
    """The decisions about every ``tagged`` article, from what the run read and did. An article follows
    its story: for each recipient list the story was alerted to before (``records``: ``alerted`` when the
    article was part of it then, else ``duplicate``), and for each list this run dealt with
    (``outcomes``, by the story's cluster id). An article no story carries is ``below_threshold`` (to
    the profile's current ``recipients``). An article in a story another run is sending gets no decision:
    that run decides."""
    story_of = {a: cluster for cluster, story in stories.items() for a in story.article_ids}
    covering: dict[str, list[Covering]] = {}
    for record in records:
        targets = {record.cluster_id}
        targets |= {story_of.get(a) or (tagged[a].cluster_id if a in tagged else "") for a in record.article_ids}
        for target in targets - {""}:
            covering.setdefault(target, []).append(record)
    decided: list[Decision] = []
    for article in tagged.values():
        story = story_of.get(article.id, article.cluster_id)
        base = Decision(
            profile=profile.id,
            article_id=article.id,
            cluster_id=story,
            recipients=(),
            reason="below_threshold",
            score=article.score,
            threshold=profile.alert_threshold,
            title=article.title,
            outlet=article.outlet,
            url=article.url,
            published_at=article.published_at,
            fetched_at=article.fetched_at,
        )
        mine: list[Decision] = []
        in_flight = False
        for record in covering.get(story, []):
            if record.status != SENT:
                in_flight = True  # claimed by a live run: it decides
                continue
            mine.append(
                replace(
                    base,
                    recipients=record.recipients,
                    reason="alerted" if article.id in record.article_ids else "duplicate",
                    message_id=record.message_id,
                    alerted_at=record.sent_at,
                    story_article=record.headline or None,
                )
            )
        for outcome in outcomes.get(story, ()):
            mine.append(
                replace(
                    base,
                    recipients=outcome.recipients,
                    reason=outcome.reason,
                    message_id=outcome.message_id,
                    alerted_at=outcome.alerted_at,
                    detail=outcome.detail,
                )
            )
        if not mine and not in_flight and story not in stories and article.score < profile.alert_threshold:
            mine.append(replace(base, recipients=tuple(recipients)))
        decided.extend(mine)
    return decided


# --- writing ---------------------------------------------------------------------------------------


def record_decisions(
    es: Elasticsearch, alias: str, decisions: Sequence[Decision], *, now: datetime, recipients: Sequence[str] = ()
) -> int:
    """Write the decisions that are new or changed (see the module docstring); how many were written.
    With ``recipients`` (the profile has some now), the ``no_recipients`` decisions about the same
    articles, made while it had none, are removed: they no longer say what happens to them. Never
    raises: a decision not written now is written by the next run."""
    wanted = {d.doc_id: d for d in decisions}
    if not wanted:
        return 0
    ledger = index.Names(alias).alerts
    obsolete = {decision_id(d.profile, (), d.article_id) for d in decisions if recipients} - set(wanted)
    try:
        existing = _read(es, ledger, sorted(set(wanted) | obsolete))
        actions: list[dict[str, Any]] = [
            {"_op_type": "delete", "_index": ledger, "_id": doc_id, "if_seq_no": seq_no, "if_primary_term": term}
            for doc_id, (_, seq_no, term) in existing.items()
            if doc_id in obsolete
        ]
        for doc_id, decision in wanted.items():
            found = existing.get(doc_id)
            if found is not None:
                before, seq_no, term = found
                if before.same_as(decision) or (before.reason == "alerted" and decision.reason != "alerted"):
                    continue  # unchanged, or final
                meta: dict[str, Any] = {"_op_type": "index", "if_seq_no": seq_no, "if_primary_term": term}
            else:
                meta = {"_op_type": "create"}
            source = replace(decision, decided_at=iso(now)).to_doc()
            actions.append({**meta, "_index": ledger, "_id": doc_id, "_source": source})
        result = bulk_write(es, actions)
    except IndexingError as err:
        _log.warning("alerts.decisions_not_recorded", decisions=len(wanted), reason=str(err))
        return 0
    for doc_id, reason in result.failed:
        # A 409: another run wrote it between our read and our write; its decision stands until the next run.
        level = _log.debug if "conflict" in reason or "already exists" in reason else _log.warning
        level("alerts.decision_not_recorded", decision=doc_id, reason=reason)
    return len(result.ok)


def _read(es: Elasticsearch, ledger: str, ids: list[str]) -> dict[str, tuple[Decision, int, int]]:
    """The recorded decisions among ``ids``, with the sequence numbers a conditional write needs."""
    found: dict[str, tuple[Decision, int, int]] = {}
    for start in range(0, len(ids), 1000):
        with translated("reading the alert decisions", url=ledger):
            resp = es.mget(index=ledger, ids=ids[start : start + 1000])
        for doc in resp["docs"]:
            if doc.get("found") and (doc.get("_source") or {}).get("kind") == DECISION:
                found[doc["_id"]] = (Decision.from_doc(doc["_source"]), int(doc["_seq_no"]), int(doc["_primary_term"]))
    return found


def age_out(
    es: Elasticsearch, alias: str, profile_id: str, *, since: datetime, keep: Iterable[str], now: datetime
) -> int:
    """Turn the profile's pending decisions about articles indexed before ``since`` (they left the
    look-back window unsent) into ``outside_lookback``, except for the articles in ``keep`` (members of
    stories this run decided about). One search of the ledger; never raises."""
    kept = set(keep)
    query = {
        "bool": {
            "filter": [
                {"term": {"kind": DECISION}},
                {"term": {"profile": profile_id}},
                {"terms": {"reason": sorted(PENDING)}},
                {"range": {"fetched_at": {"lt": iso(since)}}},
            ]
        }
    }
    ledger = index.Names(alias).alerts
    try:
        actions = []
        for hit in ledger_hits(es, alias, query, seq_no=True):
            before = Decision.from_doc(hit["_source"])
            if before.article_id in kept:
                continue
            detail = f"was {before.reason.replace('_', ' ')}; indexed {_when(before.fetched_at)}"
            after = replace(before, reason="outside_lookback", detail=detail, decided_at=iso(now))
            actions.append(
                {
                    "_op_type": "index",
                    "_index": ledger,
                    "_id": hit["_id"],
                    "if_seq_no": hit["_seq_no"],
                    "if_primary_term": hit["_primary_term"],
                    "_source": after.to_doc(),
                }
            )
        return len(bulk_write(es, actions).ok) if actions else 0
    except IndexingError as err:
        _log.warning("alerts.decisions_not_aged", profile=profile_id, reason=str(err))
        return 0


# --- reading ---------------------------------------------------------------------------------------


def decisions_of(
    es: Elasticsearch,
    alias: str,
    *,
    article_ids: Sequence[str] = (),
    cluster_ids: Sequence[str] = (),
    profile_id: str | None = None,
    reasons: Sequence[Reason] = (),
    limit: int | None = None,
) -> list[Decision]:
    """The recorded decisions about these articles or stories (all of them when neither is given), the
    most recent first; with ``limit``, only that many of the most recent.

    Raises:
        IndexingError: the ledger cannot be read.
    """
    filters: list[dict[str, Any]] = [{"term": {"kind": DECISION}}]
    if profile_id is not None:
        filters.append({"term": {"profile": profile_id}})
    if reasons:
        filters.append({"terms": {"reason": list(reasons)}})
    keys = [{"terms": {"article_id": list(article_ids)}}] if article_ids else []
    keys += [{"terms": {"cluster_id": list(cluster_ids)}}] if cluster_ids else []
    query: dict[str, Any] = {"bool": {"filter": filters}}
    if keys:
        query["bool"].update(should=keys, minimum_should_match=1)
    if limit is not None:
        with translated("reading the alert decisions", url=alias):
            resp = es.search(
                index=index.Names(alias).alerts, query=query, sort=[{"decided_at": {"order": "desc"}}], size=limit
            )
        hits = resp["hits"]["hits"]
    else:
        hits = list(ledger_hits(es, alias, query))
    found = [Decision.from_doc(hit["_source"]) for hit in hits]
    return sorted(found, key=lambda d: (d.decided_at or "", d.doc_id), reverse=True)


@dataclass(frozen=True, slots=True)
class ProfileAnswer:
    """Why one article was or was not alerted for one profile."""

    profile: str
    title: str
    status: str  # the latest decision's reason, or not_tagged / not_decided / outside_lookback
    verdict: str  # one line
    score: float | None
    tag_threshold: float
    alert_threshold: float
    decisions: tuple[Decision, ...] = ()  # every recorded decision, the latest first


@dataclass(frozen=True, slots=True)
class Why:
    """``alerts why``: the article, then one answer per profile."""

    article_id: str
    title: str
    outlet: str
    url: str
    published_at: str | None
    fetched_at: str | None
    cluster_id: str
    topics: tuple[str, ...]
    answers: tuple[ProfileAnswer, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


WHY_FIELDS = [
    "title", "body", "outlet", "url", "canonical_url", "published_at", "fetched_at", "cluster_id", "topics",
    "topic_matches",
]  # fmt: skip


def why(settings: Settings, es: Elasticsearch, profiles: Sequence[Profile], article_id: str, *, now: datetime) -> Why:
    """Why the article was alerted or not, for each profile: its recorded decisions, or — for a profile
    that never decided about it — whether it was tagged at all (its score against the tag threshold),
    left out by the look-back window, or simply not looked at by a run yet.

    Raises:
        IndexingError: no such article, or the index or the ledger cannot be read.
    """
    alias = settings.es_index
    doc = index.get_article(es, alias, article_id, WHY_FIELDS)
    recorded = decisions_of(es, alias, article_ids=[article_id])
    since = now - timedelta(hours=settings.alert_lookback_hours)
    fetched = parse_iso_or_none(doc.get("fetched_at"))
    topics = tuple(doc.get("topics") or ())
    scores = {m.get("profile"): float(m.get("score") or 0.0) for m in doc.get("topic_matches") or []}
    answers = []
    for profile in profiles:
        mine = tuple(d for d in recorded if d.profile == profile.id)
        score = scores.get(profile.id)
        status, verdict = _answer(profile, mine, tagged=profile.id in topics, fetched=fetched, since=since)
        if status == "not_tagged":
            score = match_profile(profile, title=doc.get("title") or "", body=doc.get("body") or "").score
            verdict = (
                f"not tagged: score {score:.1f} is under the tag threshold {profile.tag_threshold:g} "
                f"(`python -m pipeline profile explain {article_id} --profile {profile.id}` shows why)"
            )
        answers.append(
            ProfileAnswer(
                profile=profile.id,
                title=profile.title,
                status=status,
                verdict=verdict,
                score=score,
                tag_threshold=profile.tag_threshold,
                alert_threshold=profile.alert_threshold,
                decisions=mine,
            )
        )
    return Why(
        article_id=article_id,
        title=doc.get("title") or "",
        outlet=doc.get("outlet") or "",
        url=doc.get("canonical_url") or doc.get("url") or "",
        published_at=doc.get("published_at"),
        fetched_at=doc.get("fetched_at"),
        cluster_id=doc.get("cluster_id") or article_id,
        topics=topics,
        answers=tuple(answers),
    )


def _answer(
    profile: Profile, decided: Sequence[Decision], *, tagged: bool, fetched: datetime | None, since: datetime
) -> tuple[str, str]:
    window = f"the alert runs consider articles indexed since {since:%Y-%m-%d %H:%M} UTC"
    left = fetched is not None and fetched < since
    if decided:
        latest = decided[0]
        if latest.reason in PENDING and left:
            # Not recorded yet: the next run of this profile turns it into outside_lookback.
            return "outside_lookback", f"outside the look-back window: {latest.explain()} until it left it ({window})"
        return latest.reason, latest.explain()
    if not tagged:
        return "not_tagged", ""
    if left:
        when = f"{fetched:%Y-%m-%d %H:%M} UTC" if fetched else "at an unknown time"
        return "outside_lookback", f"outside the look-back window: indexed {when}, and {window}"
    return "not_decided", "not decided yet: no alert run has looked at it since it was indexed; the next one will"
