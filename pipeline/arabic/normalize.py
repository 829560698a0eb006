"""Arabic text normalisation: the one canonical form used wherever text is *matched*.

Dedup hashes, clustering and topic matching all compare text through :func:`normalize_text`, so
two spellings that a reader takes for the same word must come out identical. The stored article
keeps its original text; only comparisons go through here.

:func:`normalize_text` applies, in order:

1. **Unicode NFKC.** Presentation forms and ligatures become base letters (``ﻻ`` → ``لا``,
   ``ﷲ`` → ``الله``, initial/medial/final glyph forms → the letter), full-width Latin and digits
   become ASCII, no-break and other typographic spaces become plain spaces.
2. **Latin case folding** (``str.casefold``): ``Reuters``, ``REUTERS`` and ``reuters`` match.
3. **One translation table** (built once at import) that

   * removes diacritics: harakat, tanwin, shadda, sukun and the combining hamza/madda
     (U+064B–U+065F), superscript alef (U+0670), Quranic annotation marks (U+06D6–U+06ED) and the
     extended Quranic marks (U+08D3–U+08FF);
   * removes tatweel (U+0640), so ``ســـوريا`` → ``سوريا``;
   * removes zero-width and bidi controls (U+200B–U+200F, U+202A–U+202E, U+2060, U+2066–U+2069,
     U+FEFF, U+061C, the soft hyphen U+00AD, the Arabic number signs U+0600–U+0605). The zero-width
     non-joiner U+200C is *removed*, not turned into a space, so ``خامنه‌ای`` matches ``خامنهای``;
   * folds alef forms ``أ إ آ ٱ`` (and the rare wavy-hamza alefs ``ٲ ٳ``) to ``ا``;
   * folds alef maqsura ``ى`` to ``ي`` and ta marbuta ``ة`` (and Urdu ``ۃ``) to ``ه``;
   * folds hamza carriers ``ؤ`` → ``و`` and ``ئ`` → ``ي``; a standalone ``ء`` is kept;
   * folds Persian/Urdu letter variants to the Arabic letter a reader sees in them: ``ی`` → ``ي``,
     ``ک`` (and swash ``ڪ``) → ``ك``, ``ہ ە ھ ۀ ۂ`` → ``ه``, so a name typed on a Persian or Urdu
     keyboard matches the Arabic-keyboard spelling;
   * maps Arabic-Indic ``٠-٩`` and Persian ``۰-۹`` digits to ASCII ``0-9``;
   * maps Arabic punctuation to ASCII: ``،`` → ``,``, ``؛`` → ``;``, ``؟`` → ``?``, ``« »`` → ``"``,
     ``٪`` → ``%``, ``٫`` (decimal separator) → ``.``, ``٬`` (thousands separator) → ``,``,
     ``۔`` → ``.``, ``٭`` → ``*``, ``؍`` → ``/``; decorative marks (``؎ ؏ ؞``) become a space.

4. **NFKC again**: removing an invisible character can leave a base letter next to a combining mark
   it now composes with (``e``, ZWSP, U+0301); composing here keeps the function idempotent.
5. **Whitespace**: every run of whitespace becomes one space; the result is stripped.

The function is idempotent (``normalize_text(normalize_text(s)) == normalize_text(s)``): every
character the table produces is outside the table's keys, and the final NFKC and whitespace steps
are themselves idempotent.

:func:`normalize_for_hash` goes further for dedup (punctuation and symbols become spaces),
:func:`content_hash` hashes that, and :func:`word_count` counts words in the normalised text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = [
    "ARABIC_MARKS",
    "content_hash",
    "normalize_for_hash",
    "normalize_text",
    "word_count",
]


def _span(first: int, last: int) -> str:
    return "".join(map(chr, range(first, last + 1)))


# Combining marks that carry no letter identity for matching. Exported so the language detector
# strips exactly the same marks before it looks at words.
ARABIC_MARKS = _span(0x064B, 0x065F) + "\u0670" + _span(0x06D6, 0x06ED) + _span(0x08D3, 0x08FF)

# Characters that render as nothing (or only steer layout) but would split or change a hash.
_INVISIBLE = (
    _span(0x200B, 0x200F)  # ZWSP, ZWNJ, ZWJ, LRM, RLM
    + _span(0x202A, 0x202E)  # embeddings and overrides
    + "\u2060"  # word joiner: the modern spelling of U+FEFF as a non-breaking zero-width char
    + _span(0x2066, 0x2069)  # isolates
    + "\ufeff"  # BOM / zero-width no-break space
    + "\u061c"  # Arabic letter mark
    + "\u00ad"  # soft hyphen
    + _span(0x0600, 0x0605)  # Arabic number signs: format characters that wrap digits
)

_TATWEEL = "\u0640"

# Letter folds. Each target is a plain Arabic letter that is not itself a key, which is what makes
# the table idempotent.
_LETTERS: dict[str, str] = {
    # Alef with hamza above/below, with madda, wasla; wavy-hamza alefs (Kashmiri/older typing).
    "\u0623": "\u0627",  # أ
    "\u0625": "\u0627",  # إ
    "\u0622": "\u0627",  # آ
    "\u0671": "\u0627",  # ٱ
    "\u0672": "\u0627",  # ٲ
    "\u0673": "\u0627",  # ٳ
    "\u0649": "\u064a",  # ى alef maqsura -> ي
    "\u0629": "\u0647",  # ة ta marbuta -> ه
    "\u06c3": "\u0647",  # ۃ Urdu ta marbuta goal -> ه
    "\u0624": "\u0648",  # ؤ -> و
    "\u0626": "\u064a",  # ئ -> ي
    "\u06cc": "\u064a",  # ی Farsi yeh -> ي
    "\u06a9": "\u0643",  # ک keheh -> ك
    "\u06aa": "\u0643",  # ڪ swash kaf, used decoratively in some Arabic typesetting -> ك
    "\u06c1": "\u0647",  # ہ heh goal (Urdu) -> ه
    "\u06c2": "\u0647",  # ۂ heh goal with hamza -> ه
    "\u06d5": "\u0647",  # ە ae (Kurdish, also typed for ه) -> ه
    "\u06c0": "\u0647",  # ۀ heh with yeh above (Persian ezafe) -> ه
    # Heh doachashmee: Urdu aspiration letter, but also what some sites emit for a plain ه.
    "\u06be": "\u0647",
}

_DIGITS: dict[str, str] = {
    **{chr(0x0660 + d): str(d) for d in range(10)},  # Arabic-Indic
    **{chr(0x06F0 + d): str(d) for d in range(10)},  # Extended Arabic-Indic (Persian/Urdu)
}

_PUNCTUATION: dict[str, str] = {
    "\u060c": ",",  # ، comma
    "\u061b": ";",  # ؛ semicolon
    "\u061f": "?",  # ؟ question mark
    "\u00ab": '"',  # «
    "\u00bb": '"',  # »
    "\u066a": "%",  # ٪ percent
    "\u066b": ".",  # ٫ decimal separator: ٣٫٥ must read 3.5
    "\u066c": ",",  # ٬ thousands separator
    "\u06d4": ".",  # ۔ Urdu full stop
    "\u066d": "*",  # ٭ five-pointed star
    "\u060d": "/",  # ؍ date separator
    # Ornamental marks with no ASCII counterpart: a space keeps the neighbouring words apart.
    "\u060e": " ",  # ؎ poetic verse sign
    "\u060f": " ",  # ؏ misra sign
    "\u061e": " ",  # ؞ triple dot punctuation mark
}

_TABLE: dict[int, str | None] = str.maketrans(
    {
        **dict.fromkeys(ARABIC_MARKS + _TATWEEL + _INVISIBLE),
        **_LETTERS,
        **_DIGITS,
        **_PUNCTUATION,
    }
)


def _nfkc(text: str) -> str:
    # unicodedata.normalize quick-checks first, so already-normalised text costs one scan.
    return unicodedata.normalize("NFKC", text)


def normalize_text(text: str) -> str:
    """Return the canonical matching form of ``text`` (rules in the module docstring)."""
    folded = _nfkc(text).casefold().translate(_TABLE)
    # str.split() with no argument splits on every Unicode whitespace run and drops the ends:
    # the whitespace rule without a regex.
    return " ".join(_nfkc(folded).split())


class _PunctuationToSpace(dict[int, int]):
    """A ``str.translate`` table sending every P* or S* character to a space.

    Building it eagerly would mean classifying all 1.1M code points at import; instead each code
    point is classified the first time it is seen and remembered, so the steady state is a plain
    dict lookup done in C.
    """

    def __missing__(self, codepoint: int) -> int:
        category = unicodedata.category(chr(codepoint))
        target = 0x20 if category[0] in "PS" else codepoint
        self[codepoint] = target
        return target


_TO_SPACE = _PunctuationToSpace()


def normalize_for_hash(text: str) -> str:
    """Normalise for exact-duplicate detection.

    :func:`normalize_text`, then every punctuation and symbol character (Unicode categories P* and
    S*) becomes a space and spaces are collapsed. Two copies that differ only in punctuation,
    diacritics, invisible characters or spacing give the same string. Punctuation becomes a space
    rather than nothing so that ``قال:إن`` and ``قال: إن`` agree.
    """
    return " ".join(normalize_text(text).translate(_TO_SPACE).split())


def content_hash(text: str) -> str:
    """SHA-256 hex digest of :func:`normalize_for_hash` of ``text``."""
    return hashlib.sha256(normalize_for_hash(text).encode("utf-8")).hexdigest()


_WORD = re.compile(r"\w+")


def word_count(text: str) -> int:
    """Number of words in ``text``: runs of letters and digits (``\\w+``) after normalisation.

    Normalising first matters: tatweel and ZWNJ would otherwise split one word into several, and a
    harakah (a combining mark, not ``\\w``) would split a vocalised word at every vowel sign.
    """
    return sum(1 for _ in _WORD.finditer(normalize_text(text)))
