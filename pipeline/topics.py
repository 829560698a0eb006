"""Topic profiles: load them, match articles against them, explain a match.

A profile (``seeds/profiles/*.yaml``, validated by ``schemas/profile.schema.json``) is a list of
weighted terms — people, organisations, places, events, phrases, keywords — each with optional
spelling variants, and two thresholds.

Matching
    Title and body go through :func:`~pipeline.normalize.normalize_text`, then split into word
    tokens (sentence punctuation breaks a phrase). A text token matches a term token when, after
    dropping attached clitics (``و ف`` then ``ب ك ل`` then the article ``ال``, in any valid
    combination: ``وال بال فال لل كال وب ول وبال ولل`` …), the two are equal; the term's own
    leading ``ال`` is dropped too, so ``الحرس`` matches ``والحرس``, ``بالحرس``, ``للحرس``,
    ``حرس``. Terms of kind ``keyword``, ``phrase`` and ``event`` also match through the Snowball
    Arabic stemmer (``الغارات`` matches ``غارة``); names (``person``, ``organisation``, ``place``)
    never do, so ``روسيا`` does not match ``الروسي``. A multi-word term matches consecutive
    tokens, each under the same rules. Overlapping matches of one term (a name and its short
    variant) count once.

Score (0–10, two decimals)
    * ``n`` = body occurrences + 2 × title occurrences (:data:`TITLE_FACTOR`);
    * each matched term gives ``weight × (1 − e^(−n/1.5))`` (:data:`SATURATION`): its first
      mention gives half its weight, repeats add less and less, never more than the weight;
    * breadth ``B = 1 − 0.5·e^(−b/3)`` with ``b`` = (distinct terms − 1) + (distinct kinds − 1):
      one term alone counts half, five terms of three kinds count ~93 %;
    * evidence ``E = B × Σ contributions``; score ``= 10 × (1 − e^(−E/10))`` (:data:`SCALE`).
      Evidence 5 → 3.9, 10 → 6.3, 20 → 8.6, 30 → 9.5.

    So one word repeated twenty times scores at most ``10 × (1 − e^(−w/20))``, while five
    distinct terms mentioned once beat it. A profile's ``tag`` and ``alert`` thresholds are on the
    same 0–10 scale.

Compiled matchers are cached per profile object, so the extraction workers pay the compilation
once; matching a 600-word article against a 150-term profile takes well under 2 ms.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import Stemmer  # type: ignore[import-not-found, unused-ignore]

from pipeline.errors import ConfigError
from pipeline.feeds import _dotted, _LineIndex, _schema_errors, _sort_key, read_yaml_mapping
from pipeline.normalize import normalize_text

__all__ = [
    "KINDS",
    "NAME_KINDS",
    "SCHEMA_PATH",
    "Match",
    "Profile",
    "Term",
    "explain",
    "load_profile",
    "load_profiles",
    "match_profile",
    "tag_article",
    "stem_key",
    "term_key",
    "term_tokens",
    "token_forms",
]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "profile.schema.json"

KINDS = ("person", "organisation", "place", "event", "phrase", "keyword")
NAME_KINDS = frozenset({"person", "organisation", "place"})  # matched exactly, never stemmed

TITLE_FACTOR = 2.0
SATURATION = 1.5
SCALE = 10.0
MAX_SCORE = 10.0

Problem = tuple[tuple[str | int, ...], int, str]


@dataclass(frozen=True, slots=True)
class Term:
    """One entry of a profile."""

    text: str  # the canonical form shown to analysts, e.g. "قاسم سليماني"
    weight: float
    kind: str  # person | organisation | place | event | phrase | keyword
    variants: tuple[str, ...] = ()  # other spellings


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    title: str
    language: str
    terms: tuple[Term, ...]
    tag_threshold: float
    alert_threshold: float
    recipients: tuple[str, ...] = ()
    source: str = ""  # file it came from


@dataclass(frozen=True, slots=True)
class Match:
    profile: str
    score: float
    terms: tuple[str, ...]  # canonical texts of matched terms, best first
    details: tuple[tuple[str, float, str, int], ...]  # (term, weight, "title"|"body", occurrences)


# --- tokens and their forms ---------------------------------------------------------------------

# A word, or a punctuation mark that ends a clause: phrases never match across one.
_BREAKS = frozenset('.!?;:"()[]')
_TOKEN = re.compile(r"\w+|[.!?;:\"()\[\]]")
_ARTICLE = "ال"
MIN_REMAINDER = 2  # a clitic is only taken off a token that keeps at least two letters


def _clitic_prefixes() -> tuple[str, ...]:
    # Conjunction, then preposition, then article, each optional. Longest first.
    found: set[str] = set()
    for conjunction in ("", "و", "ف"):
        for preposition in ("", "ب", "ك", "ل"):
            for article in ("", _ARTICLE):
                # ل + ال is written لل.
                prefix = conjunction + ("لل" if preposition == "ل" and article else preposition + article)
                if prefix:
                    found.add(prefix)
    return tuple(sorted(found, key=lambda prefix: (-len(prefix), prefix)))


CLITIC_PREFIXES = _clitic_prefixes()

_stemmer_lock = threading.Lock()
_stemmer = Stemmer.Stemmer("arabic")


def _stem(bare: str) -> str:
    # normalize_text folds ة into ه, which the Snowball stemmer reads as a pronoun and keeps; it
    # also strips prefixes differently with and without the article. Giving it the article and
    # the ta marbuta back makes غارة, غارات and الغارات (and روسية, الروسي, روس) agree.
    if len(bare) > 3 and bare.endswith("ه"):
        bare = bare[:-1] + "ة"
    with _stemmer_lock:  # a Stemmer object is not safe to share between threads
        stem: str = _stemmer.stemWord(_ARTICLE + bare)
    return stem


def _strip_article(token: str) -> str:
    if token.startswith(_ARTICLE) and len(token) - 2 >= MIN_REMAINDER:
        return token[2:]
    return token


@functools.lru_cache(maxsize=1 << 16)
def token_forms(token: str) -> tuple[str, ...]:
    """Every key a normalised text token can match: itself, itself minus each clitic prefix it
    may carry, and (prefixed ``~``) the stems of those forms that have no article."""
    forms = [token]
    forms.extend(
        token[len(prefix) :]
        for prefix in CLITIC_PREFIXES
        if token.startswith(prefix) and len(token) - len(prefix) >= MIN_REMAINDER
    )
    keys = dict.fromkeys(forms)
    for form in forms:
        if not form.startswith(_ARTICLE):
            keys["~" + _stem(form)] = None
    return tuple(keys)


def term_tokens(text: str) -> list[str]:
    """The normalised word tokens of a term or variant (punctuation dropped)."""
    return [token for token in _TOKEN.findall(normalize_text(text)) if token not in _BREAKS]


def term_key(text: str) -> tuple[str, ...]:
    """The words a term or variant matches on: its normalised tokens without their article."""
    return tuple(_strip_article(token) for token in term_tokens(text))


def stem_key(token: str) -> str:
    """The stem key a keyword token matches by (``~`` + Snowball stem of the bare word)."""
    return "~" + _stem(_strip_article(token))


def _slot(token: str, *, stem: bool) -> frozenset[str]:
    bare = _strip_article(token)
    return frozenset({bare, stem_key(token)} if stem else {bare})


def _tokens(text: str) -> list[str]:
    """The tokens of normalised ``text``; a clause break is the empty string."""
    return ["" if token in _BREAKS else token for token in _TOKEN.findall(text)]


# --- compiled profiles --------------------------------------------------------------------------


_HITS_SIZE = 200_000  # tokens remembered per profile before the memo starts over


@dataclass(frozen=True, slots=True)
class _Compiled:
    profile: Profile
    vocabulary: frozenset[str]
    # first-slot key -> (term index, the slots after the first)
    starts: dict[str, tuple[tuple[int, tuple[frozenset[str], ...]], ...]]
    # token -> the profile's keys it matches (None: none). News vocabulary is Zipfian, so after a
    # few hundred articles nearly every token is a single dict lookup.
    hits: dict[str, frozenset[str] | None] = field(default_factory=dict)

    def keys_of(self, token: str) -> frozenset[str] | None:
        try:
            return self.hits[token]
        except KeyError:
            pass
        if len(self.hits) >= _HITS_SIZE:
            self.hits.clear()
        keys = [key for key in token_forms(token) if key in self.vocabulary] if token else []
        found = self.hits[token] = frozenset(keys) if keys else None
        return found


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
            entry = _build(profile)
            if len(_by_value) >= _CACHE_SIZE:
                _by_value.clear()
            _by_value[profile] = entry
        if len(_by_identity) >= _CACHE_SIZE:
            _by_identity.clear()
        _by_identity[id(profile)] = (profile, entry)
    return entry


def _build(profile: Profile) -> _Compiled:
    starts: dict[str, list[tuple[int, tuple[frozenset[str], ...]]]] = {}
    vocabulary: set[str] = set()
    for index, term in enumerate(profile.terms):
        stem = term.kind not in NAME_KINDS
        seen: set[tuple[frozenset[str], ...]] = set()
        for spelling in (term.text, *term.variants):
            tokens = term_tokens(spelling)
            if not tokens:
                continue
            slots = tuple(_slot(token, stem=stem) for token in tokens)
            if slots in seen:
                continue
            seen.add(slots)
            for slot in slots:
                vocabulary.update(slot)
            for key in slots[0]:
                starts.setdefault(key, []).append((index, slots[1:]))
    return _Compiled(
        profile=profile,
        vocabulary=frozenset(vocabulary),
        starts={key: tuple(found) for key, found in starts.items()},
    )


def _count(compiled: _Compiled, tokens: list[str]) -> dict[int, int]:
    """Occurrences of each term (by index) in one region; overlapping matches of a term count once."""
    keys_of = compiled.keys_of
    present = [keys_of(token) for token in tokens]
    spans: dict[int, list[tuple[int, int]]] = {}
    starts = compiled.starts
    size = len(present)
    for start, keys in enumerate(present):
        if keys is None:
            continue
        for key in keys:
            for index, rest in starts.get(key, ()):
                if not rest:
                    spans.setdefault(index, []).append((start, start + 1))
                    continue
                end = start + 1 + len(rest)
                if end > size:
                    continue
                if all(_fits(slot, present[start + 1 + offset]) for offset, slot in enumerate(rest)):
                    spans.setdefault(index, []).append((start, end))
    counts: dict[int, int] = {}
    for index, matched in spans.items():
        matched.sort(key=lambda span: (span[0], -span[1]))
        last_end, count = -1, 0
        for start, end in matched:
            if start >= last_end:
                count += 1
                last_end = end
        counts[index] = count
    return counts


def _fits(slot: frozenset[str], keys: frozenset[str] | None) -> bool:
    return keys is not None and not slot.isdisjoint(keys)


@dataclass(frozen=True, slots=True)
class _Evaluation:
    score: float
    evidence: float
    breadth: float
    # (term index, title occurrences, body occurrences, contribution), best first
    rows: tuple[tuple[int, int, int, float], ...]


def _evaluate(compiled: _Compiled, title: list[str], body: list[str]) -> _Evaluation:
    in_title = _count(compiled, title)
    in_body = _count(compiled, body)
    terms = compiled.profile.terms
    raw: list[tuple[int, int, int, float]] = []
    for index in sorted(in_title.keys() | in_body.keys()):
        title_count, body_count = in_title.get(index, 0), in_body.get(index, 0)
        occurrences = body_count + TITLE_FACTOR * title_count
        value = terms[index].weight * (1.0 - math.exp(-occurrences / SATURATION))
        raw.append((index, title_count, body_count, value))
    if not raw:
        return _Evaluation(score=0.0, evidence=0.0, breadth=0.0, rows=())
    spread = (len(raw) - 1) + (len({terms[index].kind for index, *_ in raw}) - 1)
    breadth = 1.0 - 0.5 * math.exp(-spread / 3.0)
    rows = sorted(
        ((index, title_count, body_count, value * breadth) for index, title_count, body_count, value in raw),
        key=lambda row: (-row[3], row[0]),
    )
    evidence = sum(row[3] for row in rows)
    score = round(MAX_SCORE * (1.0 - math.exp(-evidence / SCALE)), 2)
    return _Evaluation(score=score, evidence=evidence, breadth=breadth, rows=tuple(rows))


def _match(compiled: _Compiled, evaluation: _Evaluation) -> Match:
    terms = compiled.profile.terms
    details: list[tuple[str, float, str, int]] = []
    for index, title_count, body_count, _ in evaluation.rows:
        term = terms[index]
        if title_count:
            details.append((term.text, term.weight, "title", title_count))
        if body_count:
            details.append((term.text, term.weight, "body", body_count))
    return Match(
        profile=compiled.profile.id,
        score=evaluation.score,
        terms=tuple(terms[index].text for index, *_ in evaluation.rows),
        details=tuple(details),
    )


# --- public matching API ------------------------------------------------------------------------


def match_profile(profile: Profile, *, title: str, body: str) -> Match:
    """Score one article against one profile (see the module docstring); never raises on text."""
    compiled = _compile(profile)
    evaluation = _evaluate(compiled, _tokens(normalize_text(title)), _tokens(normalize_text(body)))
    return _match(compiled, evaluation)


def tag_article(profiles: Sequence[Profile], *, title: str, body: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The article record's ``topics`` and ``topic_matches``: the profiles whose score reaches
    their tag threshold, in the order given, each with its score and matched terms."""
    title_tokens = _tokens(normalize_text(title))
    body_tokens = _tokens(normalize_text(body))
    topics: list[str] = []
    matches: list[dict[str, Any]] = []
    for profile in profiles:
        compiled = _compile(profile)
        match = _match(compiled, _evaluate(compiled, title_tokens, body_tokens))
        if match.score >= profile.tag_threshold:
            topics.append(profile.id)
            matches.append({"profile": profile.id, "score": match.score, "terms": list(match.terms)})
    return topics, matches


def explain(profile: Profile, *, title: str, body: str) -> dict[str, Any]:
    """Why an article scores what it does against ``profile``: JSON-ready.

    ``contribution`` is each term's share of the evidence (breadth included); the score is
    ``10 × (1 − e^(−evidence/10))``.
    """
    compiled = _compile(profile)
    evaluation = _evaluate(compiled, _tokens(normalize_text(title)), _tokens(normalize_text(body)))
    terms = []
    for index, title_count, body_count, contribution in evaluation.rows:
        term = profile.terms[index]
        where = [part for part, count in (("title", title_count), ("body", body_count)) if count]
        terms.append(
            {
                "term": term.text,
                "kind": term.kind,
                "weight": term.weight,
                "where": where,
                "occurrences": {"title": title_count, "body": body_count},
                "contribution": round(contribution, 3),
            }
        )
    return {
        "profile": profile.id,
        "title": profile.title,
        "score": evaluation.score,
        "threshold": profile.tag_threshold,
        "alert_threshold": profile.alert_threshold,
        "tagged": evaluation.score >= profile.tag_threshold,
        "alert": evaluation.score >= profile.alert_threshold,
        "evidence": round(evaluation.evidence, 3),
        "breadth": round(evaluation.breadth, 3),
        "scale": "0-10: score = 10 * (1 - exp(-evidence / 10))",
        "terms": terms,
    }


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
            word in it, one term listed twice, or an alert threshold below the tag threshold. The
            message names the file, the line and the field, one problem a line.
    """
    return _load(path)[0]


def _load(path: Path) -> tuple[Profile, int]:
    """The profile and the line of its id."""
    data, lines = read_yaml_mapping(path, what="profile", expected="a mapping with id, title and terms")
    found: list[Problem] = [
        error for err in _validator().iter_errors(data) for error in _schema_errors(err, path, lines)
    ]
    if not found:
        found.extend(_semantic_problems(data, path, lines))
    if found:
        found.sort(key=lambda error: (error[1], _sort_key(error[0])))
        raise ConfigError("\n".join(message for _, _, message in found))

    thresholds = data["thresholds"]
    profile = Profile(
        id=data["id"],
        title=data["title"],
        language=data.get("language", "ar"),
        terms=tuple(
            Term(
                text=entry["text"],
                weight=float(entry["weight"]),
                kind=entry["kind"],
                variants=tuple(entry.get("variants", ())),
            )
            for entry in data["terms"]
        ),
        tag_threshold=float(thresholds["tag"]),
        alert_threshold=float(thresholds["alert"]),
        recipients=tuple(data.get("recipients", ())),
        source=str(path),
    )
    return profile, lines.line(("id",))


@functools.cache
def _validator() -> Any:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _semantic_problems(data: dict[str, Any], path: Path, lines: _LineIndex) -> Iterator[Problem]:
    """What the schema cannot say: thresholds in order, terms with words, no term twice."""
    thresholds = data["thresholds"]
    if thresholds["alert"] < thresholds["tag"]:
        at: tuple[str | int, ...] = ("thresholds", "alert")
        line = lines.line(at)
        yield at, line, f"{path}:{line}: {_dotted(at)}: below the tag threshold ({thresholds['tag']})"
    first: dict[tuple[str, ...], tuple[int, int]] = {}
    for index, entry in enumerate(data["terms"]):
        spellings = [("text", entry["text"])] + [
            (variant, value) for variant, value in enumerate(entry.get("variants", []))
        ]
        for place, value in spellings:
            at = ("terms", index, place) if place == "text" else ("terms", index, "variants", place)
            line = lines.line(at)
            tokens = term_key(value)
            if not tokens:
                yield at, line, f"{path}:{line}: {_dotted(at)}: {value!r} has no word to match"
                continue
            if tokens in first and first[tokens][0] != index:
                other, other_line = first[tokens]
                message = f"{value!r} matches the same words as terms[{other}] at line {other_line}: merge them"
                yield at, line, f"{path}:{line}: {_dotted(at)}: {message}"
            else:
                first.setdefault(tokens, (index, line))
