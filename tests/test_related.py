"""`related`: an article's story cluster in order of publication with what each version changed, then
similar stories; the sentence diff behind it; and its `--json`, a contract (see tests/test_compare_json.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import cli
from elasticsearch import Elasticsearch
from test_cluster import COPY, OTHER, WIRE, article, run
from test_compare import make_article, story_articles, write
from test_compare_json import check_contract

from pipeline.analysis.story import Reworded, TextDiff, diff_sentences, related
from pipeline.errors import IndexingError


@pytest.mark.usefixtures("indexed")
def test_related_shows_the_cluster_in_order_with_differences_then_similar_stories(
    es: Elasticsearch, alias: str
) -> None:
    update = [*WIRE, "وفي وقت لاحق ارتفعت حصيلة القتلى إلى عشرة مدنيين بينهم ثلاثة أطفال بحسب المرصد."]
    wire = article(1, WIRE, title="غارات روسية على ريف إدلب الجنوبي")
    copy = article(2, COPY, minutes=40, outlet="صحيفة", title="مقتل مدنيين بغارات روسية في ريف إدلب")
    other = article(3, OTHER, title="مقاتلات روسية تقصف أطراف جسر الشغور في ريف إدلب")
    later = article(4, update, minutes=90, outlet="موقع", title="ارتفاع حصيلة الغارات الروسية على إدلب")
    unrelated = article(5, ["ارتفعت أسعار الذهب في الأسواق المحلية مع تراجع سعر صرف العملة."] * 3, title="الذهب يرتفع")
    run(es, alias, [copy, wire, other, later, unrelated])
    data = related(es, alias, copy.id)
    assert [m.id for m in data.cluster] == [wire.id, copy.id, later.id]
    assert [m.lag_minutes for m in data.cluster] == [0, 40, 90]
    assert data.cluster[1].is_this and data.cluster[0].diff is None
    # "سبعة" became "٧": one sentence reworded, the last one dropped; the later version added one.
    assert data.cluster[1].diff == TextDiff(added=[], removed=[WIRE[3]], reworded=[Reworded(WIRE[1], COPY[1])])
    assert data.cluster[2].diff == TextDiff(added=[update[-1]])
    assert [s.id for s in data.similar] == [other.id]  # the other Idlib strike story, not the cluster


@pytest.mark.usefixtures("indexed")
def test_related_of_an_unknown_id_is_a_clear_error(es: Elasticsearch, alias: str) -> None:
    with pytest.raises(IndexingError, match="no article with id nope"):
        related(es, alias, "nope")


def test_sentence_diff_ignores_spelling_and_sees_rewording() -> None:
    diff = diff_sentences(
        "قال الوزير إنّ الاتفاق نهائي. وأكد أن التنفيذ يبدأ غداً في العاصمة. وشكر الوسطاء.",
        "قال الوزير ان الاتفاق نهائي. واكد الوزير ان التنفيذ يبدأ غدا في العاصمة. ودعا إلى التهدئة.",
    )
    assert diff.added == ["ودعا إلى التهدئة."] and diff.removed == ["وشكر الوسطاء."]
    assert diff.reworded == [
        Reworded(first="وأكد أن التنفيذ يبدأ غداً في العاصمة.", this="واكد الوزير ان التنفيذ يبدأ غدا في العاصمة.")
    ]
    assert diff.to_dict()["reworded"] == [
        {"first": "وأكد أن التنفيذ يبدأ غداً في العاصمة.", "this": "واكد الوزير ان التنفيذ يبدأ غدا في العاصمة."}
    ]


def test_related_json_is_unchanged(es: Elasticsearch, es_url: str, alias: str, tmp_path: Path) -> None:
    _, versions, others = story_articles()
    # Two stories on the same depot that are not copies of the wire (other clusters): the similar ones.
    similar = [
        make_article(
            "https://similar.example/1",
            "نبض المدينة",
            "2025-03-02T12:00:00Z",
            "الأمم المتحدة تدين قصف مستودع المساعدات في الأتارب",
            "أدانت الأمم المتحدة الغارات التي استهدفت مستودعاً للمساعدات الإنسانية في بلدة الأتارب بريف حلب الغربي.",
            cluster_id="similar-1",
        ),
        make_article(
            "https://similar.example/2",
            "صحيفة الضفتين",
            "2025-03-03T09:00:00Z",
            "نازحو ريف حلب الغربي بلا طحين بعد قصف المستودع",
            "يعاني النازحون في المخيمات نقصاً في الطحين والأدوية بعد قصف مستودع المساعدات في الأتارب.",
            cluster_id="similar-2",
        ),
    ]
    write(es, alias, [*versions.values(), *others, *similar])
    env = {"ES_URL": es_url, "ES_INDEX": alias, "DATA_DIR": str(tmp_path / "data")}
    for name, args in (
        ("related", [versions["third"].id]),
        ("related-first-two-similar", [versions["first"].id, "--similar", "2"]),
    ):
        result = cli("related", *args, "--json", env=env)
        assert result.returncode == 0, result.stderr
        check_contract(name, result.stdout)
