"""``profile test``: how a profile does on labelled articles, and what it would change in the index.

Labelled sets
    A directory in the corpus-dev format: ``articles.jsonl`` (one article a line: ``id``, ``title``,
    ``paragraphs`` — or ``body`` — and optionally ``outlet``) and ``labels.jsonl`` (``id``, ``topic``:
    ``relevant`` / ``borderline`` / ``not``, optionally ``why``, ``near_dup_group``,
    ``exact_dup_group``). Precision and recall are of ``relevant`` against ``not``; borderline articles
    (the topic among others, or next to it) are counted apart: tagging one is neither right nor wrong.
    Every error comes with what the profile saw in it (:func:`pipeline.topics.profiles.explain`).

Dry run over the index
    :func:`dry_run` reads the articles published in a period, matches them against a profile that
    is not installed yet (or an edited copy of one that is), and compares with the tags stored now:
    what would be tagged, untagged, and which stories (clusters) would pass the alert threshold. It
    writes nothing; ``retag`` does that once the profile is installed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from pipeline.errors import ConfigError
from pipeline.store.es import scan
from pipeline.topics.profiles import Profile, RulesExplanation, WeightedExplanation, explain, match_profile

__all__ = [
    "LABELS",
    "Confusion",
    "Labelled",
    "LabelledReport",
    "Outcome",
    "DryRun",
    "dry_run",
    "evaluate_profile",
    "load_labelled",
]

LABELS = ("relevant", "borderline", "not")


@dataclass(frozen=True, slots=True)
class Labelled:
    id: str
    title: str
    body: str
    label: str  # relevant | borderline | not
    why: str = ""
    outlet: str = ""
    group: str = ""  # duplicate group: copies of one story, kept together when a set is split


@dataclass(frozen=True, slots=True)
class Confusion:
    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int

    @property
    def precision(self) -> float:
        found = self.true_positive + self.false_positive
        return self.true_positive / found if found else 0.0

    @property
    def recall(self) -> float:
        wanted = self.true_positive + self.false_negative
        return self.true_positive / wanted if wanted else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.precision, 3),
            "recall": round(self.recall, 3),
            "f1": round(self.f1, 3),
            "tp": self.true_positive,
            "fp": self.false_positive,
            "fn": self.false_negative,
            "tn": self.true_negative,
        }

    @classmethod
    def of(cls, pairs: Iterable[tuple[bool, bool]]) -> Confusion:
        """From (relevant, predicted) pairs."""
        counts: Counter[tuple[bool, bool]] = Counter(pairs)
        return cls(
            true_positive=counts[True, True],
            false_positive=counts[False, True],
            false_negative=counts[True, False],
            true_negative=counts[False, False],
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    article: Labelled
    score: float
    tagged: bool
    alerted: bool


@dataclass(frozen=True, slots=True)
class LabelledReport:
    profile: str
    tag_threshold: float
    alert_threshold: float
    tag: Confusion  # relevant vs not, at the tag threshold
    alert: Confusion  # relevant vs not, at the alert threshold
    borderline: int
    borderline_tagged: int
    borderline_alerted: int
    outcomes: tuple[Outcome, ...]
    errors: tuple[dict[str, Any], ...]  # each wrong call: id, label, score, why, and the explanation

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "thresholds": {"tag": self.tag_threshold, "alert": self.alert_threshold},
            "tag": self.tag.as_dict(),
            "alert": self.alert.as_dict(),
            "borderline": {
                "articles": self.borderline,
                "tagged": self.borderline_tagged,
                "alerted": self.borderline_alerted,
            },
            "errors": list(self.errors),
        }


def load_labelled(directory: Path) -> list[Labelled]:
    """The labelled articles of ``directory`` (corpus-dev format), in the order of ``articles.jsonl``;
    articles without a label are left out.

    Raises:
        ConfigError: a file is missing or unreadable, a line is not a JSON object with an ``id``, or a
            label is not one of :data:`LABELS`.
    """
    articles = _jsonl(directory / "articles.jsonl")
    labels = {entry["id"]: entry for entry in _jsonl(directory / "labels.jsonl")}
    found: list[Labelled] = []
    for entry in articles:
        label = labels.get(entry["id"])
        if label is None:
            continue
        if label.get("topic") not in LABELS:
            message = f"{directory / 'labels.jsonl'}: {entry['id']}: topic must be one of {', '.join(LABELS)}"
            raise ConfigError(message)
        paragraphs = entry.get("paragraphs")
        body = "\n".join(paragraphs) if isinstance(paragraphs, list) else str(entry.get("body") or "")
        found.append(
            Labelled(
                id=str(entry["id"]),
                title=str(entry.get("title") or ""),
                body=body,
                label=label["topic"],
                why=str(label.get("why") or ""),
                outlet=str(entry.get("outlet") or ""),
                group=str(label.get("exact_dup_group") or label.get("near_dup_group") or ""),
            )
        )
    return found


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (a labelled set has articles.jsonl and labels.jsonl)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it: {err}") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{number}: not JSON: {err.msg}") from None
        if not isinstance(entry, dict) or "id" not in entry:
            raise ConfigError(f"{path}:{number}: each line is a JSON object with an id")
        entries.append(entry)
    return entries


def evaluate_profile(
    profile: Profile, articles: Sequence[Labelled], *, progress: Callable[[int, int], None] | None = None
) -> LabelledReport:
    """Tag every article of a labelled set with ``profile`` and count right and wrong calls."""
    outcomes = []
    for number, article in enumerate(articles, start=1):
        score = match_profile(profile, title=article.title, body=article.body).score
        outcomes.append(Outcome(article, score, score >= profile.tag_threshold, score >= profile.alert_threshold))
        if progress and number % 50 == 0:
            progress(number, len(articles))
    scored = [outcome for outcome in outcomes if outcome.article.label != "borderline"]
    borderline = [outcome for outcome in outcomes if outcome.article.label == "borderline"]
    errors = tuple(
        {
            "id": outcome.article.id,
            "label": outcome.article.label,
            "error": "missed" if outcome.article.label == "relevant" else "false alarm",
            "score": outcome.score,
            "title": outcome.article.title,
            "why": outcome.article.why,
            "explanation": _brief(explain(profile, title=outcome.article.title, body=outcome.article.body)),
        }
        for outcome in sorted(scored, key=lambda outcome: -outcome.score)
        if outcome.tagged != (outcome.article.label == "relevant")
    )
    return LabelledReport(
        profile=profile.id,
        tag_threshold=profile.tag_threshold,
        alert_threshold=profile.alert_threshold,
        tag=Confusion.of((o.article.label == "relevant", o.tagged) for o in scored),
        alert=Confusion.of((o.article.label == "relevant", o.alerted) for o in scored),
        borderline=len(borderline),
        borderline_tagged=sum(o.tagged for o in borderline),
        borderline_alerted=sum(o.alerted for o in borderline),
        outcomes=tuple(outcomes),
        errors=errors,
    )


def _brief(report: WeightedExplanation | RulesExplanation) -> dict[str, Any]:
    """What an analyst needs to see about a wrong call: the rules that fired, with their windows
    (or, for a profile of weighted terms, its heaviest contributions)."""
    if isinstance(report, RulesExplanation):
        fired = [
            {
                "rule": rule.rule,
                "contribution": rule.contribution,
                "fired": asdict(rule.fired),
                "windows": [f"{window.where}: {window.text}" for window in rule.windows[:3]],
            }
            for rule in report.rules
            if rule.windows
        ]
        return {"logit": report.logit, "capped": report.capped, "rules": fired}
    return {"terms": [f"{term.term} {term.contribution}" for term in report.terms[:8]]}


# --- dry run over the index -----------------------------------------------------------------------

DRY_RUN_FIELDS = ["title", "body", "outlet", "published_at", "cluster_id", "topics", "topic_matches"]


@dataclass(slots=True)
class DryRun:
    profile: str
    since: str  # ISO 8601, UTC
    scanned: int = 0
    tagged_now: int = 0  # articles carrying the profile's tag in the index
    would_tag: int = 0
    newly_tagged: list[dict[str, Any]] = field(default_factory=list)
    untagged: list[dict[str, Any]] = field(default_factory=list)
    alerts_now: int = 0  # stories (clusters) passing the alert threshold with the stored scores
    would_alert: int = 0
    new_alerts: list[dict[str, Any]] = field(default_factory=list)
    dropped_alerts: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "since": self.since,
            "scanned": self.scanned,
            "tagged": {"now": self.tagged_now, "would": self.would_tag},
            "newly_tagged": self.newly_tagged,
            "untagged": self.untagged,
            "alerted_stories": {"now": self.alerts_now, "would": self.would_alert},
            "new_alerts": self.new_alerts,
            "dropped_alerts": self.dropped_alerts,
        }


def dry_run(
    es: Elasticsearch,
    alias: str,
    profile: Profile,
    *,
    since: datetime,
    installed: Profile | None = None,
    progress: Callable[[int], None] | None = None,
) -> DryRun:
    """What ``profile`` would tag and alert among the articles published since ``since``, against
    what the index holds now (the stored tags of the profile with the same id, and the alert
    threshold of ``installed``, the profile of that id in use, if any). Reads only.

    Raises:
        IndexingError: the index cannot be read.
    """
    current_alert = installed.alert_threshold if installed is not None else profile.alert_threshold
    result = DryRun(profile=profile.id, since=_iso(since))
    query = {"range": {"published_at": {"gte": result.since}}}
    alert_now: dict[str, dict[str, Any]] = {}
    alert_new: dict[str, dict[str, Any]] = {}
    for hit in scan(es, alias, query, DRY_RUN_FIELDS, page=1000):
        result.scanned += 1
        src = hit["_source"]
        stored = next((m for m in src.get("topic_matches") or [] if m.get("profile") == profile.id), None)
        was = profile.id in (src.get("topics") or [])
        match = match_profile(profile, title=src.get("title") or "", body=src.get("body") or "")
        now = match.score >= profile.tag_threshold
        row = {
            "id": hit["_id"],
            "title": src.get("title") or "",
            "outlet": src.get("outlet") or "",
            "published_at": src.get("published_at"),
            "score_now": float(stored["score"]) if stored else None,
            "score": match.score,
            "terms": list(match.terms[:8]),
        }
        result.tagged_now += was
        result.would_tag += now
        if now and not was:
            result.newly_tagged.append(row)
        elif was and not now:
            result.untagged.append(row)
        cluster = src.get("cluster_id") or hit["_id"]
        if was and stored and float(stored.get("score", 0)) >= current_alert:
            alert_now.setdefault(cluster, row)
        if match.score >= profile.alert_threshold:
            alert_new.setdefault(cluster, row)
        if progress and result.scanned % 500 == 0:
            progress(result.scanned)
    result.alerts_now = len(alert_now)
    result.would_alert = len(alert_new)
    result.new_alerts = [row for cluster, row in alert_new.items() if cluster not in alert_now]
    result.dropped_alerts = [row for cluster, row in alert_now.items() if cluster not in alert_new]
    for rows in (result.newly_tagged, result.untagged, result.new_alerts, result.dropped_alerts):
        rows.sort(key=lambda row: (row["published_at"] or "", row["id"]), reverse=True)
    return result


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- thresholds from a labelled set -----------------------------------------------------------------

ALERT_PRECISION = 0.95


def calibrate(outcomes: Sequence[Outcome], *, alert_precision: float = ALERT_PRECISION) -> tuple[float, float]:
    """Thresholds (a tenth apart) read off scored labelled articles: the tag threshold with the best
    F1 of relevant against not (the higher one on a tie), and the lowest alert threshold, not below
    it, at and above which the precision reaches ``alert_precision`` (9.9 when none does)."""
    scored = [(o.score, o.article.label == "relevant") for o in outcomes if o.article.label != "borderline"]
    steps = [round(step / 10, 1) for step in range(1, 100)]
    at = {threshold: Confusion.of((relevant, score >= threshold) for score, relevant in scored) for threshold in steps}
    tag = max(steps, key=lambda threshold: (round(at[threshold].f1, 9), threshold))
    # From the top down: the alert threshold is the lowest from which every higher one, where any
    # article still passes, keeps the precision.
    alert = 9.9
    for threshold in reversed(steps):
        matrix = at[threshold]
        passing = matrix.true_positive + matrix.false_positive
        if threshold < tag or (passing and matrix.precision < alert_precision):
            break
        alert = threshold
    return tag, alert
