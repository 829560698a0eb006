"""The words each outlet prefers on a topic: the log-odds ratio with an informative Dirichlet prior
(Monroe, Colaresi and Quinn, "Fightin' Words", Political Analysis 16(4), 2008, section 3.5).

Tokens. Each text is cut into clauses at punctuation and into words (letters only: digits go). A word
is normalised (:func:`pipeline.arabic.normalize.normalize_text`: hamza and alef forms, ta marbuta, alef
maqsura, diacritics, tatweel), loses an attached conjunction or preposition (``وال`` ``بال`` ``لل``
always, when a word is left; ``و`` ``ف`` ``ب`` ``ل`` ``ك`` only when what is left is clearly the more
common word, so ``وقال`` → ``قال`` but ``وزير`` stays) and is reduced to its Snowball stem the way
topic matching does it (:mod:`pipeline.arabic.lexicon`). Stop words (the profile builder's list of
function words, reporting verbs, time words and newsroom boilerplate, with or without a clitic) and
one-letter words are dropped and break phrases. A *term* is a stem or a pair of adjacent stems in one
clause, so ``التدخل الروسي`` counts as a phrase beside its two words.

Statistic. For outlet ``i`` against all the other outlets ``j`` of the topic, with ``y`` term counts,
``n`` total counts, and the prior ``α_w = α0 · y_w / n`` taken from the whole topic's counts, scaled to
``α0 = PRIOR_SCALE · n`` (by default the pooled counts themselves, ``α_w = y_w``):

    δ_w = log((y_iw + α_w) / (n_i + α0 − y_iw − α_w)) − log((y_jw + α_w) / (n_j + α0 − y_jw − α_w))
    σ²_w ≈ 1 / (y_iw + α_w) + 1 / (y_jw + α_w)
    z_w = δ_w / σ_w

Terms are ranked by ``z``: high when the outlet uses a term both more often than the others and often
enough for that to be more than chance. A word shared at equal rates scores near zero; a word only one
outlet uses once or twice is held back by the variance. Reported are the terms with ``z ≥ 1.96`` (the
paper's threshold) that occur in at least ``min_docs`` of the outlet's articles (one article's obsession
is not an outlet's vocabulary); a word that is no longer distinctive once a listed phrase's occurrences
are taken out gives way to the phrase, and a phrase that only repeats a listed word next to an
undistinctive one is left out. An
outlet with a handful of articles may have no term that passes: that is the answer, not a failure.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import wordfreq  # type: ignore[import-untyped, unused-ignore]

from pipeline.arabic.lexicon import ARTICLE, CLITIC_PREFIXES, STOP_WORDS, stem, strip_article
from pipeline.arabic.normalize import ARABIC_MARKS, normalize_text

__all__ = [
    "MIN_DOCS",
    "MIN_Z",
    "PRIOR_SCALE",
    "Comparison",
    "Score",
    "TermCounts",
    "count_terms",
    "display_forms",
    "distinctive_terms",
    "log_odds",
    "name_keys",
]

# α0 = PRIOR_SCALE × (tokens in the topic sample): the prior is the topic's pooled counts, as strong as
# the data. A fixed α0 would be strong on a small topic and vanish on a large one, and a vanishing prior
# buries the words one outlet uses and the others never do (their variance is 1/α_w).
PRIOR_SCALE = 1.0
MIN_DOCS = 2
MIN_Z = 1.96  # a term is reported only when its z would pass a two-sided 5 % test

# Words the profile builder's list lacks that carry nothing about framing in news copy.
_EXTRA_STOP_TEXT = """
    بحسب حسب وفق ضمن إثر اثر عقب جراء ذاته نفسه نفسها أنفسهم لدي لديه لديها إذا إذ بينهم بينها عنده أكثرية
    الذي التي حيث كذلك أيضاً وهو وهي التابعة التابع أمام يذكر لكنها لكنهم إنما أما حتى كلا كلتا
    واحد واحدة اثنان اثنين اثنتين ثلاث أربع خمس ست ستة سبع سبعة ثمان ثماني ثمانية تسع تسعة عشر عشرة
    عشرون عشرين ثلاثون ثلاثين أربعون أربعين خمسون خمسين ستون ستين مئة مائة مئتين مئتي مليون ملايين مليار
"""
_EXTRA_STOP = frozenset(normalize_text(word) for word in _EXTRA_STOP_TEXT.split())
_STOP = STOP_WORDS | _EXTRA_STOP
_CLEAN = str.maketrans(dict.fromkeys(ARABIC_MARKS + "\u0640\u200b\u200c\u200d\u200e\u200f\u00ad\ufeff"))
_CLAUSE = re.compile(r"[.,،;؛:!?؟\"«»()\[\]{}\n/|…\-–—_*]+")
_WORD = re.compile(r"[^\W\d_]+")
_CLEARLY_COMMONER = 0.3  # zipf units, as the profile builder uses


@functools.lru_cache(maxsize=1 << 16)
def _zipf(word: str) -> float:
    return float(wordfreq.zipf_frequency(word, "ar"))


@functools.lru_cache(maxsize=1 << 17)
def _bare(word: str) -> tuple[str, str]:
    """A normalised word without its attached conjunction/preposition, and the prefix taken off
    (``والجيش`` → ``الجيش``, ``للتدخل`` → ``التدخل``, ``وقال`` → ``قال``; ``وزير`` stays)."""
    for prefix in CLITIC_PREFIXES:
        if prefix == ARTICLE or not word.startswith(prefix):
            continue
        rest = word[len(prefix) :]
        if prefix.endswith((ARTICLE, "لل")):
            # An article-bearing prefix: unambiguous as long as a real word is left.
            if len(rest) >= 2:
                return ARTICLE + rest, prefix
            continue
        if len(rest) >= 3 and _zipf(rest) >= _zipf(word) + _CLEARLY_COMMONER:
            return rest, prefix
    return word, ""


_PLAIN_PREFIXES = tuple(p for p in CLITIC_PREFIXES if not p.endswith((ARTICLE, "لل")))


def _is_stop(normal: str, bare: str) -> bool:
    # "فإن" and "وهو" are stop words with a clitic on.
    return (
        normal in _STOP
        or bare in _STOP
        or any(normal.startswith(p) and normal[len(p) :] in _STOP for p in _PLAIN_PREFIXES)
    )


@functools.lru_cache(maxsize=1 << 17)
def _token(surface: str) -> tuple[str, str] | None:
    """(stem key, display form) of a word as written, or None for a stop word or a lone letter."""
    normal = normalize_text(surface)
    bare, prefix = _bare(normal)
    if len(bare) < 2 or _is_stop(normal, bare):
        return None
    # The display keeps the writer's spelling (hamza, ta marbuta) minus the clitic taken off.
    if len(surface) != len(normal):
        display = bare
    elif prefix.endswith("لل"):
        display = ARTICLE + surface[len(prefix) :]  # ل + ال is written لل: the article comes back
    elif prefix.endswith(ARTICLE):
        display = surface[len(prefix) - 2 :]
    else:
        display = surface[len(prefix) :]
    return stem(strip_article(bare)), display


def _terms_of(text: str) -> Iterable[tuple[str, str]]:
    """(key, display) for every word and adjacent pair of words of ``text``, in order."""
    for clause in _CLAUSE.split(text.translate(_CLEAN)):
        previous: tuple[str, str] | None = None
        for surface in _WORD.findall(clause):
            token = _token(surface)
            if token is None:
                previous = None
                continue
            yield token
            if previous is not None:
                yield f"{previous[0]} {token[0]}", f"{previous[1]} {token[1]}"
            previous = token


@dataclass(slots=True)
class TermCounts:
    """One outlet's term counts over its sampled articles."""

    articles: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    docs: Counter[str] = field(default_factory=Counter)  # articles a term occurs in

    @property
    def tokens(self) -> int:
        return sum(self.counts.values())


def count_terms(texts: Iterable[str]) -> TermCounts:
    found = TermCounts()
    for text in texts:
        keys = [key for key, _ in _terms_of(text)]
        found.articles += 1
        found.counts.update(keys)
        found.docs.update(set(keys))
    return found


def display_forms(texts: Iterable[str], keys: set[str]) -> dict[str, str]:
    """The commonest way each of ``keys`` is written in ``texts``."""
    seen: dict[str, Counter[str]] = {}
    for text in texts:
        for key, display in _terms_of(text):
            if key in keys:
                seen.setdefault(key, Counter())[display] += 1
    return {key: forms.most_common(1)[0][0] for key, forms in seen.items()}


@dataclass(frozen=True, slots=True)
class Score:
    key: str
    z: float
    delta: float
    count: int  # in this outlet's sample
    rest_count: int  # in the other outlets' samples
    docs: int
    rate: float  # per 10,000 tokens of this outlet
    rest_rate: float  # per 10,000 tokens of the other outlets


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every outlet's terms scored against the other outlets', best first."""

    alpha0: float
    tokens: int  # n: the whole topic sample
    sizes: dict[str, int]  # n_i per outlet
    scores: dict[str, list[Score]]

    def z(self, outlet: str, y_i: int, y_j: int) -> tuple[float, float]:
        """(δ, z) of a term counted ``y_i`` times in ``outlet`` and ``y_j`` times elsewhere."""
        n, n_i = self.tokens, self.sizes[outlet]
        n_j = n - n_i
        a = self.alpha0 * (y_i + y_j) / n if n else 0.0
        if a <= 0:
            return 0.0, 0.0
        delta = math.log((y_i + a) / (n_i + self.alpha0 - y_i - a)) - math.log(
            (y_j + a) / (n_j + self.alpha0 - y_j - a)
        )
        return delta, delta / math.sqrt(1 / (y_i + a) + 1 / (y_j + a))


def log_odds(by_outlet: Mapping[str, TermCounts], *, prior_scale: float = PRIOR_SCALE) -> Comparison:
    """Every term of each outlet scored against all the other outlets (formula in the module
    docstring). Needs two outlets with words; otherwise every list is empty."""
    totals: Counter[str] = Counter()
    for counts in by_outlet.values():
        totals.update(counts.counts)
    n = sum(totals.values())
    sizes = {outlet: counts.tokens for outlet, counts in by_outlet.items()}
    comparison = Comparison(prior_scale * n, n, sizes, {outlet: [] for outlet in by_outlet})
    if sum(1 for size in sizes.values() if size) < 2:
        return comparison
    for outlet, counts in by_outlet.items():
        n_i, n_j = sizes[outlet], n - sizes[outlet]
        scores = comparison.scores[outlet]
        for key, y_i in counts.counts.items():
            y_j = totals[key] - y_i
            delta, z = comparison.z(outlet, y_i, y_j)
            scores.append(Score(key, z, delta, y_i, y_j, counts.docs[key], 1e4 * y_i / n_i, 1e4 * y_j / n_j))
        scores.sort(key=lambda s: (-s.z, s.key))
    return comparison


def distinctive_terms(
    comparison: Comparison,
    outlet: str,
    counts: TermCounts,
    *,
    top: int = 10,
    min_docs: int = MIN_DOCS,
    min_z: float = MIN_Z,
    exclude: frozenset[str] = frozenset(),
) -> list[Score]:
    """The ``top`` terms ``outlet`` over-uses: ``z ≥ min_z``, in ``min_docs`` of its articles (fewer
    when it has fewer), not only words of ``exclude`` (outlet names), and no term that only echoes another:
    a word distinctive only through a listed phrase (``القوات`` through ``القوات الحليفة``), or a phrase that
    only repeats a listed word next to an undistinctive one (``تقدم الميليشيات`` after ``الميليشيات``)."""
    need = min(min_docs, counts.articles)
    candidates = [
        s
        for s in comparison.scores[outlet]
        if s.z >= min_z and s.docs >= need and not all(part in exclude for part in s.key.split(" "))
    ][: top * 4]
    phrases = [s for s in candidates if " " in s.key]

    def echoes_a_phrase(word: Score) -> bool:
        # Take the phrase's occurrences out of the word's, on both sides, and score what is left.
        return any(
            comparison.z(outlet, word.count - p.count, word.rest_count - p.rest_count)[1] < min_z
            for p in phrases
            if word.key in p.key.split(" ")
        )

    kept = [s for s in candidates if " " in s.key or not echoes_a_phrase(s)]
    word_z = {s.key: s.z for s in comparison.scores[outlet] if " " not in s.key}
    listed: set[str] = set()
    final = []
    for s in kept:
        words = s.key.split(" ")
        fresh = [w for w in words if w not in listed]
        if len(words) > 1 and len(fresh) < len(words) and all(word_z.get(w, 0.0) < min_z for w in fresh):
            continue
        final.append(s)
        listed.update(words)
    return final[:top]


def name_keys(names: Iterable[str]) -> frozenset[str]:
    """Stem keys of the words of outlet names: an outlet's own name is not its vocabulary."""
    return frozenset(key for name in names for key, _ in _terms_of(name) if " " not in key)
