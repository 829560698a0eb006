"""Search for analysts against the embedded server: the query language (phrases on the exact, normalised
fields, OR, exclusions, groups), outlets by id, name or part of a name, dates, topics, one line per
story, articles indexed before the normalised fields existed, and the command as a user runs it —
after a cycle over the sample site with its failing feeds, in a pipe at 80 columns, and right after the
demo with no DATA_DIR."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import cli
from elasticsearch import Elasticsearch
from factories import make_article

from pipeline.analysis.search import (
    KnownOutlet,
    UnknownOutlet,
    describe,
    known_outlets,
    parse_query,
    resolve_outlet,
    search,
)
from pipeline.arabic.normalize import normalize_text
from pipeline.demo.server import SiteServer
from pipeline.demo.site import FAILING_FEEDS, demo_feeds
from pipeline.records import Article, FeedConfig, parse_when
from pipeline.store import index
from pipeline.store.embedded import embedded_elasticsearch
from pipeline.store.es import bulk_write
from pipeline.topics.retag import retag_all

T0 = datetime(2025, 10, 3, 9, 0, tzinfo=UTC)
STRIKES = "الضربات الجوية"


def article(
    n: int,
    title: str,
    body: str,
    *,
    outlet: str = "الشام الجديد",
    feed_id: str = "alsham-main",
    hours: float = 0,
    cluster: str = "",
    topics: tuple[str, ...] = (),
) -> Article:
    when = T0 + timedelta(hours=hours)
    return make_article(
        f"https://example.org/news/{n}",
        feed_id=feed_id,
        outlet=outlet,
        title=title,
        body=body,
        published_at=when,
        content_hash=f"h{n}",
        cluster_id=cluster,
        cluster_size=1,
        topics=topics,
    )


def put(es: Elasticsearch, alias: str, *articles: Article) -> None:
    index.ensure_indices(es, alias)
    result = bulk_write(es, index.article_actions(alias, articles))
    assert not result.failed, result.failed
    es.indices.refresh(index=alias)


def ids(result: Any) -> set[str]:
    return {hit.id for hit in result.hits}


CORPUS = {
    "raids": article(
        1, "الضربات الجوية الروسية على إدلب", "شنت الطائرات الروسية الضربات الجوية على مواقع في ريف إدلب."
    ),
    # The same words with diacritics, a hamza-less alef and another ta marbuta spelling: still the phrase.
    "spelled": article(
        2,
        "تقرير ميداني",
        "وقال مسؤول إن الضرباتُ الجوّيه استمرت حتى الفجر.",
        outlet="بوابة النيل",
        feed_id="alnil-home",
        hours=2,
    ),
    # Both words, apart: the weather and the olive harvest the issue complained about.
    "weather": article(
        3, "نشرة الأرصاد الجوية", "تتوقع الأرصاد الجوية أمطارا غزيرة، ومعها الضربات الرعدية مساء.", hours=4
    ),
    "olives": article(4, "موسم الزيتون", "قالت المديرية الجوية إن الضربات الحرارية أضرت بموسم قطاف الزيتون.", hours=6),
    # A clitic on the first word: another word, not the phrase (the analyzer would take it).
    "clitic": article(
        5, "بيان عسكري", "وأكد البيان أن والضربات الجوية تواصلت.", outlet="صحيفة الواحة", feed_id="alwaha-news", hours=8
    ),
    "football": article(6, "كرة القدم: فوز مثير", "فاز الفريق في مباراة كرة القدم أمس بثلاثة أهداف.", hours=10),
}


def normalised_tokens(text: str) -> list[str]:
    return re.findall(r"\w+", normalize_text(text))


def contains(text: str, phrase: str) -> bool:
    words, want = normalised_tokens(text), normalised_tokens(phrase)
    return any(words[i : i + len(want)] == want for i in range(len(words) - len(want) + 1))


def test_a_quoted_phrase_finds_only_articles_with_those_words_in_that_order(es: Elasticsearch, alias: str) -> None:
    put(es, alias, *CORPUS.values())
    exact = search(es, alias, f'"{STRIKES}"')
    assert ids(exact) == {CORPUS["raids"].id, CORPUS["spelled"].id}
    for hit in exact.hits:
        text = next(a for a in CORPUS.values() if a.id == hit.id)
        assert contains(text.title + "\n" + text.body, STRIKES)
    # The same words unquoted reach the weather and the olive harvest too: quotes are what make it a phrase.
    loose = search(es, alias, STRIKES)
    assert {CORPUS["weather"].id, CORPUS["olives"].id} <= ids(loose)
    # «…» quotes, and the highlight shows the phrase in the original text.
    arabic_quotes = search(es, alias, f"«{STRIKES}»")
    assert ids(arabic_quotes) == ids(exact)
    raids = next(h for h in exact.hits if h.id == CORPUS["raids"].id)
    assert "<mark>" in raids.title_marked and any("<mark>" in s for s in raids.snippets)
    assert ids(search(es, alias, '"كرة القدم"')) == {CORPUS["football"].id}


def test_words_match_their_arabic_forms_and_are_highlighted(es: Elasticsearch, alias: str) -> None:
    raids = article(30, "غارات روسية", "نفذت الطائرات الغارات الروسية على ريف حماة.", outlet="بوابة النيل")
    put(es, alias, *CORPUS.values(), raids)
    found = search(es, alias, "الغارة الروسية")  # singular: the stems meet
    assert raids.id in ids(found)
    hit = next(h for h in found.hits if h.id == raids.id)
    assert any("<mark>" in fragment for fragment in hit.snippets)


def test_or_exclusions_and_groups_follow_the_documented_syntax(es: Elasticsearch, alias: str) -> None:
    put(es, alias, *CORPUS.values())
    either = search(es, alias, f'"{STRIKES}" OR "كرة القدم"')
    assert ids(either) == {CORPUS["raids"].id, CORPUS["spelled"].id, CORPUS["football"].id}
    assert ids(search(es, alias, f'"{STRIKES}" | "كرة القدم"')) == ids(either)
    assert ids(search(es, alias, f'"{STRIKES}" -إدلب')) == {CORPUS["spelled"].id}
    assert ids(search(es, alias, f'"{STRIKES}" NOT إدلب')) == {CORPUS["spelled"].id}
    grouped = search(es, alias, f'("{STRIKES}" OR الزيتون) -(إدلب OR الفجر)')
    assert ids(grouped) == {CORPUS["olives"].id}
    assert grouped.understood == f'("{STRIKES}" OR الزيتون) -(إدلب OR الفجر)'
    # Words side by side must all be there; a stop word among them does not empty the result.
    assert ids(search(es, alias, "الزيتون في موسم")) == {CORPUS["olives"].id}


def test_the_query_is_read_leniently_and_shown_back_as_understood() -> None:
    assert describe(parse_query("روسيا OR إيران الأسد")) == "(روسيا OR إيران) الأسد"
    assert describe(parse_query('(روسيا | إيران) +الأسد -"كرة القدم"~2')) == '(روسيا OR إيران) الأسد -"كرة القدم"~2'
    assert describe(parse_query('"unclosed phrase')) == '"unclosed phrase"'
    assert describe(parse_query("x ) y (z OR")) == "x y z"
    assert describe(parse_query("covid-19 صاروخ*")) == "covid-19 صاروخ*"
    assert describe(parse_query("or and not")) == "or and not"  # operators only in capitals
    for empty in ("", "   ", "OR AND", "NOT", '""'):
        with pytest.raises(ValueError, match="nothing to search for"):
            parse_query(empty)
    with pytest.raises(ValueError, match="only excludes"):
        parse_query("-طقس -رياضة")


def test_outlets_are_found_by_feed_id_name_or_part_and_an_unknown_one_lists_the_known(
    es: Elasticsearch, alias: str
) -> None:
    put(es, alias, *CORPUS.values())
    feeds = [FeedConfig(id="almanara-atom", url="https://x/feed", outlet="المنارة المغاربية")]
    known = known_outlets(es, alias, feeds)
    assert known["الشام الجديد"] == KnownOutlet(feed_ids={"alsham-main"}, articles=4)
    by_part = resolve_outlet("الشام", known)
    assert by_part.outlets == ("الشام الجديد",)
    assert ids(search(es, alias, STRIKES, outlet=by_part)) == {
        CORPUS["raids"].id,
        CORPUS["weather"].id,
        CORPUS["olives"].id,
    }
    assert resolve_outlet("alnil-home", known).feed_ids == ("alnil-home",)
    assert resolve_outlet("بوابه النيل", known).outlets == ("بوابة النيل",)  # ta marbuta typed as ha
    assert ids(search(es, alias, f'"{STRIKES}"', outlet=resolve_outlet("alnil", known))) == {CORPUS["spelled"].id}
    with pytest.raises(UnknownOutlet) as raised:
        resolve_outlet("الجزيرة", known)
    message = str(raised.value)
    assert "In the index: الشام الجديد (alsham-main)" in message
    assert "nothing indexed yet: المنارة المغاربية (almanara-atom)" in message and "\n" not in message


def test_dates_and_topics_narrow_the_search(es: Elasticsearch, alias: str) -> None:
    tagged = article(
        7, "الضربات الجوية تتواصل", "قالت مصادر إن الضربات الجوية تتواصل.", hours=30, topics=("iran-russia-assad",)
    )
    put(es, alias, *CORPUS.values(), tagged)
    day = search(es, alias, f'"{STRIKES}"', since=parse_when("2025-10-03"), until=parse_when("2025-10-03", end=True))
    assert ids(day) == {CORPUS["raids"].id, CORPUS["spelled"].id}
    later = search(es, alias, f'"{STRIKES}"', since=T0 + timedelta(hours=1))
    assert ids(later) == {CORPUS["spelled"].id, tagged.id}
    assert ids(search(es, alias, f'"{STRIKES}"', topic="iran-russia-assad")) == {tagged.id}
    assert parse_when("36h", now=T0) == T0 - timedelta(hours=36)
    with pytest.raises(ValueError, match="not a date"):
        parse_when("yesterday")


def test_cluster_shows_one_line_per_story_with_its_copies(es: Elasticsearch, alias: str) -> None:
    head = article(10, "غارات على إدلب", "تواصلت الضربات الجوية على إدلب.", cluster="story-a")
    copies = [
        article(
            11, "قصف إدلب", "تواصلت الضربات الجوية على إدلب صباحا.", outlet="بوابة النيل", cluster="story-a", hours=1
        ),
        article(
            12, "إدلب تحت القصف", "تواصلت الضربات الجوية على إدلب.", outlet="صحيفة الواحة", cluster="story-a", hours=2
        ),
    ]
    other = article(13, "خبر آخر", "الضربات الجوية في مكان آخر.", cluster="story-b", hours=3)
    put(es, alias, head, *copies, other)
    es.update_by_query(
        index=alias,
        query={"term": {"cluster_id": "story-a"}},
        script={"source": "ctx._source.cluster_size = 3"},
        refresh=True,
    )
    per_copy = search(es, alias, f'"{STRIKES}"', sort="newest")
    assert per_copy.total == 4 and len(per_copy.hits) == 4
    per_story = search(es, alias, f'"{STRIKES}"', sort="newest", cluster=True)
    assert per_story.total == 4 and per_story.stories == 2
    assert [h.cluster_id for h in per_story.hits] == ["story-b", "story-a"]
    story = per_story.hits[1]
    assert story.id == copies[1].id  # the newest copy stands for the story when sorting by date
    assert story.copies == 3 and set(story.other_outlets) == {"الشام الجديد", "بوابة النيل"}
    assert per_copy.hits[0].other_outlets == ()  # outlets are read for stories only


def test_articles_indexed_before_the_exact_fields_are_counted_until_retag_fills_them(
    es: Elasticsearch, alias: str
) -> None:
    put(es, alias, CORPUS["raids"], CORPUS["weather"])
    # What an older version wrote: the article without title_norm, summary_norm and body_norm.
    old = article(20, "تقرير قديم", "استمرت الضربات الجوية طوال الليل.", hours=1)
    es.index(index=alias, id=old.id, document=old.to_doc(), refresh=True)
    before = search(es, alias, f'"{STRIKES}"')
    assert ids(before) == {CORPUS["raids"].id} and before.unnormalised == 1
    assert search(es, alias, STRIKES).unnormalised == 0  # words do not need the normalised fields
    summary = retag_all(es, alias, [])
    assert summary.normalised == 1 and summary.failed == 0
    stored = es.get(index=alias, id=old.id)["_source"]
    assert stored["body_norm"] == normalize_text(old.body) and stored["title_norm"] == normalize_text(old.title)
    after = search(es, alias, f'"{STRIKES}"')
    assert ids(after) == {CORPUS["raids"].id, old.id} and after.unnormalised == 0
    assert retag_all(es, alias, []).normalised == 0  # done once


# --- the command, as a user runs it -------------------------------------------------------------------


@pytest.fixture
def cycle_env(demo_site: SiteServer, tmp_path: Path) -> dict[str, str]:
    """A cycle over the sample site (its failing feeds included) into the embedded default."""
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(yaml.safe_dump({"feeds": demo_feeds(demo_site.base_url)}, allow_unicode=True), encoding="utf-8")
    env = {"DATA_DIR": str(tmp_path / "data"), "FEEDS_FILE": str(feeds), "ALLOW_PRIVATE_HOSTS": "1"}
    ran = cli("run", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["feeds_failed"] == len(FAILING_FEEDS)
    return env


def indexed_docs(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every article the cycle indexed, read straight from its embedded server."""
    with embedded_elasticsearch(Path(env["DATA_DIR"])) as url:
        client = Elasticsearch(url, request_timeout=30)
        try:
            hits = client.search(index="news-articles", query={"match_all": {}}, size=1000)["hits"]["hits"]
        finally:
            client.close()
    return {hit["_id"]: hit["_source"] for hit in hits}


def test_the_search_command_after_a_cycle_with_failing_feeds(cycle_env: dict[str, str]) -> None:
    phrase = "حزب الله"
    result = cli("search", f'"{phrase}"', "--json", "-n", "100", env=cycle_env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["understood"] == f'"{phrase}"' and data["total"] == len(data["hits"]) > 0
    # Every article that holds the phrase word for word, and only those: the whole index, read to check.
    docs = indexed_docs(cycle_env)
    holding = {i for i, d in docs.items() if contains(f"{d['title']}\n{d['summary']}\n{d['body']}", phrase)}
    assert {h["id"] for h in data["hits"]} == holding
    loose = json.loads(cli("search", phrase, "--json", "-n", "100", env=cycle_env).stdout)
    assert holding <= {h["id"] for h in loose["hits"]}
    assert all("<mark>" in hit["title_marked"] + " ".join(hit["snippets"]) for hit in data["hits"])

    # By part of an outlet's name, one line per story, newest first.
    outlet = data["hits"][0]["outlet"]
    part = max(outlet.split(), key=len)
    narrowed = json.loads(
        cli("search", f'"{phrase}"', "--outlet", part, "--cluster", "--sort", "newest", "--json", env=cycle_env).stdout
    )
    assert narrowed["outlet"]["outlets"] == [outlet] and narrowed["hits"]
    assert all(h["outlet"] == outlet for h in narrowed["hits"])
    assert len({h["cluster_id"] for h in narrowed["hits"]}) == len(narrowed["hits"]) == narrowed["stories"]
    dates = [h["published_at"] for h in narrowed["hits"]]
    assert dates == sorted(dates, reverse=True)
    unknown = cli("search", phrase, "--outlet", "الجزيرة", env=cycle_env)
    assert unknown.returncode == 1 and "الشام الجديد (alsham-main, alsham-opinion)" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert cli("search", "-طقس", env=cycle_env).returncode == 2
    assert cli("search", phrase, "--since", "last week", env=cycle_env).returncode == 2

    # Human output at 80 columns in a pipe: whole dates, highlights as **…**, every URL whole.
    human = cli("search", f'"{phrase}" OR سليماني', "-n", "5", env={**cycle_env, "COLUMNS": "80"})
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert re.match(r"\d+ articles? match", lines[0])
    assert all(re.search(r" · \d{4}-\d\d-\d\d \d\d:\d\d", line) for line in lines if " · " in line)
    assert "**" in human.stdout and "<mark>" not in human.stdout
    shown = json.loads(cli("search", f'"{phrase}" OR سليماني', "-n", "5", "--json", env=cycle_env).stdout)
    assert all(f"   {h['url']}" in lines for h in shown["hits"])
    assert all(f"   id {h['id']}" in "\n".join(lines) for h in shown["hits"])


def test_after_the_demo_read_commands_find_its_index_or_say_what_to_run(tmp_path: Path) -> None:
    nothing = cli("search", "سوريا", cwd=tmp_path)
    assert nothing.returncode == 1
    assert "python -m pipeline run" in nothing.stderr and "python -m pipeline demo" in nothing.stderr
    assert not (tmp_path / "data" / "es").exists()  # no empty server started just to find nothing
    demo = cli("demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    hint = next(line.strip() for line in demo.stdout.splitlines() if "python -m pipeline search " in line)
    assert hint.startswith("python -m pipeline search ")  # no DATA_DIR needed
    found = cli("search", "روسيا", "--json", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"]
    assert found.stderr.count("\n") == 1 and "data/demo" in found.stderr
    article_id = json.loads(found.stdout)["hits"][0]["id"]
    for command in (["related", article_id], ["profile", "explain", article_id], ["alerts", "list"]):
        ran = cli(*command, "--json", cwd=tmp_path)
        assert ran.returncode == 0, (command, ran.stderr)
        assert "reading the demo's index" in ran.stderr
    # `feeds` too, with the feed list the demo polled (not the seed list).
    feeds = cli("feeds", "--json", cwd=tmp_path)
    assert feeds.returncode == 0 and "reading the demo's index" in feeds.stderr
    assert [h["id"] for h in json.loads(feeds.stdout)] == [f["id"] for f in demo_feeds("x", stale=True)]
    assert any(line.strip() == "python -m pipeline feeds" for line in demo.stdout.splitlines())
    assert not (tmp_path / "data" / "es").exists()
    # A write command never falls back on the demo's data.
    retag = cli("retag", "--json", cwd=tmp_path)
    assert retag.returncode == 0 and "demo" not in retag.stderr and (tmp_path / "data" / "es").exists()
