"""Topic profiles: load them, match articles against them, explain a match.

A profile (``seeds/profiles/*.yaml``, validated by ``schemas/profile.schema.json``) says what an
analyst watches, in one of two ways:

* **groups and rules** (:mod:`pipeline.topics.rules`): terms grouped by the side of the story they
  stand for (actors, beneficiary, relation, theatre, context) and rules that need every side within
  a few words of each other; the score is a log-odds made of the rules that fired, with weights
  fitted on labelled articles. This is what tells "Russia bombs rebels for Assad" from "Russia and
  Iran sign a trade deal";
* **weighted terms** (:mod:`pipeline.topics.weights`), the first format: a sum of the weights of the
  terms an article names, with diminishing returns and a reward for breadth.

Either way terms are matched on normalised Arabic, through attached clitics (:mod:`pipeline.topics.terms`),
scores are on a 0–10 scale, and a profile's ``tag`` and ``alert`` thresholds are on the same scale.
Compiled matchers are cached per profile object, so the extraction workers pay the compilation
once; matching a 600-word article takes about a millisecond.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped, unused-ignore]

from pipeline.arabic.normalize import normalize_text
from pipeline.errors import ConfigError
from pipeline.settings import PROJECT_ROOT
from pipeline.topics.rules import (
    LEAD_FACTOR,
    LEAD_WORDS,
    POSITION_DECAY,
    REFERENCE_WORDS,
    TITLE_FACTOR,
    Group,
    Rule,
    RuleEvaluation,
    RuleMatcher,
    Window,
    compile_rules,
)
from pipeline.topics.terms import (
    CLITIC_PREFIXES,
    KINDS,
    NAME_KINDS,
    Term,
    TermMatcher,
    compile_terms,
    has_short_wildcard,
    stem_key,
    term_key,
    term_tokens,
    text_tokens,
    token_forms,
)
from pipeline.topics.weights import MAX_SCORE, WeightedEvaluation, evaluate_terms
from pipeline.yaml_files import LineIndex, Problem, dotted, read_yaml_mapping, schema_errors, sort_key

__all__ = [
    "CLITIC_PREFIXES",
    "KINDS",
    "MAX_SCORE",
    "NAME_KINDS",
    "SCHEMA_PATH",
    "Explanation",
    "ExplainedRule",
    "ExplainedTerm",
    "Group",
    "GroupTerm",
    "Match",
    "Occurrences",
    "Part",
    "Profile",
    "Rule",
    "RuleFired",
    "RuleWindow",
    "RulesExplanation",
    "SurgeRule",
    "Term",
    "WeightedExplanation",
    "explain",
    "load_profile",
    "load_profiles",
    "match_profile",
    "stem_key",
    "tag_article",
    "term_key",
    "term_tokens",
    "token_forms",
]

SCHEMA_PATH = PROJECT_ROOT / "schemas" / "profile.schema.json"


@dataclass(frozen=True, slots=True)
class SurgeRule:
    """When the profile's coverage jumps (``surge:`` in the file; these are the defaults)."""

    enabled: bool = True
    ratio: float = 3.0  # times the mean count in the same hour over the previous 7 days
    min_articles: int = 5  # in the last hour, whatever the baseline


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    title: str
    language: str
    terms: tuple[Term, ...]  # weighted terms; empty in a profile of groups and rules
    tag_threshold: float
    alert_threshold: float
    recipients: tuple[str, ...] = ()
    source: str = ""  # file it came from
    groups: tuple[Group, ...] = ()
    rules: tuple[Rule, ...] = ()  # when there are rules, they score the article and ``terms`` are unused
    bias: float = 0.0  # log-odds of an article in which no rule fires
    require: tuple[str, ...] = ()  # ids of rules at least one of which must fire for a tag
    surge: SurgeRule = SurgeRule()


@dataclass(frozen=True, slots=True)
class Match:
    profile: str
    score: float
    terms: tuple[str, ...]  # canonical texts of matched terms, best first
    details: tuple[tuple[str, float, str, int], ...]  # (term, weight, "title"|"body", occurrences)
    rules: tuple[tuple[str, float], ...] = ()  # (rule id, contribution) of the rules that fired


# --- compiled profiles --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Weighted:
    matcher: TermMatcher


_Compiled = _Weighted | RuleMatcher
_CACHE_SIZE = 64
_by_identity: dict[int, tuple[Profile, _Compiled]] = {}
_by_value: dict[Profile, _Compiled] = {}
_cache_lock = threading.Lock()


def _compile(profile: Profile) -> _Compiled:
    """The matcher for ``profile``, built once.

    Looked up by identity first: hashing a frozen profile walks all its terms. Then by value, so a
    worker process that receives a pickled copy of the same profile with every task still reuses
    one matcher (and its token memo). Identity entries keep their profile alive, so an id cannot
    be reused while cached.
    """
    known = _by_identity.get(id(profile))
    if known is not None and known[0] is profile:
        return known[1]
    entry = _by_value.get(profile)
    with _cache_lock:
        if entry is None:
            entry = (
                compile_rules(profile.groups, profile.rules, bias=profile.bias, require=profile.require)
                if profile.rules
                else _Weighted(compile_terms(profile.terms))
            )
            if len(_by_value) >= _CACHE_SIZE:
                _by_value.clear()
            _by_value[profile] = entry
        if len(_by_identity) >= _CACHE_SIZE:
            _by_identity.clear()
        _by_identity[id(profile)] = (profile, entry)
    return entry


_Evaluation = WeightedEvaluation | RuleEvaluation


def _evaluate(profile: Profile, title: list[str], body: list[str]) -> tuple[_Compiled, _Evaluation]:
    compiled = _compile(profile)
    if isinstance(compiled, RuleMatcher):
        return compiled, compiled.evaluate(title, body, tag_threshold=profile.tag_threshold)
    return compiled, evaluate_terms(compiled.matcher, profile.terms, title, body)


def _match(profile: Profile, compiled: _Compiled, evaluation: _Evaluation) -> Match:
    if isinstance(evaluation, WeightedEvaluation):
        details: list[tuple[str, float, str, int]] = []
        for index, title_count, body_count, _ in evaluation.rows:
            term = profile.terms[index]
            if title_count:
                details.append((term.text, term.weight, "title", title_count))
            if body_count:
                details.append((term.text, term.weight, "body", body_count))
        return Match(
            profile=profile.id,
            score=evaluation.score,
            terms=tuple(profile.terms[index].text for index, *_ in evaluation.rows),
            details=tuple(details),
        )
    assert isinstance(compiled, RuleMatcher)
    ranked = _evidence_terms(compiled, evaluation)
    terms = compiled.terms
    details = []
    for index in ranked:
        title_count, body_count = evaluation.occurrences[index]
        if title_count:
            details.append((terms[index].text, terms[index].weight, "title", title_count))
        if body_count:
            details.append((terms[index].text, terms[index].weight, "body", body_count))
    return Match(
        profile=profile.id,
        score=evaluation.score,
        terms=tuple(dict.fromkeys(terms[index].text for index in ranked)),
        details=tuple(details),
        rules=tuple(
            (rule.id, round(result.contribution, 3))
            for rule, result in zip(compiled.rules, evaluation.rules, strict=True)
            if result.title or result.body
        ),
    )


def _evidence_terms(compiled: RuleMatcher, evaluation: RuleEvaluation) -> list[int]:
    """The matched terms that earned the score: every matched term outside the context groups, in
    the profile's order (actors, beneficiary, theatre, relations, as the groups are listed). Not by
    the windows they filled: two copies of one story, one with a full stop more, must list the same
    terms alike (alert digests show them)."""
    return [
        index
        for index in sorted(evaluation.occurrences)
        if compiled.groups[compiled.term_group[index]].role != "context"
    ]


# --- public matching API ------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return text_tokens(normalize_text(text))


def match_profile(profile: Profile, *, title: str, body: str) -> Match:
    """Score one article against one profile (see the module docstring); never raises on text."""
    compiled, evaluation = _evaluate(profile, _tokens(title), _tokens(body))
    return _match(profile, compiled, evaluation)


def tag_article(profiles: Sequence[Profile], *, title: str, body: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The article record's ``topics`` and ``topic_matches``: the profiles whose score reaches
    their tag threshold, in the order given, each with its score and matched terms."""
    title_tokens = _tokens(title)
    body_tokens = _tokens(body)
    topics: list[str] = []
    matches: list[dict[str, Any]] = []
    for profile in profiles:
        match = _match(profile, *_evaluate(profile, title_tokens, body_tokens))
        if match.score >= profile.tag_threshold:
            topics.append(profile.id)
            matches.append({"profile": profile.id, "score": match.score, "terms": list(match.terms)})
    return topics, matches


# --- explaining a score -------------------------------------------------------------------------

Part = Literal["title", "body"]  # where in an article a term or a rule's window was found


@dataclass(frozen=True, slots=True)
class Occurrences:
    title: int
    body: int


@dataclass(frozen=True, slots=True)
class Explanation:
    """How an article scores against one profile, whatever the profile's model."""

    profile: str
    title: str  # the profile's
    score: float
    threshold: float  # the tag threshold
    alert_threshold: float
    tagged: bool
    alert: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``profile explain --json`` prints for the profile."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ExplainedTerm:
    """A weighted term the article names, and its share of the evidence."""

    term: str
    kind: str
    weight: float
    where: list[Part]
    occurrences: Occurrences
    contribution: float


@dataclass(frozen=True, slots=True)
class WeightedExplanation(Explanation):
    model: Literal["weighted terms"] = field(init=False, default="weighted terms")
    evidence: float
    breadth: float
    scale: str
    terms: list[ExplainedTerm]  # best first


@dataclass(frozen=True, slots=True)
class RuleWindow:
    """A place where a rule fired: its words (normalised) and the terms that filled its slots."""

    where: Part
    text: str
    terms: list[str]


@dataclass(frozen=True, slots=True)
class RuleFired:
    title: int  # windows in the title
    body: int  # windows in the body
    lead: int  # body windows that start in the lead


@dataclass(frozen=True, slots=True)
class ExplainedRule:
    rule: str
    note: str
    slots: list[list[str]]  # each slot: the groups that fill it
    window: int
    weight: float
    required: bool
    fired: RuleFired
    strength: float
    value: float
    contribution: float  # to the log-odds
    windows: list[RuleWindow]


@dataclass(frozen=True, slots=True)
class GroupTerm:
    """A matched term of one of the profile's groups."""

    term: str
    group: str
    role: str  # the group's: actor | beneficiary | relation | theatre | context
    kind: str
    where: list[Part]
    occurrences: Occurrences


@dataclass(frozen=True, slots=True)
class RulesExplanation(Explanation):
    model: Literal["rules"] = field(init=False, default="rules")
    bias: float
    logit: float
    capped: bool  # no required rule fired: the score was held under the tag threshold
    required: list[str]  # ids of the rules one of which must fire
    body_words: int
    scale: str
    rules: list[ExplainedRule]  # in the profile's order
    terms: list[GroupTerm]  # by group


def explain(profile: Profile, *, title: str, body: str) -> WeightedExplanation | RulesExplanation:
    """Why an article scores what it does against ``profile``.

    For a profile of rules: every rule with the windows where it fired (the words, in the title or
    the body), its value and its contribution to the log-odds; the matched terms of every group.
    For a profile of weighted terms: each term's share of the evidence (breadth included).
    """
    compiled, evaluation = _evaluate(profile, _tokens(title), _tokens(body))
    score = evaluation.score
    # The fields of Explanation, in order: what both models report.
    verdict = (
        profile.id,
        profile.title,
        score,
        profile.tag_threshold,
        profile.alert_threshold,
        score >= profile.tag_threshold,
        score >= profile.alert_threshold,
    )
    if isinstance(evaluation, WeightedEvaluation):
        return WeightedExplanation(
            *verdict,
            evidence=round(evaluation.evidence, 3),
            breadth=round(evaluation.breadth, 3),
            scale="0-10: score = 10 * (1 - exp(-evidence / 10))",
            terms=_explain_weighted(profile, evaluation),
        )
    assert isinstance(compiled, RuleMatcher)
    return RulesExplanation(
        *verdict,
        bias=compiled.bias,
        logit=round(evaluation.logit, 3),
        capped=evaluation.capped,
        required=[compiled.rules[index].id for index in sorted(compiled.required)],
        body_words=evaluation.body_words,
        scale=(
            "0-10: score = 10 / (1 + exp(-logit)), logit = bias + sum of contributions; a rule's value is "
            f"1 - exp(-n / 1.5), n = {TITLE_FACTOR:g} x title windows + {LEAD_FACTOR:g} x windows in the "
            f"first {LEAD_WORDS} words + min(1, {REFERENCE_WORDS} / body words) x the sum over body windows of "
            f"(1 - {POSITION_DECAY:g} x the window's position in the body, 0 to 1)"
        ),
        rules=_explain_rules(compiled, evaluation),
        terms=_explain_group_terms(compiled, evaluation),
    )


def _parts(title_count: int, body_count: int) -> list[Part]:
    parts: list[Part] = []
    if title_count:
        parts.append("title")
    if body_count:
        parts.append("body")
    return parts


def _explain_weighted(profile: Profile, evaluation: WeightedEvaluation) -> list[ExplainedTerm]:
    return [
        ExplainedTerm(
            term=profile.terms[index].text,
            kind=profile.terms[index].kind,
            weight=profile.terms[index].weight,
            where=_parts(title_count, body_count),
            occurrences=Occurrences(title=title_count, body=body_count),
            contribution=round(contribution, 3),
        )
        for index, title_count, body_count, contribution in evaluation.rows
    ]


def _explain_rules(compiled: RuleMatcher, evaluation: RuleEvaluation) -> list[ExplainedRule]:
    rules = []
    for index, (rule, result) in enumerate(zip(compiled.rules, evaluation.rules, strict=True)):
        found: tuple[tuple[Part, tuple[Window, ...], tuple[str, ...]], ...] = (
            ("title", result.title, evaluation.title_tokens),
            ("body", result.body, evaluation.body_tokens),
        )
        windows = [
            RuleWindow(
                where=where,
                text=" ".join(tokens[window.start : window.end]),
                terms=[compiled.terms[term].text for term in window.terms],
            )
            for where, in_part, tokens in found
            for window in in_part
        ]
        rules.append(
            ExplainedRule(
                rule=rule.id,
                note=rule.note,
                slots=[list(slot) for slot in rule.slots],
                window=rule.window,
                weight=rule.weight,
                required=index in compiled.required,
                fired=RuleFired(title=len(result.title), body=len(result.body), lead=result.lead),
                strength=round(result.strength, 3),
                value=round(result.value, 3),
                contribution=round(result.contribution, 3),
                windows=windows,
            )
        )
    return rules


def _explain_group_terms(compiled: RuleMatcher, evaluation: RuleEvaluation) -> list[GroupTerm]:
    terms = []
    for index in sorted(evaluation.occurrences, key=lambda index: (compiled.term_group[index], index)):
        group = compiled.groups[compiled.term_group[index]]
        title_count, body_count = evaluation.occurrences[index]
        terms.append(
            GroupTerm(
                term=compiled.terms[index].text,
                group=group.id,
                role=group.role,
                kind=compiled.terms[index].kind,
                where=_parts(title_count, body_count),
                occurrences=Occurrences(title=title_count, body=body_count),
            )
        )
    return terms


# --- profile files ------------------------------------------------------------------------------


def load_profiles(directory: Path) -> list[Profile]:
    """Every ``*.yaml`` profile in ``directory``, sorted by file name; ``[]`` if there is none.

    Raises:
        ConfigError: a file is bad (see :func:`load_profile`) or two files declare the same id.
            All problems of all files are reported, one a line.
    """
    if not directory.is_dir():
        return []
    profiles: list[Profile] = []
    problems: list[str] = []
    first: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            profile, line = _load(path)
        except ConfigError as err:
            problems.append(str(err))
            continue
        if profile.id in first:
            problems.append(f"{path}:{line}: id: duplicate id {profile.id!r}, first declared at {first[profile.id]}")
            continue
        first[profile.id] = f"{path}:{line}"
        profiles.append(profile)
    if problems:
        raise ConfigError("\n".join(problems))
    return profiles


def load_profile(path: Path) -> Profile:
    """Read and validate one profile file (see ``schemas/profile.schema.json``).

    Raises:
        ConfigError: missing, unreadable, not YAML, breaks the schema, a term or variant with no
            word in it (or a wildcard too short), one term listed twice, an alert threshold below
            the tag threshold, or a rule that names a group (or a ``require`` that names a rule)
            the profile does not define. The message names the file, the line and the field, one
            problem a line.
    """
    return _load(path)[0]


def _term(entry: dict[str, Any], *, weight: float) -> Term:
    return Term(
        text=entry["text"],
        weight=float(entry.get("weight", weight)),
        kind=entry["kind"],
        variants=tuple(entry.get("variants", ())),
    )


def _load(path: Path) -> tuple[Profile, int]:
    """The profile and the line of its id."""
    data, lines = read_yaml_mapping(path, what="profile", expected="a mapping with id, title and terms")
    found: list[Problem] = [
        error for err in _validator().iter_errors(data) for error in schema_errors(err, path, lines)
    ]
    if not found:
        found.extend(_semantic_problems(data, path, lines))
    if found:
        found.sort(key=lambda error: (error[1], sort_key(error[0])))
        raise ConfigError("\n".join(message for _, _, message in found))

    thresholds = data["thresholds"]
    scoring = data.get("scoring", {})
    profile = Profile(
        id=data["id"],
        title=data["title"],
        language=data.get("language", "ar"),
        terms=tuple(_term(entry, weight=1.0) for entry in data.get("terms", ())),
        tag_threshold=float(thresholds["tag"]),
        alert_threshold=float(thresholds["alert"]),
        recipients=tuple(data.get("recipients", ())),
        source=str(path),
        groups=tuple(
            Group(
                id=group["id"],
                role=group["role"],
                terms=tuple(_term(entry, weight=1.0) for entry in group["terms"]),
                note=group.get("note", ""),
            )
            for group in data.get("groups", ())
        ),
        rules=tuple(
            Rule(
                id=rule["id"],
                slots=tuple(tuple(slot) for slot in rule["slots"]),
                window=int(rule.get("window", 1)),
                weight=float(rule["weight"]),
                note=rule.get("note", ""),
                where=rule.get("where", "all"),
                across_sentences=bool(rule.get("across_sentences", False)),
            )
            for rule in data.get("rules", ())
        ),
        bias=float(scoring.get("bias", 0.0)),
        require=tuple(scoring.get("require", ())),
        surge=_surge(data.get("surge", {})),
    )
    return profile, lines.line(("id",))


def _surge(entry: dict[str, Any]) -> SurgeRule:
    default = SurgeRule()
    return SurgeRule(
        enabled=bool(entry.get("enabled", default.enabled)),
        ratio=float(entry.get("ratio", default.ratio)),
        min_articles=int(entry.get("min_articles", default.min_articles)),
    )


@functools.cache
def _validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _problem(at: tuple[str | int, ...], path: Path, lines: LineIndex, message: str) -> Problem:
    line = lines.line(at)
    return at, line, f"{path}:{line}: {dotted(at)}: {message}"


def _semantic_problems(data: dict[str, Any], path: Path, lines: LineIndex) -> Iterator[Problem]:
    """What the schema cannot say: thresholds in order, terms with words, no term twice, rules that
    name groups which exist."""
    if "terms" not in data and "rules" not in data:
        yield _problem((), path, lines, "a profile needs weighted terms, or groups and rules")
    elif "terms" in data and "rules" in data:
        yield _problem(("terms",), path, lines, "a profile of rules does not use weighted terms: drop one or the other")
    thresholds = data["thresholds"]
    if thresholds["alert"] < thresholds["tag"]:
        yield _problem(("thresholds", "alert"), path, lines, f"below the tag threshold ({thresholds['tag']})")
    # One spelling, one term: in a weighted profile two terms would count the same words twice; in
    # groups a word would stand for two sides of the story at once.
    first: dict[tuple[str, ...], tuple[int | str, int]] = {}
    places: list[tuple[tuple[str | int, ...], int | str, dict[str, Any]]] = [
        (("terms", index), index, entry) for index, entry in enumerate(data.get("terms", ()))
    ]
    for number, group in enumerate(data.get("groups", ())):
        places.extend(
            (("groups", number, "terms", index), group["id"], entry) for index, entry in enumerate(group["terms"])
        )
    for where, owner, entry in places:
        spellings = [("text", entry["text"])] + [
            (variant, value) for variant, value in enumerate(entry.get("variants", []))
        ]
        for place, value in spellings:
            at = (*where, place) if place == "text" else (*where, "variants", place)
            tokens = term_key(value)
            if not tokens:
                yield _problem(at, path, lines, f"{value!r} has no word to match")
                continue
            if has_short_wildcard(value):
                yield _problem(at, path, lines, f"{value!r}: a word ending in * needs at least 3 letters before it")
            if tokens in first and first[tokens][0] != owner:
                other, other_line = first[tokens]
                named = f"terms[{other}]" if isinstance(other, int) else f"group {other!r}"
                message = f"{value!r} matches the same words as {named} at line {other_line}: merge them"
                yield _problem(at, path, lines, message)
            else:
                first.setdefault(tokens, (owner, lines.line(at)))
    yield from _rule_problems(data, path, lines)


def _rule_problems(data: dict[str, Any], path: Path, lines: LineIndex) -> Iterator[Problem]:
    groups = [group["id"] for group in data.get("groups", ())]
    for index, group in enumerate(groups):
        if group in groups[:index]:
            yield _problem(("groups", index, "id"), path, lines, f"duplicate group id {group!r}")
    rules = [rule["id"] for rule in data.get("rules", ())]
    for index, rule in enumerate(data.get("rules", ())):
        if rule["id"] in rules[:index]:
            yield _problem(("rules", index, "id"), path, lines, f"duplicate rule id {rule['id']!r}")
        for slot, members in enumerate(rule["slots"]):
            for member, group in enumerate(members):
                if group not in groups:
                    at: tuple[str | int, ...] = ("rules", index, "slots", slot, member)
                    yield _problem(at, path, lines, f"no group {group!r} (groups: {', '.join(groups) or 'none'})")
    for index, rule_id in enumerate(data.get("scoring", {}).get("require", ())):
        if rule_id not in rules:
            yield _problem(("scoring", "require", index), path, lines, f"no rule {rule_id!r}")
