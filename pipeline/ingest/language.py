"""Language identification for article text, robust for Arabic against Persian and Urdu.

langdetect alone mixes up the Arabic-script languages, most on short text: a Persian headline typed
with Arabic ``ي``/``ك`` comes out as Arabic, a lone Arabic word as Urdu, and Pashto and Kurdish
(which it has no profile for) as Persian. So :func:`detect_language`:

1. looks only at a bounded prefix of the text (``prefix_chars``, cut back to a word boundary), so a
   multi-megabyte body costs the same as a short one;
2. counts letters by script; with fewer than :data:`MIN_LETTERS` letters the answer is ``"und"``;
3. if the Arabic script is not the most common script, returns langdetect's top language;
4. otherwise scores each Arabic-script language on two signals, each worth at most 1:

   * the *rate* of its telling letters among Arabic-script letters, relative to the rate seen in
     ordinary text of that language (so one quoted Persian name in an Arabic article barely moves
     the Persian score);
   * the rate of its frequent function words among Arabic-script words. Words are compared after
     folding ``ي ى`` → ``ی`` and ``ك`` → ``ک``, so Persian typed on an Arabic keyboard (and Arabic
     typed on a Persian one) is still recognised by its words;

5. when the best score does not clearly beat the runner-up, adds langdetect's probabilities as a
   third signal (a vote only for ``ar``, ``fa`` or a language with evidence of its own); a tie that
   remains goes to ``"ar"``, the one language that needs none of the extra letters.

Only the NFKC-normalised prefix is examined, never the whole text, and langdetect (a few
milliseconds a call) runs only for non-Arabic-script text and for undecided Arabic-script text.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import cache, lru_cache
from typing import Any, Final

from langdetect import DetectorFactory, LangDetectException  # type: ignore[import-untyped]
from langdetect.detector_factory import PROFILES_DIRECTORY  # type: ignore[import-untyped]

from pipeline.arabic.normalize import ARABIC_MARKS
from pipeline.errors import LanguageRejected

__all__ = ["MIN_LETTERS", "UNDETERMINED", "check_language", "detect_language"]

UNDETERMINED: Final = "und"
# Below this many letters no statistic means anything; "und" is more honest than a guess.
MIN_LETTERS: Final = 3

# Telling letters, by language. Persian's are split: پ چ ژ گ cannot be typed on an Arabic keyboard,
# while ی and ک are often mere keyboard artefacts (Arabic typed on a Persian layout), so they count
# a quarter as much.
_FA_STRONG: Final = frozenset("\u067e\u0686\u0698\u06af")  # پ چ ژ گ
_FA_WEAK: Final = frozenset("\u06cc\u06a9")  # ی ک
_FA_WEAK_WEIGHT: Final = 0.25
_UR_LETTERS: Final = frozenset("\u0679\u0688\u0691\u06ba\u06d2\u06d3\u06c1")  # ٹ ڈ ڑ ں ے ۓ ہ
# ھ marks Urdu aspirates (بھی، کھیل) but Kurdish writes every h with it and some Arabic sites emit
# it for ه, so it counts half.
_UR_HALF: Final = "\u06be"
_UR_HALF_WEIGHT: Final = 0.5
# ې and ۍ are as Pashto as the nine letters the usual lists give.
_PS_LETTERS: Final = frozenset("\u067c\u0681\u0685\u0689\u0693\u0696\u069a\u06ab\u06bc\u06d0\u06cd")
# ڤ is left out of Kurdish's letters: Levantine and Maghrebi outlets write it for /v/ in names.
_KU_LETTERS: Final = frozenset("\u06d5\u06ce\u06c6\u06b5\u0695")  # ە ێ ۆ ڵ ڕ
_AR_LETTERS: Final = frozenset("\u0629\u0623\u0625")  # ة أ إ: common in Arabic, rare elsewhere

# Rate of the telling letters in ordinary running text of each language, as a share of
# Arabic-script letters: observing this rate or more gives the full letter score of 1.
_LETTER_NORM: Final[dict[str, float]] = {"ar": 0.03, "fa": 0.05, "ur": 0.05, "ps": 0.03, "ku": 0.05}
# Likewise for the share of words that are function words (or, for Arabic, carry the article ال).
_WORD_NORM: Final[dict[str, float]] = {"ar": 0.30, "fa": 0.20, "ur": 0.20, "ps": 0.20, "ku": 0.15}
# Ranking order; ties go to the earlier language (Arabic first: it needs no extra letters).
_LANGS: Final = ("ar", "fa", "ur", "ps", "ku")

# Below this lead of the best score over the runner-up, or below this best score, the letter and
# word signals are not trusted alone and langdetect's probabilities are added.
_MARGIN: Final = 0.5
_CONFIDENT: Final = 0.6

# Folding for word comparison: strip marks and tatweel, drop invisible joiners, and bring the yeh
# and kaf variants to the Persian forms. Unlike normalize_text this keeps ە ہ ے ة أ distinct:
# those are exactly the letters that tell the languages apart.
_WORD_FOLD: Final = str.maketrans(
    {
        **dict.fromkeys(ARABIC_MARKS + "\u0640\u200d\u200e\u200f\u061c\ufeff"),
        "\u064a": "\u06cc",  # ي -> ی
        "\u0649": "\u06cc",  # ى -> ی
        "\u0643": "\u06a9",  # ك -> ک
    }
)

# Words that are common in two of the languages are in no list: they would count for the wrong
# language as often as for the right one (به، هم، ما، اما، بین، قبل، بعد، حتی، ولی، له;
# Egyptian ده and Levantine شو). Pashto's او ("and") is kept, though unhamzated Arabic writes
# أو ("or") that way too: it is Pashto's most frequent word and rare in news Arabic.
_FUNCTION_WORDS_RAW: Final[dict[str, str]] = {
    "ar": (
        "في من على إلى الى عن أن إن ان أنه إنه انه هذا هذه ذلك تلك مع كان كانت قد لم لن ثم أو"
        " عند منذ خلال حيث كما قال وقال وفي ومن لا هو هي وهو وهي أي إذا"
    ),
    "fa": (
        "است این آن را که از در با برای های ها هایی می نمی شد شده شود بود خواهد یک تا بر نیز"
        " کرد کرده کند دارد وی اند باید هر همچنین گفت دیگر چه اینکه نیست هست"
    ),
    "ur": "ہے ہیں کے کی کا میں اور نے سے کو پر بھی تھا تھی تھے گیا گئی گئے یہ وہ کہ کیا ہو رہے رہا لیے ایک",
    "ps": "د په چې کې دې ته یې وو دی او شوي کړي وايي کوي څخه سره",
    "ku": "لە بە کە ئەو ئەم بۆ لەگەڵ یان دوای هەروەها بوو دەکات کراوە ئەوەی دەڵێت",
}
_FUNCTION_WORDS: Final[dict[str, frozenset[str]]] = {
    lang: frozenset(word.translate(_WORD_FOLD) for word in words.split()) for lang, words in _FUNCTION_WORDS_RAW.items()
}
# The Arabic article (after و or ل as well) marks a word as Arabic even when it is no function word.
_AR_ARTICLE: Final = ("ال", "وال", "لل")

# Runs of Arabic-script letters (not digits, punctuation, marks or tatweel).
_ARABIC_WORD: Final = re.compile(
    "[\u0620-\u063f\u0641-\u064a\u066e\u066f\u0671-\u06d3\u06d5\u06ee\u06ef\u06fa-\u06fc\u06ff"
    "\u0750-\u077f\u08a0-\u08c9]+"
)

_LANGDETECT_ALIASES: Final = {"zh-cn": "zh", "zh-tw": "zh"}


@cache
def _langdetect_factory() -> Any:
    """The langdetect profiles, loaded on first use (about 0.25 s) rather than at import."""
    # Two threads racing here may both load the profiles; one result wins and nothing breaks.
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    # Seeding the instance (not the class) makes every Detector it creates deterministic without
    # changing langdetect for other users in the process.
    factory.seed = 0
    return factory


def _langdetect(text: str) -> list[tuple[str, float]]:
    """langdetect's candidates for ``text``, best first; empty when it finds nothing to go on."""
    # A fresh Detector per call: a Detector keeps the text and results of its one detection.
    detector = _langdetect_factory().create()
    detector.append(text)
    try:
        found = detector.get_probabilities()
    except LangDetectException:
        return []
    return [(_LANGDETECT_ALIASES.get(str(c.lang), str(c.lang)), float(c.prob)) for c in found]


@lru_cache(maxsize=4096)
def _script(char: str) -> str:
    # The first word of a letter's Unicode name is its script: "ARABIC", "LATIN", "CJK", ...
    return unicodedata.name(char, "").partition(" ")[0]


def _bounded_prefix(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, cut back so the last word is not a fragment."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    if text[limit].isspace() or head[-1].isspace():
        return head
    parts = head.rsplit(maxsplit=1)
    # One unbroken run (Chinese, a URL): keep the hard cut rather than nothing.
    return parts[0] if len(parts) == 2 else head


def _arabic_script_scores(text: str, letters: Counter[str], total: int) -> dict[str, float]:
    """Letter and word scores of each Arabic-script language, each signal capped at 1.

    ``letters`` counts every character of ``text``; ``total`` is its Arabic-script letter count.
    """
    strong = sum(letters[ch] for ch in _FA_STRONG)
    weak = sum(letters[ch] for ch in _FA_WEAK)
    letter_counts = {
        "ar": sum(letters[ch] for ch in _AR_LETTERS),
        "fa": strong + _FA_WEAK_WEIGHT * weak,
        "ur": sum(letters[ch] for ch in _UR_LETTERS) + _UR_HALF_WEIGHT * letters[_UR_HALF],
        "ps": sum(letters[ch] for ch in _PS_LETTERS),
        "ku": sum(letters[ch] for ch in _KU_LETTERS),
    }
    words = _ARABIC_WORD.findall(text.translate(_WORD_FOLD))
    word_counts = dict.fromkeys(_LANGS, 0)
    for word in words:
        for lang in _LANGS:
            if word in _FUNCTION_WORDS[lang]:
                word_counts[lang] += 1
        if len(word) >= 4 and word.startswith(_AR_ARTICLE) and word not in _FUNCTION_WORDS["ar"]:
            word_counts["ar"] += 1
    n_words = max(len(words), 1)
    return {
        lang: min(1.0, letter_counts[lang] / (total * _LETTER_NORM[lang]))
        + min(1.0, word_counts[lang] / (n_words * _WORD_NORM[lang]))
        for lang in _LANGS
    }


def _best(scores: dict[str, float]) -> tuple[str, float]:
    """The best-scoring language and its lead over the runner-up (ties go to the earlier one)."""
    ranked = sorted(_LANGS, key=lambda lang: -scores[lang])
    return ranked[0], scores[ranked[0]] - scores[ranked[1]]


def _arabic_script_language(text: str, letters: Counter[str], total: int) -> str:
    scores = _arabic_script_scores(text, letters, total)
    best, lead = _best(scores)
    if lead >= _MARGIN and scores[best] >= _CONFIDENT:
        return best
    # Not decisive: langdetect knows ar, fa and ur, and its probabilities break the tie. It may
    # only vote for a language with some evidence of its own, or for Arabic or Persian (both
    # can be written with no telling letter at all): a short Arabic word is often "ur" to
    # langdetect, yet Urdu without a single ے ہ ں ٹ ڈ ڑ or function word is not Urdu.
    for lang, probability in _langdetect(text):
        if lang in ("ar", "fa") or scores.get(lang, 0.0) > 0.0:
            scores[lang] += probability
    return _best(scores)[0]


def detect_language(text: str, *, prefix_chars: int = 2000) -> str:
    """ISO 639-1 code of the language of ``text`` (``"und"`` when it cannot tell).

    Only the first ``prefix_chars`` characters (up to a word boundary) are read. Arabic-script
    text is told apart as ``ar``, ``fa``, ``ur``, ``ps`` or ``ku``; other text gets langdetect's
    top language, with ``zh-cn``/``zh-tw`` reported as ``zh``.
    """
    if prefix_chars < 1:
        raise ValueError(f"prefix_chars must be positive, not {prefix_chars}")
    # NFKC turns Arabic presentation forms into the letters counted below.
    prefix = unicodedata.normalize("NFKC", _bounded_prefix(text, prefix_chars))
    letters = Counter(prefix)
    by_script: Counter[str] = Counter()
    for char, n in letters.items():
        if char.isalpha() and char != "\u0640":  # tatweel is a "letter" that only stretches
            by_script[_script(char)] += n
    if sum(by_script.values()) < MIN_LETTERS:
        return UNDETERMINED
    if by_script.most_common(1)[0][0] == "ARABIC":
        return _arabic_script_language(prefix, letters, by_script["ARABIC"])
    found = _langdetect(prefix)
    return found[0][0] if found else UNDETERMINED


def check_language(
    text: str,
    *,
    allowed: tuple[str, ...],
    url: str = "",
    feed_id: str = "",
    prefix_chars: int = 2000,
) -> str:
    """The language of ``text`` if it is one of ``allowed``; otherwise raise ``LanguageRejected``.

    ``"und"`` is rejected like any other language not in ``allowed``.
    """
    code = detect_language(text, prefix_chars=prefix_chars)
    if code not in allowed:
        raise LanguageRejected(f"language {code} not in {allowed}", url=url, feed_id=feed_id, language=code)
    return code
