"""Rules over term groups: what a profile's topic *is*, not how often its words occur.

A topic such as "Russia and Iran backing Assad" is a relation: an *actor* (Russia, Iran, the Quds
Force, Hezbollah) *backs* a *beneficiary* (Assad, the Syrian government and army) by some *means*
(strikes, advisers, a veto). Mentions of Syria, Iran and Russia that add up are not that relation:
the war without them, Iran's nuclear file and Lebanese politics name the same names. So a profile
may define

* **groups** of terms, each one side of the topic (``role``: actor, beneficiary, relation, theatre,
  or context), matched as :mod:`pipeline.topics.terms` matches any term. Two terms of one group over
  the same words (``نظام الأسد`` and ``الأسد``) are one mention.
* **rules**: a list of *slots*, each filled by any of its groups, and a *window*. A rule fires where
  every slot is filled by mentions that start within ``window`` consecutive tokens of one sentence
  (``across_sentences``: of the text), as EMM's category definitions combine terms with boolean and
  proximity operators; a word inside a longer mention of another slot's group does not count on its
  own (``قوات`` in ``قوات الأسد`` is the beneficiary, not a means). The places where a rule fires
  (its *windows*) do not overlap. A rule of one slot fires at every mention of its groups: that
  measures how much an article is about something and, with a negative weight, counts context that
  makes the topic unlikely (the nuclear file, Yemen). ``where: title`` counts the title only.
* **require**: rules at least one of which must fire for a tag, whatever the rest adds up to.

Score (0–10, two decimals)
    For each rule, ``n = TITLE_FACTOR × title windows + LEAD_FACTOR × lead windows + scale × Σ body
    windows (1 − POSITION_DECAY × position)``, with ``scale = min(1, REFERENCE_WORDS / body words)``
    and ``position`` the window's place in the body (0 at the start, 1 at the end): a window in the
    title counts twice, one in the first :data:`LEAD_WORDS` words (the lead) once more, one at the
    end of the body half as much as one at its start (news puts the subject first and background
    last), and windows in a long body count for less, because a subject named once in 2,000 words
    is not the article's subject. The rule's *value* is ``1 − e^(−n/SATURATION)``: the first window
    gives about half, later ones less and less. ``z = bias + Σ weight × value`` is a log-odds and the
    score is ``10 / (1 + e^(−z))``, so 5 means even odds and the weights can be fitted as a logistic
    regression on labelled articles (``bench/fit_topics.py``). When no required rule fired the score
    is held just under the tag threshold. Every part of ``z`` is a named rule, so ``profile explain``
    can list the windows that fired and what each added.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.topics.terms import BREAKS, SENTENCE_ENDS, Span, Term, TermMatcher, compile_terms, term_tokens

__all__ = [
    "LEAD_FACTOR",
    "LEAD_WORDS",
    "POSITION_DECAY",
    "REFERENCE_WORDS",
    "ROLES",
    "SATURATION",
    "TITLE_FACTOR",
    "Group",
    "Rule",
    "RuleEvaluation",
    "RuleMatcher",
    "RuleResult",
    "Window",
    "compile_rules",
    "score_of",
]

ROLES = ("actor", "beneficiary", "relation", "theatre", "context")
TITLE_FACTOR = 2.0  # a window in the title says what the article is about
LEAD_FACTOR = 1.0  # so does one in the lead, a little less
LEAD_WORDS = 40
REFERENCE_WORDS = 300  # body windows count in full up to this length, then per this many words
SATURATION = 1.5
POSITION_DECAY = 0.5  # a body window at the very end counts half as much as one at the start
MAX_SCORE = 10.0


@dataclass(frozen=True, slots=True)
class Group:
    """Terms that stand for one side of a topic."""

    id: str
    role: str  # one of ROLES
    terms: tuple[Term, ...]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """Slots that must all be filled within ``window`` tokens of one sentence."""

    id: str
    slots: tuple[tuple[str, ...], ...]  # each slot: ids of the groups that fill it
    window: int
    weight: float  # log-odds added at full strength; negative for context
    note: str = ""
    where: str = "all"  # "title": only windows in the title count (what the article says it is about)
    across_sentences: bool = False  # a window may span sentence ends (a paragraph-wide rule)


@dataclass(frozen=True, slots=True)
class Window:
    """One place where a rule fired: token positions and the term indices that filled its slots."""

    start: int
    end: int
    terms: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RuleResult:
    title: tuple[Window, ...]
    body: tuple[Window, ...]
    lead: int  # body windows that start in the lead
    strength: float  # n, see the module docstring
    value: float
    contribution: float


@dataclass(frozen=True, slots=True)
class RuleEvaluation:
    score: float
    logit: float
    capped: bool  # no required rule fired: the score was held under the tag threshold
    rules: tuple[RuleResult, ...]  # in the profile's order
    occurrences: dict[int, tuple[int, int]]  # matched term index -> (title, body) mentions
    body_words: int
    title_tokens: tuple[str, ...]
    body_tokens: tuple[str, ...]


def score_of(logit: float) -> float:
    """The 0–10 score of a log-odds."""
    return round(MAX_SCORE / (1.0 + math.exp(-max(-50.0, min(50.0, logit)))), 2)


@dataclass(frozen=True, slots=True)
class RuleMatcher:
    """A profile's groups and rules, compiled: every group term in one :class:`TermMatcher`."""

    terms: tuple[Term, ...]  # the groups' terms, in group order
    term_group: tuple[int, ...]  # term index -> group index
    groups: tuple[Group, ...]
    # per rule: per slot, the group indices that fill it
    slots: tuple[tuple[frozenset[int], ...], ...]
    rules: tuple[Rule, ...]
    required: frozenset[int]  # rule indices; empty: nothing required
    bias: float
    matcher: TermMatcher
    longest: int  # tokens in the longest spelling of any term

    def evaluate(self, title: Sequence[str], body: Sequence[str], *, tag_threshold: float) -> RuleEvaluation:
        """Score tokenised title and body (:func:`~pipeline.topics.terms.text_tokens` of normalised text)."""
        title_spans = self.matcher.spans(title)
        body_spans = self.matcher.spans(body)
        in_title = _Region(title, self._mentions(title_spans), self.longest)
        in_body = _Region(body, self._mentions(body_spans), self.longest)
        words = [index for index, token in enumerate(body) if token not in BREAKS]
        lead_end = words[LEAD_WORDS] if len(words) > LEAD_WORDS else len(body)
        scale = min(1.0, REFERENCE_WORDS / len(words)) if words else 1.0
        results = []
        logit = self.bias
        for rule, slots in zip(self.rules, self.slots, strict=True):
            title_windows = in_title.windows(slots, rule)
            body_windows = in_body.windows(slots, rule) if rule.where != "title" else ()
            lead = sum(1 for window in body_windows if window.start < lead_end)
            # News puts the subject first and the background last (the inverted pyramid).
            body_weight = sum(1.0 - POSITION_DECAY * window.start / len(body) for window in body_windows)
            strength = TITLE_FACTOR * len(title_windows) + LEAD_FACTOR * lead + scale * body_weight
            value = 1.0 - math.exp(-strength / SATURATION)
            results.append(RuleResult(title_windows, body_windows, lead, strength, value, rule.weight * value))
            logit += rule.weight * value
        score = score_of(logit)
        fired = {index for index, result in enumerate(results) if result.title or result.body}
        capped = bool(self.required) and not (fired & self.required) and score >= tag_threshold
        if capped:
            score = max(0.0, round(tag_threshold - 0.01, 2))
        occurrences = {
            index: (len(title_spans.get(index, ())), len(body_spans.get(index, ())))
            for index in sorted(title_spans.keys() | body_spans.keys())
        }
        return RuleEvaluation(
            score=score,
            logit=logit,
            capped=capped,
            rules=tuple(results),
            occurrences=occurrences,
            body_words=len(words),
            title_tokens=tuple(title),
            body_tokens=tuple(body),
        )

    def _mentions(self, spans: dict[int, list[Span]]) -> list[Mention]:
        """Every group's mentions, in text order; two terms of one group over the same words
        ("نظام الأسد" and "الأسد") are one mention: the earliest, then the longest."""
        by_group: dict[int, list[tuple[int, int, int]]] = {}
        for index, found in spans.items():
            by_group.setdefault(self.term_group[index], []).extend((start, end, index) for start, end in found)
        mentions: list[Mention] = []
        for group, hits in by_group.items():
            hits.sort(key=lambda hit: (hit[0], -hit[1], hit[2]))
            last_end = -1
            for start, end, term in hits:
                if start >= last_end:
                    mentions.append((start, end, group, term))
                    last_end = end
        mentions.sort()
        return mentions


Mention = tuple[int, int, int, int]  # start, end, group index, term index


class _Region:
    """A title or a body: its tokens' sentences and its mentions, with what contains what."""

    __slots__ = ("containers", "flat", "mentions", "sentence")

    def __init__(self, tokens: Sequence[str], mentions: list[Mention], longest: int) -> None:
        self.sentence = _sentences(tokens)
        self.flat = [0] * len(tokens)
        self.mentions = mentions
        # mention -> the groups of the longer mentions around it ("قوات" inside "قوات الأسد").
        self.containers: dict[Mention, set[int]] = {}
        starts = [mention[0] for mention in mentions]
        for mention in mentions:
            start, end, group, _ = mention
            for other in mentions[bisect.bisect_left(starts, start - longest) : bisect.bisect_right(starts, start)]:
                if other[2] != group and end <= other[1] and other[1] - other[0] > end - start:
                    self.containers.setdefault(mention, set()).add(other[2])

    def windows(self, slots: tuple[frozenset[int], ...], rule: Rule) -> tuple[Window, ...]:
        """Non-overlapping places where every slot is filled by mentions that start within
        ``rule.window`` tokens of one sentence, chosen greedily by earliest end (which finds the
        most of them). A mention inside a longer mention of another slot's group does not count."""
        slot_of: dict[int, list[int]] = {}
        for slot, groups in enumerate(slots):
            for group in groups:
                slot_of.setdefault(group, []).append(slot)
        items = [(mention, slot) for mention in self.mentions for slot in slot_of.get(mention[2], ())]
        if len(slots) == 1:
            return _single(items)
        sentence = self.flat if rule.across_sentences else self.sentence
        found: list[Window] = []
        latest: dict[int, Mention] = {}  # slot -> its latest mention since the last window
        current = -1
        floor = 0  # windows do not overlap: nothing before this position may be used again
        for mention, slot in items:
            start = mention[0]
            if start < floor:
                continue
            around = self.containers.get(mention)
            if around and any(not groups.isdisjoint(around) for other, groups in enumerate(slots) if other != slot):
                continue
            if sentence[start] != current:
                current = sentence[start]
                latest.clear()
            latest[slot] = mention
            if len(latest) < len(slots):
                continue
            first = min(hit[0] for hit in latest.values())
            if start - first < rule.window:
                last = max(hit[1] for hit in latest.values())
                found.append(Window(first, last, tuple(dict.fromkeys(hit[3] for hit in sorted(latest.values())))))
                floor = last
                latest.clear()
        return tuple(found)


def _single(items: list[tuple[Mention, int]]) -> tuple[Window, ...]:
    """A rule of one slot: every mention is a window (overlapping ones of different groups once)."""
    found: list[Window] = []
    floor = 0
    for (start, end, _, term), _ in items:
        if start >= floor:
            found.append(Window(start, end, (term,)))
            floor = end
    return tuple(found)


def _sentences(tokens: Sequence[str]) -> list[int]:
    """The sentence number of every token."""
    numbers = []
    current = 0
    for token in tokens:
        numbers.append(current)
        if token in SENTENCE_ENDS:
            current += 1
    return numbers


def compile_rules(
    groups: Sequence[Group], rules: Sequence[Rule], *, bias: float, require: Sequence[str] = ()
) -> RuleMatcher:
    """The matcher for ``groups`` and ``rules``; every group a rule names, and every rule
    ``require`` names, must exist (:func:`pipeline.topics.profiles.load_profile` checks it)."""
    position = {group.id: index for index, group in enumerate(groups)}
    rule_position = {rule.id: index for index, rule in enumerate(rules)}
    terms: list[Term] = []
    term_group: list[int] = []
    for index, group in enumerate(groups):
        terms.extend(group.terms)
        term_group.extend([index] * len(group.terms))
    return RuleMatcher(
        terms=tuple(terms),
        term_group=tuple(term_group),
        groups=tuple(groups),
        slots=tuple(tuple(frozenset(position[group] for group in slot) for slot in rule.slots) for rule in rules),
        rules=tuple(rules),
        required=frozenset(rule_position[rule] for rule in require),
        bias=bias,
        matcher=compile_terms(terms),
        longest=max(
            (len(term_tokens(spelling)) for term in terms for spelling in (term.text, *term.variants)), default=1
        ),
    )
