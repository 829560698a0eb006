"""Where a profile's terms occur in a text: tokens, clitics, stems, wildcards, phrases.

Title and body go through :func:`~pipeline.arabic.normalize.normalize_text`, then split into word tokens
(sentence punctuation breaks a phrase). A text token matches a term token when, after dropping
attached clitics (``و ف`` then ``ب ك ل`` then the article ``ال``, in any valid combination:
``وال بال فال لل كال وب ول وبال ولل`` …), the two are equal; the term's own leading ``ال`` is
dropped too, so ``الحرس`` matches ``والحرس``, ``بالحرس``, ``للحرس``, ``حرس``. Terms of kind
``keyword``, ``phrase`` and ``event`` also match through the Snowball Arabic stemmer (``الغارات``
matches ``غارة``); names (``person``, ``organisation``, ``place``) never do, so ``روسيا`` does not
match ``الروسي``. A term word written with a final ``*`` matches every word that starts with it
once clitics are off (``حليف*``: ``حليفها``, ``وحليفتها``), at least :data:`MIN_WILDCARD` letters
before the star: Arabic adds pronouns and feminine endings at the end of a word, which neither the
stemmer nor the clitic rule removes. A multi-word term matches consecutive tokens, each under the
same rules. Overlapping matches of one term (a name and its short variant) count once.

:class:`TermMatcher` is compiled once per term list and keeps a memo of the tokens it has seen: news
vocabulary is Zipfian, so after a few hundred articles nearly every token is one dict lookup.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.arabic.lexicon import ARTICLE, CLITIC_PREFIXES, MIN_REMAINDER, stem, strip_article
from pipeline.arabic.normalize import normalize_text

__all__ = [
    "BREAKS",
    "CLITIC_PREFIXES",
    "KINDS",
    "NAME_KINDS",
    "SENTENCE_ENDS",
    "Span",
    "Term",
    "TermMatcher",
    "compile_terms",
    "has_short_wildcard",
    "stem_key",
    "term_key",
    "term_tokens",
    "text_tokens",
    "token_forms",
]

KINDS = ("person", "organisation", "place", "event", "phrase", "keyword")
NAME_KINDS = frozenset({"person", "organisation", "place"})  # matched exactly, never stemmed
MIN_WILDCARD = 3  # letters before a final * ("دع*" would match half the dictionary)

Span = tuple[int, int]  # token positions [start, end)


@dataclass(frozen=True, slots=True)
class Term:
    """One entry of a profile."""

    text: str  # the canonical form shown to analysts, e.g. "قاسم سليماني"
    weight: float  # the term's weight in a term-weighted profile; 1 inside a group, where it is unused
    kind: str  # person | organisation | place | event | phrase | keyword
    variants: tuple[str, ...] = ()  # other spellings


# --- tokens and their forms ---------------------------------------------------------------------

# A word, or a punctuation mark that ends a clause: phrases never match across one.
BREAKS = frozenset('.!?;:"()[]')
# The marks that end a sentence: a rule's window never spans one (a colon or a quote does not end
# the sentence "لافروف: دعمنا للأسد مستمر").
SENTENCE_ENDS = frozenset(".!?;")
_TOKEN = re.compile(r"\w+|[.!?;:\"()\[\]]")
_SPELLING = re.compile(r"\w+\*?")


def _bare_forms(token: str) -> list[str]:
    """The token and the token minus each clitic prefix it may carry."""
    forms = [token]
    forms.extend(
        token[len(prefix) :]
        for prefix in CLITIC_PREFIXES
        if token.startswith(prefix) and len(token) - len(prefix) >= MIN_REMAINDER
    )
    return forms


@functools.lru_cache(maxsize=1 << 16)
def token_forms(token: str) -> tuple[str, ...]:
    """Every key a normalised text token can match: itself, itself minus each clitic prefix it
    may carry, and (prefixed ``~``) the stems of those forms that have no article."""
    forms = _bare_forms(token)
    keys = dict.fromkeys(forms)
    for form in forms:
        if not form.startswith(ARTICLE):
            keys["~" + stem(form)] = None
    return tuple(keys)


def _wildcard_keys(token: str) -> list[str]:
    """The ``prefix*`` keys a token can match: every prefix of each of its bare forms."""
    return [
        form[:length] + "*"
        for form in _bare_forms(token)
        if not form.startswith(ARTICLE) or len(form) - 2 < MIN_REMAINDER
        for length in range(MIN_WILDCARD, len(form) + 1)
    ]


def term_tokens(text: str) -> list[str]:
    """The normalised word tokens of a term or variant (punctuation dropped; a final ``*`` kept)."""
    return _SPELLING.findall(normalize_text(text))


def term_key(text: str) -> tuple[str, ...]:
    """The words a term or variant matches on: its normalised tokens without their article."""
    return tuple(strip_article(token) for token in term_tokens(text))


def stem_key(token: str) -> str:
    """The stem key a keyword token matches by (``~`` + Snowball stem of the bare word)."""
    return "~" + stem(strip_article(token))


def _slot(token: str, *, stem: bool) -> frozenset[str]:
    bare = strip_article(token)
    if bare.endswith("*"):
        return frozenset({bare})
    return frozenset({bare, stem_key(token)} if stem else {bare})


def text_tokens(text: str) -> list[str]:
    """The tokens of normalised ``text``; a word, or a one-character break (``.`` ``:`` ``"`` …)."""
    return _TOKEN.findall(text)


def has_short_wildcard(text: str) -> bool:
    """Whether a spelling has a word with a final ``*`` and fewer than :data:`MIN_WILDCARD` letters."""
    return any(token.endswith("*") and len(strip_article(token)) - 1 < MIN_WILDCARD for token in term_tokens(text))


# --- the compiled matcher -----------------------------------------------------------------------


_HITS_SIZE = 200_000  # tokens remembered per matcher before the memo starts over


@dataclass(frozen=True, slots=True)
class TermMatcher:
    """Finds the occurrences of a list of terms; built by :func:`compile_terms`."""

    vocabulary: frozenset[str]
    # first-slot key -> (term index, the slots after the first)
    starts: dict[str, tuple[tuple[int, tuple[frozenset[str], ...]], ...]]
    wildcards: bool  # some term word ends with *
    # token -> the keys it matches (None: none). Shared by the threads of one worker.
    hits: dict[str, frozenset[str] | None] = field(default_factory=dict)

    def keys_of(self, token: str) -> frozenset[str] | None:
        try:
            return self.hits[token]
        except KeyError:
            pass
        if len(self.hits) >= _HITS_SIZE:
            self.hits.clear()
        if not token or token in BREAKS:
            found = None
        else:
            candidates = list(token_forms(token))
            if self.wildcards:
                candidates.extend(_wildcard_keys(token))
            keys = [key for key in candidates if key in self.vocabulary]
            found = frozenset(keys) if keys else None
        self.hits[token] = found
        return found

    def spans(self, tokens: Sequence[str]) -> dict[int, list[Span]]:
        """The occurrences of each term (by index) in ``tokens``, in order; overlapping matches of
        one term count once (the earliest, then the longest)."""
        keys_of = self.keys_of
        present = [keys_of(token) for token in tokens]
        found: dict[int, list[Span]] = {}
        starts = self.starts
        size = len(present)
        for start, keys in enumerate(present):
            if keys is None:
                continue
            for key in keys:
                for index, rest in starts.get(key, ()):
                    end = start + 1 + len(rest)
                    if end > size:
                        continue
                    if all(_fits(slot, present[start + 1 + offset]) for offset, slot in enumerate(rest)):
                        found.setdefault(index, []).append((start, end))
        kept: dict[int, list[Span]] = {}
        for index, matched in found.items():
            matched.sort(key=lambda span: (span[0], -span[1]))
            last_end = -1
            chosen: list[Span] = []
            for start, end in matched:
                if start >= last_end:
                    chosen.append((start, end))
                    last_end = end
            kept[index] = chosen
        return kept


def _fits(slot: frozenset[str], keys: frozenset[str] | None) -> bool:
    return keys is not None and not slot.isdisjoint(keys)


def compile_terms(terms: Sequence[Term]) -> TermMatcher:
    """The matcher for ``terms`` (indices in its results are positions in ``terms``)."""
    starts: dict[str, list[tuple[int, tuple[frozenset[str], ...]]]] = {}
    vocabulary: set[str] = set()
    for index, term in enumerate(terms):
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
    return TermMatcher(
        vocabulary=frozenset(vocabulary),
        starts={key: tuple(found) for key, found in starts.items()},
        wildcards=any(key.endswith("*") for key in vocabulary),
    )
