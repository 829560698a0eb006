"""`related`: an article's story cluster in order of publication with what each version changed, then
similar stories; and its `--json`, a contract (see tests/test_compare_json.py)."""

from __future__ import annotations

from pathlib import Path

from cli_runner import cli
from elasticsearch import Elasticsearch
from test_compare import make_article, story_articles, write
from test_compare_json import check_contract


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
