from __future__ import annotations

import json
import pickle
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.arabic.normalize import normalize_text
from pipeline.errors import ConfigError
from pipeline.settings import PROJECT_ROOT
from pipeline.topics.profiles import (
    SCHEMA_PATH,
    Group,
    Match,
    Occurrences,
    Profile,
    Rule,
    RulesExplanation,
    RuleWindow,
    Term,
    WeightedExplanation,
    explain,
    load_profile,
    load_profiles,
    match_profile,
    tag_article,
)

SEED_PROFILE = PROJECT_ROOT / "seeds" / "profiles" / "iran-russia-assad.yaml"
SEED_REPORT = PROJECT_ROOT / "seeds" / "seed-report-iran-russia-assad.txt"
PREVIOUS_PROFILE = PROJECT_ROOT / "bench" / "profiles" / "iran-russia-assad-v1.yaml"


def profile(*terms: Term, tag: float = 3.0, alert: float = 6.0, profile_id: str = "test") -> Profile:
    return Profile(id=profile_id, title="اختبار", language="ar", terms=terms, tag_threshold=tag, alert_threshold=alert)


GUARDS = Term("الحرس الثوري", 4.0, "organisation", ("الحرس الثوري الإيراني",))
STRIKES = Term("الغارات الروسية", 4.0, "event")
SOLEIMANI = Term("قاسم سليماني", 5.0, "person", ("سليماني", "سلیمانی"))
KHAMENEI = Term("علي خامنئي", 3.0, "person", ("خامنئي", "خامنه اي"))
RUSSIA = Term("روسيا", 2.0, "place")
CLITICS = profile(GUARDS, STRIKES, SOLEIMANI, KHAMENEI, RUSSIA)


def terms_in(text: str, of: Profile = CLITICS) -> dict[str, int]:
    match = match_profile(of, title="", body=text)
    return {term: count for term, _, _, count in match.details}


# --- matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("وصل قادة والحرس الثوري إلى دمشق", "الحرس الثوري"),
        ("تحدث المسؤول عن دور للحرس الثوري هناك", "الحرس الثوري"),
        ("قصفت المدينة بالغارات الروسية أمس", "الغارات الروسية"),
        ("وقالت المصادر إن لسليماني دورا كبيرا", "قاسم سليماني"),
        ("اجتمع لافروف وخامنئي في طهران", "علي خامنئي"),
        ("التقى الوزير بعلي خامنئي", "علي خامنئي"),
        ("وقال فسليماني كان هناك", "قاسم سليماني"),
    ],
)
def test_terms_match_through_attached_clitics(text: str, term: str) -> None:
    assert terms_in(text) == {term: 1}


def test_keywords_match_by_stem_but_names_do_not() -> None:
    # الغارات الروسية is an event: غارة روسية is the same thing in the singular.
    assert terms_in("شنت طائرات غارة روسية على ريف حماة") == {"الغارات الروسية": 1}
    # روسيا is a place: the adjective الروسي is not the country.
    assert terms_in("قال المتحدث الروسي إن الوفد وصل") == {}


def test_persian_letters_and_transliterations_match_as_variants() -> None:
    assert terms_in("زار سلیمانی موسكو") == {"قاسم سليماني": 1}  # Persian yeh, folded by normalize_text
    assert terms_in("قال خامنه اي في خطاب") == {"علي خامنئي": 1}  # a listed transliteration
    assert terms_in("قال خامنه‌ای في خطاب") == {}  # not listed: the ZWNJ form is another spelling


def test_phrases_need_consecutive_words_within_a_clause() -> None:
    assert terms_in("الحرس في الثوري") == {}
    assert terms_in("وصل الحرس. الثوري غائب") == {}
    assert terms_in("الحرس الثوري الإيراني يعلن") == {"الحرس الثوري": 1}  # one mention, two spellings


def test_a_full_name_and_its_surname_count_once_per_mention() -> None:
    assert terms_in("قال قاسم سليماني ثم عاد سليماني إلى طهران") == {"قاسم سليماني": 2}


def test_text_without_terms_scores_zero() -> None:
    match = match_profile(CLITICS, title="طقس معتدل", body="تشهد البلاد طقسا معتدلا اليوم.")
    assert match == Match(profile="test", score=0.0, terms=(), details=())


def test_title_mentions_weigh_more_than_body_mentions() -> None:
    in_title = match_profile(CLITICS, title="الغارات الروسية", body="خبر")
    in_body = match_profile(CLITICS, title="خبر", body="الغارات الروسية")
    assert in_title.score > in_body.score > 0
    assert in_title.details == (("الغارات الروسية", 4.0, "title", 1),)


def test_repeating_one_term_saturates_and_breadth_wins() -> None:
    words = [Term(word, 3.0, "keyword") for word in ("مفاوضات", "انتخابات", "اقتصاد", "زراعة", "فيضانات")]
    five = profile(*words)
    repeated = match_profile(five, title="", body=" ".join(["مفاوضات"] * 20))
    distinct = match_profile(five, title="", body=" ".join(term.text for term in words))
    assert distinct.score > repeated.score
    assert repeated.score < match_profile(five, title="", body="مفاوضات انتخابات").score
    ten = match_profile(five, title="", body=" ".join(["مفاوضات"] * 10)).score
    assert repeated.score - ten < 0.05  # the twentieth mention adds next to nothing


def test_scores_stay_on_the_documented_scale() -> None:
    heavy = profile(*(Term(f"كلمة{index}", 10.0, "keyword") for index in range(30)))
    text = " ".join(f"كلمة{index}" for index in range(30)) * 5
    assert 9.9 <= match_profile(heavy, title=text, body=text).score <= 10.0


def test_matched_terms_are_listed_best_first() -> None:
    match = match_profile(CLITICS, title="سليماني في موسكو", body="روسيا. الحرس الثوري.")
    assert match.terms == ("قاسم سليماني", "الحرس الثوري", "روسيا")
    assert {where for _, _, where, _ in match.details} == {"title", "body"}


def test_several_profiles_tag_one_article() -> None:
    iran = profile(SOLEIMANI, GUARDS, tag=2.0, profile_id="iran")
    russia = profile(STRIKES, RUSSIA, tag=1.5, profile_id="russia")
    sport = profile(Term("كرة القدم", 5.0, "keyword"), tag=2.0, profile_id="sport")
    topics, matches = tag_article(
        [iran, russia, sport],
        title="سليماني والحرس الثوري",
        body="وتواصلت الغارات الروسية في ريف اللاذقية بدعم من روسيا.",
    )
    assert topics == ["iran", "russia"]
    assert [match["profile"] for match in matches] == topics
    assert matches[0]["terms"] == ["قاسم سليماني", "الحرس الثوري"]
    assert all(isinstance(match["score"], float) for match in matches)
    article_schema = json.loads((PROJECT_ROOT / "schemas" / "article.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(matches, article_schema["properties"]["topic_matches"])


def test_tag_article_with_no_profiles_or_no_match() -> None:
    assert tag_article([], title="x", body="y") == ([], [])
    assert tag_article([CLITICS], title="طقس", body="مشمس") == ([], [])


def test_explain_gives_each_terms_part_of_the_score() -> None:
    title, body = "سليماني في دمشق", "وقال سليماني إن الغارات الروسية مستمرة."
    report = explain(CLITICS, title=title, body=body)
    assert isinstance(report, WeightedExplanation) and report.model == "weighted terms"
    assert report.profile == "test"
    assert report.threshold == 3.0
    assert report.score == match_profile(CLITICS, title=title, body=body).score
    assert report.tagged is (report.score >= 3.0)
    first = report.terms[0]
    assert first.term == "قاسم سليماني"
    assert first.where == ["title", "body"]
    assert first.occurrences == Occurrences(title=1, body=1)
    assert first.weight == 5.0
    assert sum(term.contribution for term in report.terms) == pytest.approx(report.evidence, abs=0.01)
    data = report.to_dict()
    assert data["terms"][0]["occurrences"] == {"title": 1, "body": 1}
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "سليماني",
                "سلیمانی",
                "الحرس",
                "الثوري",
                "والحرس",
                "الغارات",
                "الروسية",
                "غارةٌ",
                "روسيّة",
                "أ",
                "ة",
                "ى",
                "\u200c",
                "ـ",
                " ",
                "، ",
                ".",
                "خامنه",
                "اي",
                "روسيا",
                "١٢",
                "x",
            ]
        ),
        max_size=30,
    ).map("".join),
    st.text(max_size=40),
)
def test_score_is_the_same_for_a_text_and_its_normal_form(arabic: str, noise: str) -> None:
    text = arabic + noise
    assert match_profile(CLITICS, title=text, body=text) == match_profile(
        CLITICS, title=normalize_text(text), body=normalize_text(text)
    )


def test_a_600_word_article_matches_in_a_few_ms() -> None:
    # Matching runs in the extraction workers for every article. The seed report is as dense in
    # the profile's words as an article gets; real articles take a third of that.
    words = SEED_REPORT.read_text(encoding="utf-8").split()
    body = " ".join(words[:600])
    v1 = load_profile(PREVIOUS_PROFILE)
    extra = tuple(Term(f"مصطلح{index} إضافي", 1.0, "phrase") for index in range(150 - len(v1.terms)))
    for profile in (load_profile(SEED_PROFILE), replace(v1, terms=v1.terms + extra)):
        match_profile(profile, title="", body=body)  # compile once, as a worker does
        runs = 50
        started = time.perf_counter()
        for _ in range(runs):
            match_profile(profile, title="عنوان", body=body)
        per_article = (time.perf_counter() - started) / runs
        assert per_article < 0.006, f"{profile.source}: {per_article * 1000:.2f} ms per article"  # 2 ms, CI slack


# --- groups and rules ---------------------------------------------------------------------------


def group(group_id: str, role: str, *spellings: str, kind: str = "keyword") -> Group:
    return Group(group_id, role, tuple(Term(text, 1.0, kind) for text in spellings))


ACTORS = group("actors", "actor", "روسيا", "إيران", "الإيراني", "الروسية", kind="place")
REGIME = group("regime", "beneficiary", "قوات الأسد", "النظام السوري", "الأسد", kind="organisation")
SYRIA = group("syria", "theatre", "سوريا", "حلب", kind="place")
SUPPORT = group("support", "relation", "دعم*", "تدعم*", "يدعم*", "حليف*")
MEANS = group("means", "relation", "غارات*", "قوات*")
NUCLEAR = group("nuclear", "context", "النووي")
BACKING_RULE = Rule("backing", (("actors",), ("support",), ("regime", "syria")), window=8, weight=3.0)
STRIKES_RULE = Rule("strikes", (("actors",), ("means",), ("syria", "regime")), window=8, weight=3.0)


def rules_profile(*rules: Rule, bias: float = -2.0, require: tuple[str, ...] = ()) -> Profile:
    return Profile(
        id="rules",
        title="اختبار",
        language="ar",
        terms=(),
        tag_threshold=5.0,
        alert_threshold=7.0,
        groups=(ACTORS, REGIME, SYRIA, SUPPORT, MEANS, NUCLEAR),
        rules=rules or (BACKING_RULE, STRIKES_RULE, Rule("nuclear", (("nuclear",),), window=1, weight=-2.0)),
        bias=bias,
        require=require,
    )


RULES = rules_profile()


def fired(text: str, *, title: str = "", of: Profile = RULES) -> dict[str, tuple[int, int]]:
    """Rule id -> (title windows, body windows) of the rules that fired."""
    report = explain(of, title=title, body=text)
    assert isinstance(report, RulesExplanation)
    return {rule.rule: (rule.fired.title, rule.fired.body) for rule in report.rules if rule.windows}


def test_a_rule_needs_every_slot_within_its_window() -> None:
    assert fired("قالت إيران إنها ستواصل دعم الأسد") == {"backing": (0, 1)}
    assert fired("قالت إيران إنها ستواصل دعم") == {}  # no beneficiary
    assert fired("إيران والأسد") == {}  # no relation
    # Every slot's mention starts within 8 tokens: here the regime is the twelfth word.
    assert fired("قالت إيران إنها ستواصل دعم جهود السلام والتنمية في المنطقة كلها مع الأسد") == {}


def test_a_window_stays_in_one_sentence_unless_the_rule_spans_them() -> None:
    assert fired("قالت إيران إنها ستواصل الدعم. الأسد في دمشق") == {}
    wide = replace(BACKING_RULE, across_sentences=True)
    assert fired("قالت إيران إنها ستواصل الدعم. الأسد في دمشق", of=rules_profile(wide)) == {"backing": (0, 1)}


def test_a_title_rule_counts_the_title_only() -> None:
    headline = replace(BACKING_RULE, where="title")
    assert fired("إيران تدعم الأسد", title="إيران تدعم الأسد", of=rules_profile(headline)) == {"backing": (1, 0)}


def test_wildcards_match_what_arabic_attaches_at_the_end_of_a_word() -> None:
    assert fired("أكدت روسيا أن حليفتها دمشق و قوات الأسد باقية") == {"backing": (0, 1)}
    assert fired("وعدت إيران بدعمها للأسد") == {"backing": (0, 1)}  # clitic ب, pronoun ها
    assert fired("قالت إيران إن الحلول ممكنة في حلب") == {}  # حلول is not حليف*


def test_a_word_inside_a_longer_mention_of_another_slot_does_not_count_twice() -> None:
    # قوات in قوات الأسد is the regime, not a military means next to it.
    assert fired("قالت إيران إن قوات الأسد تتقدم") == {}
    assert fired("قالت إيران إن قواتها تقاتل في حلب") == {"strikes": (0, 1)}


def test_windows_do_not_overlap_and_the_title_and_lead_count_more() -> None:
    assert fired("دعمت إيران الأسد ثم دعمت روسيا الأسد") == {"backing": (0, 2)}
    words = " ".join(["كلام"] * 50) + ". "
    in_title = match_profile(RULES, title="إيران تدعم الأسد", body=words * 2)
    in_lead = match_profile(RULES, title="خبر", body="إيران تدعم الأسد. " + words * 2)
    further = match_profile(RULES, title="خبر", body=words + "إيران تدعم الأسد. " + words)
    # A window in the title counts twice; one in the lead once as lead and once as body.
    assert in_title.score == in_lead.score > further.score > match_profile(RULES, title="خبر", body=words).score


def test_a_window_counts_for_less_at_the_end_of_a_long_body() -> None:
    filler = " ".join(["كلام"] * 80) + ". "
    early = match_profile(RULES, title="", body="إيران تدعم الأسد. " + filler * 6)
    late = match_profile(RULES, title="", body=filler * 6 + "إيران تدعم الأسد.")
    short = match_profile(RULES, title="", body="إيران تدعم الأسد. " + filler)
    assert short.score > early.score > late.score


def test_context_lowers_the_score() -> None:
    plain = match_profile(RULES, title="", body="إيران تدعم الأسد")
    nuclear = match_profile(RULES, title="", body="إيران تدعم الأسد رغم الاتفاق النووي")
    assert plain.score > nuclear.score
    assert dict(nuclear.rules)["nuclear"] < 0


def test_with_no_required_rule_the_score_stays_under_the_tag_threshold() -> None:
    names = Rule("names", (("actors",),), window=1, weight=12.0)
    free = rules_profile(names, BACKING_RULE)
    gated = rules_profile(names, BACKING_RULE, require=("backing",))
    text = "روسيا إيران روسيا الإيراني"
    assert match_profile(free, title=text, body=text).score > 9
    assert match_profile(gated, title=text, body=text).score == 4.99
    report = explain(gated, title=text, body=text)
    assert isinstance(report, RulesExplanation) and report.capped is True
    assert match_profile(gated, title=text, body=text + ". إيران تدعم الأسد").score > 9


def test_explain_lists_the_windows_and_each_rules_part_of_the_log_odds() -> None:
    report = explain(RULES, title="إيران تدعم الأسد", body="وشنت الطائرات الروسية غارات على حلب. والاتفاق النووي قائم.")
    assert isinstance(report, RulesExplanation)
    assert report.model == "rules" and report.tagged is (report.score >= 5.0)
    rules = {rule.rule: rule for rule in report.rules}
    assert rules["backing"].windows == [
        RuleWindow(where="title", text="ايران تدعم الاسد", terms=["إيران", "تدعم*", "الأسد"])
    ]
    assert rules["strikes"].windows[0].text == "الروسيه غارات علي حلب"
    assert rules["nuclear"].contribution < 0
    total = report.bias + sum(rule.contribution for rule in report.rules)
    assert total == pytest.approx(report.logit, abs=0.01)
    assert {term.group for term in report.terms} == {"actors", "regime", "support", "means", "syria", "nuclear"}
    data = report.to_dict()
    [backing] = [rule for rule in data["rules"] if rule["rule"] == "backing"]
    assert backing["windows"] == [{"where": "title", "text": "ايران تدعم الاسد", "terms": ["إيران", "تدعم*", "الأسد"]}]
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data


def test_topic_matches_of_a_rules_profile_list_its_terms_in_profile_order_without_context() -> None:
    topics, matches = tag_article(
        [RULES], title="إيران تدعم الأسد", body="وشنت الطائرات الروسية غارات على حلب قرب مواقع النووي."
    )
    assert topics == ["rules"]
    assert matches[0]["terms"] == ["إيران", "الروسية", "الأسد", "حلب", "تدعم*", "غارات*"]
    article_schema = json.loads((PROJECT_ROOT / "schemas" / "article.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(matches, article_schema["properties"]["topic_matches"])


def test_a_pickled_rules_profile_reuses_its_matcher() -> None:
    from pipeline.topics import profiles

    copy = pickle.loads(pickle.dumps(RULES))
    assert profiles._compile(copy) is profiles._compile(RULES)


# --- profile files ------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "topic.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """\
id: demo
title: تجربة
thresholds: {tag: 3, alert: 6}
recipients: [desk@example.org]
terms:
  - text: حزب الله
    weight: 3
    kind: organisation
    variants: [حزب اللة]
    note: reviewed
  - text: الغارات
    weight: 2.5
    kind: keyword
"""


def write_profile(text: str) -> Path:
    directory = Path(tempfile.mkdtemp())
    return write(directory, text)


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    return str(caught.value)


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def test_good_profile_loads_with_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    loaded = load_profile(path)
    assert loaded == Profile(
        id="demo",
        title="تجربة",
        language="ar",
        terms=(
            Term("حزب الله", 3.0, "organisation", ("حزب اللة",)),
            Term("الغارات", 2.5, "keyword"),
        ),
        tag_threshold=3.0,
        alert_threshold=6.0,
        recipients=("desk@example.org",),
        source=str(path),
    )


def test_seed_profile_loads() -> None:
    seed = load_profile(SEED_PROFILE)
    assert seed.id == "iran-russia-assad"
    assert seed.rules and not seed.terms
    assert {group.role for group in seed.groups} == {"actor", "beneficiary", "relation", "theatre", "context"}
    assert seed.require and set(seed.require) <= {rule.id for rule in seed.rules}
    assert seed.tag_threshold <= seed.alert_threshold
    assert load_profiles(SEED_PROFILE.parent)[0].id == seed.id


def test_the_previous_term_weighted_profile_still_loads_and_tags() -> None:
    # Other profiles in the old format keep working: a list of weighted terms, no groups.
    previous = load_profile(PREVIOUS_PROFILE)
    assert 30 <= len(previous.terms) <= 150 and not previous.rules
    title, body = SEED_WORDINGS[0]
    assert tag_article([previous], title=title, body=body)[0] == [previous.id]


def test_unknown_field_is_reported_with_its_line(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, GOOD.replace("    note: reviewed", "    notes: reviewed")))
    assert message.startswith(f"{tmp_path / 'topic.yaml'}:10: terms[0].notes: unknown field")


def test_bad_kind_and_weight_are_reported_with_their_lines(tmp_path: Path) -> None:
    text = GOOD.replace("kind: keyword", "kind: topic").replace("weight: 3\n", "weight: 0\n")
    lines = config_error(write(tmp_path, text)).splitlines()
    assert lines[0].endswith(":7: terms[0].weight: 0 is less than or equal to the minimum of 0")
    assert ":13: terms[1].kind: 'topic' is not one of" in lines[1]


def test_missing_thresholds_and_bad_email(tmp_path: Path) -> None:
    text = GOOD.replace("thresholds: {tag: 3, alert: 6}\n", "").replace("desk@example.org", "desk")
    message = config_error(write(tmp_path, text))
    assert ":1: (top level): 'thresholds' is a required property" in message
    assert ":3: recipients[0]: 'desk' does not match" in message


def test_alert_threshold_below_tag_threshold(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, GOOD.replace("alert: 6", "alert: 2")))
    assert message.endswith(":3: thresholds.alert: below the tag threshold (3)")


def test_a_term_listed_twice_is_reported(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, GOOD + "  - text: حزب الله\n    weight: 1\n    kind: keyword\n"))
    assert message.endswith(":14: terms[2].text: 'حزب الله' matches the same words as terms[0] at line 6: merge them")


def test_a_term_with_no_word_is_reported(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, GOOD.replace("[حزب اللة]", "['،،']")))
    assert message.endswith(":9: terms[0].variants[0]: '،،' has no word to match")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, GOOD.replace("  - text: الغارات", "  - text: [الغارات")))
    assert message.startswith(f"{tmp_path / 'topic.yaml'}:") and "not valid YAML" in message


def test_unquoted_yes_is_explained(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, GOOD.replace("title: تجربة", "title: yes")))
    assert "quote the value" in message


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    assert config_error(write(tmp_path, "")).endswith("not empty")
    assert "not a list" in config_error(write(tmp_path, "- a\n"))
    assert config_error(tmp_path / "missing.yaml").endswith("no such profile")


def test_load_profiles_reads_every_yaml_and_refuses_duplicate_ids(tmp_path: Path) -> None:
    assert load_profiles(tmp_path / "absent") == []
    assert load_profiles(tmp_path) == []
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD.replace("id: demo", "id: other"), "b.yaml")
    write(tmp_path, "not a profile", "notes.txt")
    assert [loaded.id for loaded in load_profiles(tmp_path)] == ["demo", "other"]
    write(tmp_path, GOOD, "c.yaml")
    with pytest.raises(ConfigError) as caught:
        load_profiles(tmp_path)
    assert (
        str(caught.value)
        == f"{tmp_path / 'c.yaml'}:1: id: duplicate id 'demo', first declared at {tmp_path / 'a.yaml'}:1"
    )


def test_load_profiles_reports_every_bad_file(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace("kind: keyword", "kind: x"), "a.yaml")
    write(tmp_path, GOOD.replace("id: demo", "id: Bad Id"), "b.yaml")
    with pytest.raises(ConfigError) as caught:
        load_profiles(tmp_path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{tmp_path / 'a.yaml'}:13: terms[1].kind")
    assert lines[1].startswith(f"{tmp_path / 'b.yaml'}:1: id:")


RULES_YAML = """\
id: rules-demo
title: تجربة
thresholds: {tag: 5, alert: 7}
groups:
  - id: actors
    role: actor
    terms:
      - {text: إيران, kind: place, variants: [طهران]}
  - id: support
    role: relation
    terms:
      - {text: دعم*, kind: keyword}
  - id: regime
    role: beneficiary
    terms:
      - {text: الأسد, kind: person}
rules:
  - id: backing
    slots: [[actors], [support], [regime]]
    window: 10
    weight: 4
    note: Iran backing Assad
  - id: named
    slots: [[actors]]
    weight: 0.5
scoring:
  bias: -3
  require: [backing]
  calibration: by hand
"""


def test_a_rules_profile_loads() -> None:
    loaded = load_profile(write_profile(RULES_YAML))
    assert loaded.terms == () and [group.id for group in loaded.groups] == ["actors", "support", "regime"]
    assert loaded.rules[0] == Rule("backing", (("actors",), ("support",), ("regime",)), 10, 4.0, "Iran backing Assad")
    assert loaded.rules[1].window == 1 and loaded.bias == -3.0 and loaded.require == ("backing",)
    assert tag_article([loaded], title="طهران تواصل دعمها للأسد", body="")[0] == ["rules-demo"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("[[actors], [support], [regime]]", "[[actors], [support], [regim]]"),
            ":19: rules[0].slots[2][0]: no group 'regim'",
        ),
        (("require: [backing]", "require: [backed]"), ":28: scoring.require[0]: no rule 'backed'"),
        (("- {text: الأسد, kind: person}", "- {text: طهران, kind: place}"), "matches the same words as group 'actors'"),
        (("- {text: دعم*, kind: keyword}", "- {text: دع*, kind: keyword}"), "needs at least 3 letters before it"),
        (("  - id: named", "  - id: backing"), ":23: rules[1].id: duplicate rule id 'backing'"),
        (("rules:", "terms: [{text: x, weight: 1, kind: keyword}]\nrules:"), "does not use weighted terms"),
        (("  - id: support\n", "  - id: actors\n"), ":9: groups[1].id: duplicate group id 'actors'"),
    ],
)
def test_rules_profile_problems_are_reported_with_their_lines(change: tuple[str, str], expected: str) -> None:
    assert change[0] in RULES_YAML
    assert expected in config_error(write_profile(RULES_YAML.replace(*change)))


def test_a_profile_needs_terms_or_rules() -> None:
    text = RULES_YAML.split("groups:")[0]
    assert "a profile needs weighted terms, or groups and rules" in config_error(write_profile(text))
    assert "'rules' is a dependency of 'groups'" in config_error(write_profile(RULES_YAML.split("rules:")[0]))


# --- the seed profile on hand-written wordings of the story ------------------------------------

SEED_WORDINGS = [
    ("التدخل الروسي يقلب موازين المعركة في سوريا", "قال محللون إن التدخل الروسي منح قوات الأسد زخما في ريف حماة."),
    (
        "طائرات موسكو تقصف ريف إدلب",
        "شنت المقاتلات الروسية غارات على مواقع المعارضة السورية قرب خان شيخون، وقال ناشطون إن القصف الروسي طال سوقا.",
    ),
    (
        "مستشارون إيرانيون في حلب",
        "أكدت مصادر وصول المستشارين الإيرانيين إلى حلب لدعم الجيش السوري في هجومه، بإشراف الحرس الثوري.",
    ),
    ("الجنرال الإيراني يتفقد الجبهة", "ظهر قائد فيلق القدس قاسم سليماني في ريف اللاذقية إلى جانب قوات النظام السوري."),
    (
        "مقاتلو حزب الله يعززون مواقعهم في القلمون",
        "دفع حزب الله بمئات المقاتلين إلى سوريا لدعم قوات الأسد، بتنسيق مع طهران وغطاء جوي روسي.",
    ),
    (
        "غرفة عمليات مشتركة في بغداد",
        "أعلنت روسيا وإيران والعراق وسوريا إنشاء مركز معلومات مشترك في بغداد وغرفة عمليات في دمشق.",
    ),
    (
        "سفن روسية جديدة في طرطوس",
        "وصلت قطع بحرية إلى القاعدة الروسية في طرطوس على الساحل السوري، فيما تواصل الطائرات الروسية طلعاتها من حميميم.",
    ),
    (
        "لافروف: دعمنا للأسد مستمر",
        "قال وزير الخارجية الروسي سيرغي لافروف إن موسكو ستواصل دعم الحكومة السورية عسكريا وسياسيا.",
    ),
    (
        "خامنئي يشيد بصمود دمشق",
        "أشاد المرشد الإيراني علي خامنئي بالتعاون مع روسيا في سوريا، مؤكدا أن طهران لن تتخلى عن حليفها بشار الأسد.",
    ),
]
SEED_UNRELATED = [
    ("سبارتاك موسكو يفوز على زينيت", "فاز فريق سبارتاك موسكو على ضيفه زينيت بهدفين في الدوري الروسي لكرة القدم."),
    (
        "جولة جديدة من المفاوضات النووية في فيينا",
        "استأنفت إيران والقوى الكبرى المفاوضات حول البرنامج النووي الإيراني في فيينا.",
    ),
    (
        "قصف روسي على كييف",
        "أطلقت روسيا صواريخ على العاصمة الأوكرانية كييف وقال الكرملين إن الضربات استهدفت منشآت عسكرية.",
    ),
    (
        "البرلمان اللبناني يفشل في انتخاب رئيس",
        "فشل مجلس النواب اللبناني مجددا في انتخاب رئيس للجمهورية بعد انسحاب نواب حزب الله وحلفائه.",
    ),
    ("ارتفاع أسعار الخبز في دمشق", "ارتفعت أسعار الخبز في دمشق وحلب بعد قرار الحكومة السورية خفض الدعم."),
]


@pytest.mark.parametrize(("title", "body"), SEED_WORDINGS)
def test_seed_profile_tags_the_story_in_other_words(title: str, body: str) -> None:
    seed = load_profile(SEED_PROFILE)
    assert tag_article([seed], title=title, body=body)[0] == ["iran-russia-assad"], explain(
        seed, title=title, body=body
    )


@pytest.mark.parametrize(("title", "body"), SEED_UNRELATED)
def test_seed_profile_leaves_neighbouring_news_alone(title: str, body: str) -> None:
    seed = load_profile(SEED_PROFILE)
    assert tag_article([seed], title=title, body=body) == ([], []), explain(seed, title=title, body=body)


def test_seed_report_itself_reaches_the_alert_threshold() -> None:
    seed = load_profile(SEED_PROFILE)
    assert match_profile(seed, title="", body=SEED_REPORT.read_text(encoding="utf-8")).score >= seed.alert_threshold


def test_a_pickled_copy_of_a_profile_reuses_its_matcher() -> None:
    # Extraction workers receive profiles pickled with their tasks.
    from pipeline.topics import profiles

    copy = pickle.loads(pickle.dumps(CLITICS))
    assert copy is not CLITICS
    assert profiles._compile(copy) is profiles._compile(CLITICS)
    assert match_profile(copy, title="", body="والحرس الثوري") == match_profile(CLITICS, title="", body="والحرس الثوري")
