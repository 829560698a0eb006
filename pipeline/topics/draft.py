"""Build a first draft of a topic profile from a report, for an analyst to review.

:func:`build_profile` takes the text of a report (an article, a briefing) and proposes the terms an
analyst would watch for:

1. **Candidates.** The report is cut into clauses at punctuation and into words; attached
   conjunctions and prepositions are taken off a word when what is left is clearly the more common
   word (``والجيش`` → ``الجيش``, ``لسليماني`` → ``سليماني``, but ``بشار`` stays); the article is
   kept for display and ignored for matching. Candidates are single words and runs of two or three
   words that neither start nor end with a stop word (:data:`STOP_WORDS`: function words and
   newsroom boilerplate such as ``وكالة`` or ``مصادر``). A phrase must occur twice, unless it is a
   known name or a noun with its nisba adjective (``الغارات الروسية``).
2. **Weights.** Each candidate scores ``tf × (8 − zipf)``: its count in the report times how rare
   it is in general Arabic (``wordfreq.zipf_frequency``; a phrase counts one zipf rarer per extra
   word than wordfreq's estimate). Names, rare in general use and repeated in a report, rise to the
   top; people, organisations and places count 1.5 times. A phrase absorbs its words when they
   hardly occur outside it. Weights are ``10 × sqrt(score / best score)``, rounded to a tenth, at
   least 0.5. A single word is kept only if it occurs twice.
3. **Kinds** come from small gazetteers (:data:`PLACES`, :data:`ORGANISATIONS`), titles and first
   names for people, event nouns (:data:`EVENT_HEADS`); anything else is a ``phrase`` (several
   words) or a ``keyword`` (one word).
4. **Variants.** Names get their Persian-letter (``ی``, ``ک``), alef-maqsura, bare-alef and ``ه``
   spellings — ``normalize_text`` folds those already, they are listed so reviewers see them
   covered — and the transliterations of :data:`WORD_VARIANTS` / :data:`TERM_VARIANTS`, which
   ``normalize_text`` cannot guess (``خامنه اي``, ``تهران``, ``حزب اللة``).
5. **Implied terms.** :data:`RELATED` adds the wording other outlets use for what the report
   describes (``الغارات الروسية`` for its Russian planes), each with a note saying why.

Thresholds default to the score of an article naming the three heaviest terms once each (tag) and
the five heaviest twice each (alert): a guess, since a sum of term weights says how much of the
report's vocabulary an article uses, not whether it tells the story. Given a labelled set,
:func:`calibrate_draft` reads them off it instead (:func:`pipeline.topics.evaluate.calibrate`).
:func:`dump_profile` writes the mapping as commented YAML; :func:`profile_id_from` makes a valid id of
a file name.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import wordfreq  # type: ignore[import-untyped, unused-ignore]
import yaml  # type: ignore[import-untyped, unused-ignore]

from pipeline.arabic.lexicon import CLITIC_PREFIXES, STOP_WORDS
from pipeline.arabic.normalize import ARABIC_MARKS, normalize_text
from pipeline.topics.evaluate import Labelled, LabelledReport, calibrate, evaluate_profile
from pipeline.topics.profiles import (
    MAX_SCORE,
    NAME_KINDS,
    Profile,
    Term,
    match_profile,
    stem_key,
    term_key,
)

__all__ = [
    "EVENT_HEADS",
    "ORGANISATIONS",
    "PLACES",
    "RELATED",
    "STOP_WORDS",
    "TERM_VARIANTS",
    "WORD_VARIANTS",
    "build_profile",
    "calibrate_draft",
    "dump_profile",
    "profile_id_from",
]

RARITY_CEILING = 8.0  # zipf of the commonest words is ~7.5: every word keeps some rarity
MIN_WEIGHT = 0.5
MAX_VARIANTS = 10
NAME_BOOST = 1.5  # people, organisations and places outrank other words of equal tf and rarity
MAX_KEYWORD_ZIPF = 5.8  # a single word at least this common is never a term


def _match_key(text: str) -> tuple[str, ...]:
    return term_key(text)


# --- gazetteers for kinds -----------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


PLACES = frozenset(
    _match_key(name)
    for name in _words(
        """
        سوريا سورية روسيا إيران العراق لبنان مصر الأردن تركيا السعودية الإمارات قطر اليمن إسرائيل فلسطين
        أمريكا أميركا أوكرانيا القرم موسكو طهران دمشق بغداد بيروت القاهرة أبوظبي عمان أنقرة الرياض حلب حمص
        حماة اللاذقية طرطوس إدلب درعا الرقة تدمر جنيف فيينا واشنطن كييف الغرب الساحل
        """
    )
) | frozenset(_match_key(name) for name in ("دير الزور", "الولايات المتحدة", "الساحل السوري", "قاعدة حميميم"))

ORGANISATIONS = frozenset(
    _match_key(name)
    for name in (
        "حزب الله",
        "الحرس الثوري",
        "فيلق القدس",
        "الأمم المتحدة",
        "مجلس الأمن",
        "تنظيم الدولة",
        "داعش",
        "جبهة النصرة",
        "الجيش السوري",
        "الجيش الحر",
        "الكرملين",
        "رويترز",
        "حلف الناتو",
        "الحكومة العراقية",
        "الحكومة الروسية",
        "الحكومة السورية",
        "المعارضة السورية",
    )
)

# Words that introduce a person's name in news copy.
_TITLES = frozenset(
    _match_key(word)[0]
    for word in _words("الرئيس وزير قائد المرشد أمين الجنرال اللواء العميد العقيد رئيس الشيخ العاهل الملك الأمير ولي")
)
_FIRST_NAMES = frozenset(
    _match_key(word)[0]
    for word in _words(
        """
        قاسم علي حسن حسين بشار سيرغي سيرجي فلاديمير عبد محمد أحمد سامح جواد ماهر فيصل عادل دميتري ميخائيل
        باراك جون حيدر نوري إبراهيم
        """
    )
)
# Nouns that make a phrase an event rather than a plain phrase.
EVENT_HEADS = frozenset(
    _match_key(word)[0]
    for word in _words(
        """
        الاتفاق اتفاق الهجوم هجوم زيارة الزيارة الغارات غارات الضربات ضربات التدخل تدخل القصف قصف المعارك
        معارك الحرب حرب اجتماع الاجتماع التنسيق تنسيق العملية عملية القمة المفاوضات مفاوضات الانتشار نشر
        إرسال وصول
        """
    )
)

# --- variants -----------------------------------------------------------------------------------

# Transliterations of one word that normalize_text cannot fold: different letters, not different
# shapes of one letter. Keyed by the normalised word; applied inside longer terms too.
WORD_VARIANTS: dict[str, tuple[str, ...]] = {
    normalize_text(word): variants
    for word, variants in {
        "سليماني": ("سلیمانی", "سليمانى"),
        "خامنئي": ("خامنه اي", "خامنه‌ای", "خامنئى", "خامنه ئي"),
        "لافروف": ("لاوروف",),  # the Persian press writes the v
        "سيرغي": ("سيرجي", "سيرگئی"),
        "بوتين": ("بوتن", "پوتین"),
        "طهران": ("تهران",),  # Persian spelling, common in Iranian Arabic-language outlets
        "موسكو": ("مسكو",),
        "طرطوس": ("طرطوش",),
        "حميميم": ("حمیمیم", "حميم"),
        "نصر الله": ("نصرالله",),
        "الميلشيات": ("الميليشيات", "المليشيات"),
        "ميلشيات": ("ميليشيات", "مليشيات"),
        "الميليشيات": ("المليشيات", "الميلشيات"),
    }.items()
}
# Whole-term alternatives: other spellings, and other names of the same thing.
TERM_VARIANTS: dict[str, tuple[str, ...]] = {
    normalize_text(term): variants
    for term, variants in {
        "حزب الله": ("حزب اللة", "حزبالله", "حزب‌الله"),
        "حسن نصر الله": ("حسن نصرالله",),
        "فيلق القدس": ("قوة القدس",),
        "الحرس الثوري": ("حرس الثورة", "الحرس الثوري الإيراني"),
        "علي خامنئي": ("علي خامنه اي", "آية الله خامنئي", "علي خامنه‌ای"),
        "بشار الأسد": ("بشار الاسد",),
        "تنظيم الدولة": ("داعش", "تنظيم الدولة الإسلامية"),
    }.items()
}


@dataclass(frozen=True, slots=True)
class _Related:
    triggers: tuple[tuple[str, ...], ...]  # match keys; one found in the report is enough
    text: str
    kind: str
    why: str


def _related(triggers: tuple[str, ...], text: str, kind: str, why: str) -> _Related:
    return _Related(tuple(_match_key(trigger) for trigger in triggers), text, kind, why)


# What other outlets call what the report describes. Only terms the report implies: a base it does
# not mention (Hmeimim, say) is for the analyst to add by hand.
RELATED: tuple[_Related, ...] = (
    _related(("الطائرات الروسية", "ضربات جوية"), "الغارات الروسية", "event", "the report's Russian planes striking"),
    _related(("الطائرات الروسية", "ضربات جوية"), "الضربات الجوية الروسية", "event", "the report's air strikes"),
    _related(("الطائرات الروسية",), "المقاتلات الروسية", "phrase", "the report's Russian planes"),
    _related(("الطائرات الروسية",), "القصف الروسي", "event", "the report's Russian planes bombing"),
    _related(("التدخل الروسي", "تدخل روسيا"), "التدخل الروسي", "event", "the report's Russian intervention"),
    _related(("التدخل الروسي", "تدخل روسيا"), "التدخل العسكري الروسي", "event", "the report's Russian intervention"),
    _related(
        ("مستشارين",), "المستشارين الإيرانيين", "phrase", "the report's Revolutionary Guard officers sent as advisers"
    ),
    _related(("مستشارين",), "الخبراء الإيرانيين", "phrase", "what Tehran calls its advisers"),
    _related(("قائد فيلق القدس",), "الجنرال الإيراني", "phrase", "how reports name Soleimani without naming him"),
    _related(("غرفة عمليات",), "غرفة العمليات المشتركة", "phrase", "the report's joint operations rooms"),
    _related(("قاعدة بحرية",), "القاعدة البحرية الروسية", "place", "the report's naval base at Tartus"),
    _related(("القوات الروسية",), "الجنود الروس", "phrase", "the report's Russian forces"),
)
# --- extraction ---------------------------------------------------------------------------------

_CLEAN = str.maketrans(dict.fromkeys(ARABIC_MARKS + "\u0640\u200c\u200d\u200e\u200f\u00ad\ufeff"))
_CLAUSE = re.compile(r"[.,،;؛:!?؟\"«»()\[\]\n]+")
_WORD = re.compile(r"[^\W\d_]+")
_ALEFS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا"})


@functools.lru_cache(maxsize=1 << 14)
def _zipf(text: str) -> float:
    return float(wordfreq.zipf_frequency(text, "ar"))


def _display_word(word: str) -> str:
    """``word`` without attached conjunction/preposition when the rest is clearly the commoner word.

    ``والجيش`` → ``الجيش`` and ``للروس`` → ``الروس``, but ``بشار``, ``فيلق`` and ``وصلوا`` stay:
    their "remainders" are rarer than they are (or too short to tell).
    """
    own = _zipf(word)
    best, best_zipf = word, own
    for prefix in CLITIC_PREFIXES:
        if not word.startswith(prefix) or len(word) - len(prefix) < 3 or prefix == "ال":
            continue
        rest = word[len(prefix) :]
        if prefix.endswith(("ال", "لل")):
            rest = "ال" + rest
        rest_zipf = _zipf(rest)
        if rest_zipf >= own + 0.3 and rest_zipf > best_zipf:
            best, best_zipf = rest, rest_zipf
    return best


@dataclass(slots=True)
class _Candidate:
    key: tuple[str, ...]
    count: int = 0
    forms: Counter[str] = field(default_factory=Counter)
    after_name: int = 0  # times it followed a first name or a title: a surname
    variants: list[str] = field(default_factory=list)
    kind: str = "keyword"
    score: float = 0.0
    note: str = ""

    @property
    def text(self) -> str:
        return self.forms.most_common(1)[0][0]


def _is_nisba_pair(words: list[str]) -> bool:
    # "الغارات الروسية", "الجيش السوري": a definite noun and its definite nisba adjective.
    if len(words) != 2 or not all(word.startswith("ال") for word in words):
        return False
    return normalize_text(words[1]).endswith(("ي", "يه", "يين", "يون"))


def _candidates(report: str) -> dict[tuple[str, ...], _Candidate]:
    found: dict[tuple[str, ...], _Candidate] = {}
    for clause in _CLAUSE.split(report.translate(_CLEAN)):
        words = [_display_word(word) for word in _WORD.findall(clause)]
        keys = [key[0] if (key := _match_key(word)) else "" for word in words]
        for size in (1, 2, 3):
            for start in range(len(words) - size + 1):
                if not _is_term_shape(words[start : start + size]):
                    continue
                key = tuple(keys[start : start + size])
                candidate = found.setdefault(key, _Candidate(key))
                candidate.count += 1
                candidate.forms[" ".join(words[start : start + size])] += 1
                if start and (keys[start - 1] in _FIRST_NAMES or keys[start - 1] in _TITLES):
                    candidate.after_name += 1
    return {key: candidate for key, candidate in found.items() if _keep(candidate)}


def _is_term_shape(raw: list[str]) -> bool:
    """Whether normalised ``words`` can be a term: no stop word anywhere, words of three letters or
    more, and no indefinite word after a definite one (``الإيراني الروسي لدعم`` runs into the next
    constituent; ``فيلق القدس``, ``بشار الأسد``, ``الحرس الثوري`` do not)."""
    words = [normalize_text(word) for word in raw]
    # A first name opening a name is not a stop word, though "علي" (Ali) is "على" (on) once
    # normalised: the raw word, with its alef maqsura, tells them apart.
    named = len(words) > 1 and raw[0] != "على" and _match_key(words[0])[:1] in {(name,) for name in _FIRST_NAMES}
    if any((_is_stop(word) and not (named and index == 0)) or len(word) < 3 for index, word in enumerate(words)):
        return False
    if len(words) == 1:
        key = _match_key(words[0])
        # Very common words (الله, بشكل) say nothing about a story on their own.
        common = _zipf(words[0]) >= MAX_KEYWORD_ZIPF
        return bool(key) and not common and key[0] not in _TITLES and key[0] not in _FIRST_NAMES
    definite = [word.startswith("ال") for word in words]
    return not any(before and not after for before, after in zip(definite, definite[1:], strict=False))


def _is_stop(word: str) -> bool:
    # "فإن" and "وهو" are stop words with a clitic on.
    return word in STOP_WORDS or any(
        word.startswith(prefix) and word[len(prefix) :] in STOP_WORDS
        for prefix in CLITIC_PREFIXES
        if not prefix.endswith(("ال", "لل"))
    )


def _keep(candidate: _Candidate) -> bool:
    if candidate.count >= 2:
        return True
    # Seen once: kept only when clearly a unit — a known name, a person's full name, or a noun with
    # its nisba adjective. A rare word used once is the writer's style, not the story.
    key = candidate.key
    return (
        key in PLACES
        or key in ORGANISATIONS
        or (len(key) > 1 and key[0] in _FIRST_NAMES)
        or _is_nisba_pair(candidate.text.split())
    )


def _merge_stems(found: dict[tuple[str, ...], _Candidate]) -> None:
    """One keyword per stem: الروسي, الروسية and الروس match each other, so they are one term."""
    groups: dict[str, list[_Candidate]] = {}
    for candidate in found.values():
        if candidate.kind == "keyword":
            groups.setdefault(stem_key(candidate.key[0]), []).append(candidate)
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda candidate: (-candidate.count, candidate.text))
        head = members[0]
        for other in members[1:]:
            head.count += other.count
            head.variants.append(other.text)
            del found[other.key]


def _rarity(candidate: _Candidate) -> float:
    # wordfreq estimates a phrase from its words, about as common as its rarest word; real phrases
    # are rarer than that, by roughly a zipf step per extra word.
    zipf = _zipf(candidate.text) - (len(candidate.key) - 1)
    return max(0.5, RARITY_CEILING - zipf)


def _contains(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    size = len(shorter)
    return any(longer[start : start + size] == shorter for start in range(len(longer) - size + 1))


def _drop_subsumed(found: dict[tuple[str, ...], _Candidate]) -> None:
    # "فيلق" seen only inside "فيلق القدس" is not a term of its own.
    for key in sorted(found, key=len):
        candidate = found[key]
        for other in found.values():
            if len(other.key) > len(key) and _contains(other.key, key) and other.count * 4 >= candidate.count * 3:
                del found[key]
                break


def _guess_kind(candidate: _Candidate) -> str:
    key = candidate.key
    if key in ORGANISATIONS:
        return "organisation"
    if key in PLACES:
        return "place"
    if len(key) > 1 and key[0] in _FIRST_NAMES:
        return "person"
    if len(key) == 1 and candidate.after_name and _zipf(candidate.text) < 4.5 and not _is_adjective(candidate.text):
        return "person"
    if len(key) > 1 and key[0] in EVENT_HEADS:
        return "event"
    return "phrase" if len(key) > 1 else "keyword"


def _is_adjective(word: str) -> bool:
    # A definite nisba ("السوري") follows titles ("الرئيس السوري") without being a name.
    return word.startswith("ال") and normalize_text(word).endswith(("ي", "يه"))


def _merge_full_names(found: dict[tuple[str, ...], _Candidate]) -> None:
    """Fold a surname into the person's full name: one term "قاسم سليماني" with "سليماني" as a
    variant, so that each mention counts once."""
    for key, candidate in list(found.items()):
        if candidate.kind != "person" or len(key) < 2 or key not in found:
            continue
        surname = found.get(key[-2:]) if len(key) > 2 else None
        surname = surname or found.get(key[-1:])
        if surname is None or surname is candidate or not surname.after_name:
            continue
        candidate.count = max(candidate.count, surname.count)
        candidate.variants.append(surname.text)
        candidate.after_name = max(candidate.after_name, surname.after_name)
        del found[surname.key]


# --- variants -----------------------------------------------------------------------------------


def _orthographic(text: str) -> list[str]:
    """The spellings of ``text`` a Persian keyboard, a lazy typist or another style guide gives."""
    return [
        text.replace("ي", "ی").replace("ى", "ی").replace("ك", "ک"),
        re.sub(r"ي\b", "ى", text),
        text.translate(_ALEFS),
        re.sub(r"ة\b", "ه", text),
    ]


def _transliterations(text: str) -> list[str]:
    out = list(TERM_VARIANTS.get(normalize_text(text), ()))
    words = text.split()
    for index, word in enumerate(words):
        for alternative in WORD_VARIANTS.get(normalize_text(word), ()):
            out.append(" ".join([*words[:index], alternative, *words[index + 1 :]]))
    return out


def _variants(candidate: _Candidate) -> list[str]:
    spellings: list[str] = []
    for base in (candidate.text, *candidate.variants):
        if base != candidate.text:
            spellings.append(base)
        spellings.extend(_transliterations(base))
        if candidate.kind in NAME_KINDS:
            spellings.extend(_orthographic(base))
    return list(dict.fromkeys(spelling for spelling in spellings if spelling != candidate.text))


# --- the profile --------------------------------------------------------------------------------


def build_profile(report_text: str, *, profile_id: str, title: str, max_terms: int = 120) -> dict[str, Any]:
    """A draft profile for the story ``report_text`` tells, as a mapping ready for :func:`dump_profile`.

    Raises:
        ValueError: the report has no candidate term at all (empty, or only stop words).
    """
    found = _candidates(report_text)
    if not found:
        raise ValueError("the report has no candidate term")
    _drop_subsumed(found)
    for candidate in found.values():
        candidate.kind = _guess_kind(candidate)
    _merge_full_names(found)
    _merge_stems(found)
    for candidate in found.values():
        # Entities carry a story more than the words around them do.
        boost = NAME_BOOST if candidate.kind in NAME_KINDS else 1.0
        candidate.score = candidate.count * _rarity(candidate) * boost
        candidate.note = f"{candidate.count}x in the report, general-usage zipf {_zipf(candidate.text):.1f}"
    ranked = sorted(found.values(), key=lambda candidate: (-candidate.score, candidate.text))
    best = ranked[0].score

    terms: list[dict[str, Any]] = []
    taken: set[tuple[str, ...]] = set()

    def add(text: str, weight: float, kind: str, variants: list[str], note: str) -> None:
        # A spelling may belong to one term only (load_profile refuses a profile where two terms
        # match the same words); folded spellings of the term itself (ی for ي…) stay, for reviewers.
        key = _match_key(text)
        if not key or key in taken:
            return
        own = {key}
        taken.add(key)
        shown: list[str] = []
        for variant in dict.fromkeys(variants):
            variant_key = _match_key(variant)
            if variant == text or not variant_key or (variant_key in taken and variant_key not in own):
                continue
            own.add(variant_key)
            taken.add(variant_key)
            shown.append(variant)
        entry: dict[str, Any] = {"text": text, "weight": weight, "kind": kind}
        if shown:
            entry["variants"] = shown[:MAX_VARIANTS]
        entry["note"] = note
        terms.append(entry)

    for candidate in ranked[: max(1, max_terms - len(RELATED))]:
        weight = max(MIN_WEIGHT, round(10 * math.sqrt(candidate.score / best), 1))
        add(candidate.text, weight, candidate.kind, _variants(candidate), candidate.note)

    # Implied terms count like a median term of the report: the analyst raises the telling ones.
    weights = sorted(term["weight"] for term in terms)
    implied_weight = weights[len(weights) // 2]
    report_key = _report_keys(report_text)
    for related in RELATED:
        if len(terms) >= max_terms:
            break
        if any(_in_report(trigger, report_key) for trigger in related.triggers):
            candidate = _Candidate(_match_key(related.text), kind=related.kind)
            candidate.forms[related.text] += 1
            add(related.text, implied_weight, related.kind, _variants(candidate), f"implied: {related.why}")

    tag, alert = _default_thresholds(terms)
    return {
        "id": profile_id,
        "title": title,
        "language": "ar",
        "description": f"Draft built from a {len(report_text.split())}-word report; review every term before use.",
        "thresholds": {"tag": tag, "alert": alert},
        "terms": terms,
    }


def _report_keys(report: str) -> list[str]:
    return [key[0] for word in _WORD.findall(report.translate(_CLEAN)) if (key := _match_key(_display_word(word)))]


def _in_report(trigger: tuple[str, ...], keys: list[str]) -> bool:
    return _contains(tuple(keys), trigger)


def _default_thresholds(terms: list[dict[str, Any]]) -> tuple[float, float]:
    """Tag: the score of an article naming the three heaviest terms once each. Alert: the five
    heaviest twice each. Both measured with the real matcher, so they stay true to the scoring."""
    profile = Profile(
        id="draft",
        title="draft",
        language="ar",
        terms=tuple(
            Term(term["text"], float(term["weight"]), term["kind"], tuple(term.get("variants", ()))) for term in terms
        ),
        tag_threshold=MAX_SCORE,
        alert_threshold=MAX_SCORE,
    )
    heaviest = sorted(terms, key=lambda term: -term["weight"])
    once = " . ".join(term["text"] for term in heaviest[:3])
    twice = " . ".join(term["text"] for term in heaviest[:5] for _ in range(2))
    tag = math.floor(match_profile(profile, title="", body=once).score * 10) / 10
    alert = math.floor(match_profile(profile, title="", body=twice).score * 10) / 10
    return max(tag, 0.1), max(alert, tag)


def calibrate_draft(
    mapping: dict[str, Any], draft: Profile, articles: Sequence[Labelled]
) -> tuple[dict[str, Any], LabelledReport, LabelledReport]:
    """``mapping`` with thresholds read off labelled ``articles`` (best F1 for the tag, 0.95 precision
    for the alert), and the draft's figures on them before and after."""
    before = evaluate_profile(draft, articles)
    tag, alert = calibrate(before.outcomes)
    calibrated = dict(mapping) | {"thresholds": {"tag": tag, "alert": alert}}
    after = evaluate_profile(
        Profile(
            id=draft.id,
            title=draft.title,
            language=draft.language,
            terms=draft.terms,
            tag_threshold=tag,
            alert_threshold=alert,
        ),
        articles,
    )
    return calibrated, before, after


_SLUG_SEPARATORS = re.compile(r"[^a-z0-9_]+")


def profile_id_from(name: str) -> str:
    """A valid profile id (``schemas/profile.schema.json``) made of a file name: lower case, accents
    dropped, anything but letters, digits and ``_`` turned into ``-``; ``profile-`` in front of a
    name too short or with no Latin letter or digit at all."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = _SLUG_SEPARATORS.sub("-", ascii_name).strip("-_")[:62]
    if len(slug) < 2:
        slug = f"profile-{slug}" if slug else "profile"
    return slug


# --- YAML ---------------------------------------------------------------------------------------


class _Flow(list[str]):
    """A list dumped on one line: variants and recipients read better as ``[a, b]``."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Flow, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def dump_profile(mapping: dict[str, Any]) -> str:
    """``mapping`` (a profile, as :func:`build_profile` returns it) as readable, commented YAML."""
    data = dict(mapping)
    if "recipients" in data:
        data["recipients"] = _Flow(data["recipients"])
    data["terms"] = [
        {key: (_Flow(value) if key == "variants" else value) for key, value in term.items()} for term in data["terms"]
    ]
    header = (
        f"# Topic profile {data.get('id', '')}: {data.get('title', '')}\n"
        f"# Drafted by pipeline.topics.draft on {datetime.now(UTC):%Y-%m-%d}. Review it term by term: drop noise,\n"
        "# fix kinds, merge variants, add what the report implies, and say why in a note.\n"
        "# Weights are (0, 10]; scores and thresholds are 0-10 (see pipeline/topics/weights.py). Kinds person,\n"
        "# organisation and place match exactly (clitics aside); event, phrase and keyword also by stem.\n"
        "# A sum of term weights measures vocabulary, not the story: check the thresholds on labelled articles\n"
        "# (`profile test FILE --labels DIR`, or build with --labels), and consider groups and rules instead\n"
        "# (seeds/profiles/iran-russia-assad.yaml).\n"
    )
    body = yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100, default_flow_style=False)
    # A blank line between terms keeps a long list reviewable.
    body = body.replace("\n- text:", "\n\n- text:")
    return header + body
