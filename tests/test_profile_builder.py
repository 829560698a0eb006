from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from pipeline.arabic.normalize import normalize_text
from pipeline.settings import PROJECT_ROOT
from pipeline.topics.draft import STOP_WORDS, build_profile, calibrate_draft, dump_profile
from pipeline.topics.evaluate import Labelled
from pipeline.topics.profiles import SCHEMA_PATH, load_profile, match_profile, term_key

SEED_REPORT = PROJECT_ROOT / "seeds" / "seed-report-iran-russia-assad.txt"


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    return build_profile(SEED_REPORT.read_text(encoding="utf-8"), profile_id="iran-russia-assad", title="إيران وروسيا")


def by_text(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {term["text"]: term for term in profile["terms"]}


def rank_of(profile: dict[str, Any], word: str) -> int:
    """Rank (0-based, by weight) of the first term whose text or variants contain ``word``."""
    ranked = sorted(profile["terms"], key=lambda term: -term["weight"])
    wanted = normalize_text(word)
    for rank, term in enumerate(ranked):
        spellings = [term["text"], *term.get("variants", [])]
        if any(
            wanted in normalize_text(spelling).split() or wanted == normalize_text(spelling) for spelling in spellings
        ):
            return rank
    raise AssertionError(f"{word} not in the profile")


def test_the_seed_reports_names_are_among_the_top_terms(built: dict[str, Any]) -> None:
    assert rank_of(built, "سليماني") < 3
    assert rank_of(built, "الأسد") < 5
    assert rank_of(built, "موسكو") < 10
    assert rank_of(built, "حزب الله") < 25
    assert rank_of(built, "طهران") < 25


def test_full_names_absorb_surnames_with_their_spellings(built: dict[str, Any]) -> None:
    terms = by_text(built)
    soleimani = terms["قاسم سليماني"]
    assert soleimani["kind"] == "person"
    assert {"سليماني", "قاسم سلیمانی"} <= set(soleimani["variants"])
    assert "سليماني" not in terms
    assert {"خامنه اي", "خامنه‌ای"} <= set(terms["علي خامنئي"]["variants"])
    assert "حزب اللة" in terms["حزب الله"]["variants"]
    assert "تهران" in terms["طهران"]["variants"]
    assert "لاوروف" in " ".join(terms["سيرغي لافروف"]["variants"])


def test_kinds_are_guessed(built: dict[str, Any]) -> None:
    terms = by_text(built)
    assert terms["موسكو"]["kind"] == "place"
    assert terms["حزب الله"]["kind"] == "organisation"
    assert terms["الحرس الثوري"]["kind"] == "organisation"
    assert terms["بشار الأسد"]["kind"] == "person"
    assert terms["الغارات الروسية"]["kind"] == "event"
    assert terms["الروسي"]["kind"] == "keyword"


def test_no_term_starts_or_ends_with_a_stop_word(built: dict[str, Any]) -> None:
    for term in built["terms"]:
        words = normalize_text(term["text"]).split()
        # علي (Ali) is على (on) once normalised; the builder tells them apart by the raw spelling.
        assert words[0] not in STOP_WORDS or term["text"].startswith("علي "), term["text"]
        assert words[-1] not in STOP_WORDS, term["text"]
        assert "رويترز" not in term["text"] and "وكالة" not in term["text"]


def test_stemmed_forms_are_one_term(built: dict[str, Any]) -> None:
    terms = by_text(built)
    assert "الروسية" in terms["الروسي"]["variants"]
    assert "الروسية" not in terms and "الروس" not in terms


def test_implied_terms_are_added_with_a_note_and_unmentioned_bases_are_not(built: dict[str, Any]) -> None:
    terms = by_text(built)
    assert terms["المستشارين الإيرانيين"]["note"].startswith("implied:")
    assert "فيلق القدس" in terms
    assert "التدخل الروسي" in terms
    assert not any("حميميم" in term["text"] for term in built["terms"])


def test_built_profile_validates_and_loads(built: dict[str, Any], tmp_path: Path) -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(built, schema)
    assert len(built["terms"]) <= 120
    path = tmp_path / "draft.yaml"
    path.write_text(dump_profile(built), encoding="utf-8")
    loaded = load_profile(path)  # also checks that no two terms match the same words
    assert loaded.id == "iran-russia-assad"
    assert 0 < loaded.tag_threshold <= loaded.alert_threshold <= 10
    keys = [term_key(spelling) for term in loaded.terms for spelling in (term.text, *term.variants)]
    assert len({key for key in keys}) >= len(loaded.terms)


def test_default_thresholds_tag_the_report_itself(built: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "draft.yaml"
    path.write_text(dump_profile(built), encoding="utf-8")
    loaded = load_profile(path)
    report = SEED_REPORT.read_text(encoding="utf-8")
    assert match_profile(loaded, title="", body=report).score >= loaded.alert_threshold
    assert match_profile(loaded, title="", body="أعلنت وزارة التربية مواعيد الامتحانات").score < loaded.tag_threshold


def test_dump_is_readable_yaml_with_a_header(built: dict[str, Any]) -> None:
    text = dump_profile(built)
    assert text.startswith("# Topic profile iran-russia-assad: إيران وروسيا\n")
    assert "قاسم سليماني" in text  # allow_unicode: no \u escapes
    assert "variants: [" in text
    assert yaml.safe_load(text) == built


def test_max_terms_is_respected() -> None:
    small = build_profile(SEED_REPORT.read_text(encoding="utf-8"), profile_id="small", title="s", max_terms=15)
    assert len(small["terms"]) <= 15
    assert small["terms"][0]["text"] == "قاسم سليماني"


def test_an_empty_report_is_refused() -> None:
    with pytest.raises(ValueError):
        build_profile("في من على", profile_id="empty", title="e")


def test_thresholds_are_read_off_labelled_articles(built: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "draft.yaml"
    path.write_text(dump_profile(built), encoding="utf-8")
    draft = load_profile(path)
    report = SEED_REPORT.read_text(encoding="utf-8").splitlines()
    articles = [
        Labelled("r1", "", "\n".join(report[:6]), "relevant"),
        Labelled("r2", "", "\n".join(report[6:12]), "relevant"),
        Labelled("n1", "تجارة", "وقعت روسيا وإيران اتفاقا لزيادة التبادل التجاري وتصدير القمح عبر بحر قزوين.", "not"),
        Labelled("n2", "طقس", "أمطار غزيرة في المدن الساحلية.", "not"),
    ]
    calibrated, before, after = calibrate_draft(built, draft, articles)
    thresholds = calibrated["thresholds"]
    assert (after.tag_threshold, after.alert_threshold) == (thresholds["tag"], thresholds["alert"])
    assert after.tag.f1 == 1.0 and after.alert.precision == 1.0 and after.tag.f1 >= before.tag.f1
    assert thresholds["tag"] <= thresholds["alert"]
