"""Tests for pipeline.arabic.normalize: one test per rule, then properties (idempotence, hash stability).

The example words and sentences are ordinary Arabic, Persian and Urdu written for these tests.
"""

from __future__ import annotations

import hashlib
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.arabic.normalize import (
    ARABIC_MARKS,
    content_hash,
    normalize_for_hash,
    normalize_text,
    word_count,
)

# --- one test per rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\ufefb", "لا"),  # lam-alef ligature
        ("\ufdf2", "الله"),  # Allah ligature
        ("\ufe8d\ufedf\ufeb4\ufefc\ufee1", "السلام"),  # glyph forms, as pasted from a PDF
        ("\uff21\uff22\uff23\uff11\uff12", "abc12"),  # full-width Latin and digits
    ],
)
def test_nfkc_presentation_forms(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("أَحْمَدُ", "احمد"),
        ("مُحَمَّدٌ", "محمد"),  # shadda and tanwin
        ("كِتَابًا", "كتابا"),
        ("هٰذا", "هذا"),  # superscript alef U+0670
        ("ذَٰلِكَ", "ذلك"),
        ("لٰكِنَّ", "لكن"),  # modern spelling omits the alef the superscript one stands for
        ("قُلْۖ", "قل"),  # Quranic pause mark U+06D6
        ("رَبِّۦ", "رب"),  # small yeh U+06E6, one of the Quranic annotation signs
        ("سَمِعَ\u08f0", "سمع"),  # extended Quranic mark (U+08D3–U+08FF)
    ],
)
def test_diacritics_removed(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_tatweel_removed() -> None:
    assert normalize_text("ســـوريا") == "سوريا"
    assert normalize_text("الـــرياض") == normalize_text("الرياض")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("أحمد", "احمد"), ("إسلام", "اسلام"), ("آمال", "امال"), ("ٱلله", "الله")],
)
def test_alef_forms(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_decomposed_hamza_and_madda_match_composed_letters() -> None:
    # Some keyboards send alef + combining hamza above rather than the precomposed أ.
    assert normalize_text("\u0627\u0654حمد") == normalize_text("أحمد") == "احمد"
    assert normalize_text("\u0627\u0653مال") == normalize_text("آمال")
    assert normalize_text("\u0648\u0654") == normalize_text("ؤ") == "و"


def test_alef_maqsura() -> None:
    assert normalize_text("مستشفى") == "مستشفي"
    assert normalize_text("على") == normalize_text("علي")


def test_ta_marbuta() -> None:
    assert normalize_text("مدرسة") == "مدرسه"
    assert normalize_text("مدرسة") == normalize_text("مدرسه")


def test_hamza_carriers_and_standalone_hamza() -> None:
    assert normalize_text("مؤتمر") == "موتمر"
    assert normalize_text("رئيس") == "رييس"
    assert normalize_text("سماء") == "سماء"  # standalone hamza is a letter of its own: kept
    assert normalize_text("جزء") == "جزء"


@pytest.mark.parametrize(
    ("persian_or_urdu", "arabic"),
    [
        ("سلیمانی", "سليماني"),  # Farsi yeh
        ("کرمان", "كرمان"),  # keheh
        ("مدرسہ", "مدرسه"),  # Urdu heh goal
        ("مدرسە", "مدرسه"),  # Kurdish ae
        ("خانۀ", "خانه"),  # heh with yeh above (ezafe)
        ("بھی", "بهي"),  # heh doachashmee
    ],
)
def test_persian_and_urdu_letters(persian_or_urdu: str, arabic: str) -> None:
    assert normalize_text(persian_or_urdu) == arabic
    assert normalize_text(persian_or_urdu) == normalize_text(arabic)


def test_urdu_and_arabic_spellings_of_one_word_meet() -> None:
    assert normalize_text("مدرسہ") == normalize_text("مدرسة")


def test_zwnj_joins_word_parts() -> None:
    assert normalize_text("خامنه‌ای") == normalize_text("خامنهای") == "خامنهاي"
    assert normalize_text("می‌شود") == normalize_text("میشود")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("٢٠٢٥", "2025"),
        ("۱۴۰۳", "1403"),  # Persian digits
        ("٣٫٥", "3.5"),  # Arabic decimal separator
        ("١٬٠٠٠", "1,000"),  # Arabic thousands separator
    ],
)
def test_digits(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("قال، إن", "قال, ان"),
        ("أولاً؛ ثانياً", "اولا; ثانيا"),
        ("لماذا؟", "لماذا?"),
        ("«نعم»", '"نعم"'),
        ("٥٠٪", "50%"),
        ("ختم۔", "ختم."),  # Urdu full stop
        ("سطر؞ ثان", "سطر ثان"),  # ornamental mark: a space
    ],
)
def test_arabic_punctuation(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    "invisible",
    [
        "\u200b",
        "\u200d",
        "\u200e",
        "\u200f",
        "\u202b",
        "\u202c",
        "\u2067",
        "\u2069",
        "\ufeff",
        "\u061c",
        "\u00ad",
        "\u2060",
    ],
)
def test_invisible_characters_removed(invisible: str) -> None:
    assert normalize_text(f"{invisible}بيروت{invisible}") == "بيروت"
    assert normalize_text(f"بير{invisible}وت") == "بيروت"


def test_latin_casefold() -> None:
    assert normalize_text("Reuters REUTERS reuters") == "reuters reuters reuters"
    assert normalize_text("Straße") == "strasse"


def test_whitespace_collapsed_and_stripped() -> None:
    assert normalize_text("  كلمة\t\n\u00a0 أخرى\u2003\u3000 ") == "كلمه اخري"
    assert normalize_text("\n\n") == ""


def test_whole_headline() -> None:
    raw = "\u200fعاجـــل: الرئيسُ يَلتقي وزيرَ الخارجيّة في «القاهرة» يوم ١٢ مارس؟ "
    assert normalize_text(raw) == 'عاجل: الرييس يلتقي وزير الخارجيه في "القاهره" يوم 12 مارس?'


# --- hashing and counting ----------------------------------------------------------------------

SENTENCE = "قال الرئيس إن الحكومة ستعلن خطة جديدة للإسكان"


@pytest.mark.parametrize(
    "variant",
    [
        "قالَ الرَّئيسُ إنّ الحكومةَ ستُعلن خطّةً جديدةً للإسكان",  # diacritics
        "قال الرئيس، إن الحكومة ستعلن «خطة جديدة» للإسكان.",  # punctuation
        "  قال   الرئيس\nإن الحكومة\tستعلن خطة جديدة للإسكان ",  # spacing
        "قال الرئيس:إن الحكومة ستعلن خطه جديده للاسكان!",  # punctuation without a space, ة/ه
        "قال الرئيـــس إن الحكومة ستعلن خطة جديدة للإسكان\u200f",  # tatweel, RLM
    ],
)
def test_content_hash_ignores_presentation(variant: str) -> None:
    assert content_hash(variant) == content_hash(SENTENCE)


def test_content_hash_differs_for_different_words() -> None:
    assert content_hash(SENTENCE) != content_hash(SENTENCE.replace("جديدة", "قديمة"))
    assert content_hash("سوريا") != content_hash("ليبيا")


def test_content_hash_is_sha256_of_hash_form() -> None:
    digest = content_hash(SENTENCE)
    assert digest == hashlib.sha256(normalize_for_hash(SENTENCE).encode("utf-8")).hexdigest()
    assert len(digest) == 64


def test_normalize_for_hash_drops_symbols() -> None:
    assert normalize_for_hash("الدولار = ٣٫٥ € + ٪") == "الدولار 3 5"
    assert normalize_for_hash("😀 خبر 😀") == "خبر"


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 0),
        ("... !!! ؟", 0),
        ("ســـوريا", 1),
        ("أَحْمَدُ", 1),  # harakat are not word characters: must not split the word
        ("خامنه‌ای", 1),  # nor must ZWNJ
        ("قال، إن الحكومة ٢٠٢٥", 4),
        ("iPhone 16 Pro", 3),
    ],
)
def test_word_count(text: str, count: int) -> None:
    assert word_count(text) == count


def test_large_input() -> None:
    # A sanity check that a large body goes through in one piece; no timing assertion.
    text = (SENTENCE + "، ") * 50_000
    assert word_count(text) == 8 * 50_000


# --- properties --------------------------------------------------------------------------------

ARABIC_BLOCK = st.characters(min_codepoint=0x0600, max_codepoint=0x06FF)
# Letters, marks, invisibles, spaces and Latin together: where ordering bugs would hide.
MIXED = st.one_of(
    ARABIC_BLOCK,
    st.sampled_from(list(ARABIC_MARKS + "\u0640\u200b\u200c\u200d\u200f\u202b\ufeff\u00ad")),
    st.sampled_from(list(" \t\n\u00a0\u2003Aa\u0301\u0130\u00df")),
    st.characters(min_codepoint=0xFB50, max_codepoint=0xFEFF),
)


@given(st.text())
def test_idempotent_any_text(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@given(st.text(alphabet=ARABIC_BLOCK))
def test_idempotent_arabic_block(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@given(st.text(alphabet=MIXED))
def test_idempotent_mixed(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert normalize_for_hash(normalize_for_hash(text)) == normalize_for_hash(text)


@given(st.text(alphabet=MIXED))
def test_output_has_no_marks_tatweel_or_extra_space(text: str) -> None:
    out = normalize_text(text)
    assert not set(out) & set(ARABIC_MARKS + "\u0640\u200c\u200f\ufeff")
    assert out == out.strip()
    assert "  " not in out
    assert unicodedata.is_normalized("NFKC", out)


ARABIC_WORD = st.text(alphabet=st.sampled_from(list("ابتثجحخدذرزسشصضطظعغفقكلمنهوية")), min_size=1)
SEPARATOR = st.text(alphabet=st.sampled_from(list(" \n\t،؛؟!.:«»-()")), min_size=1)


@given(st.lists(ARABIC_WORD, min_size=1, max_size=12), st.data())
def test_hash_ignores_separators(words: list[str], data: st.DataObject) -> None:
    # Any punctuation/space mix between the same words gives the same hash.
    separated = "".join(word + data.draw(SEPARATOR) for word in words)
    assert content_hash(separated) == content_hash(" ".join(words))


@given(st.text())
def test_hash_of_normalized_text_is_unchanged(text: str) -> None:
    assert content_hash(normalize_text(text)) == content_hash(text)
