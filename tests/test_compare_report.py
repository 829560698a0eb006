"""The `compare --html` reports in headless Chromium: self-contained, charts drawn by plotly, the page
laid out right to left with Arabic headings on the right, and index text escaped."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from browser import ARTIFACTS, chrome, screenshot
from elasticsearch import Elasticsearch
from test_compare import PROFILE, SINCE, UNTIL, make_article, story_articles, topic_articles, write

from pipeline.analysis.report_html import story_html, topic_html
from pipeline.analysis.story import compare_story
from pipeline.analysis.topic import compare_topic
from pipeline.settings import PROJECT_ROOT

CHARTS = {"chart-over-time": 4, "chart-shares": 2, "chart-lags": 4, "chart-terms": 2}


def _wait_for_charts(driver: Any, ids: list[str], timeout: float = 30) -> None:
    script = "return arguments[0].every(id => document.querySelector('#' + id + ' .main-svg'))"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script(script, ids):
            return
        time.sleep(0.1)
    raise AssertionError(f"plotly did not draw {ids}")


_LAYOUT = """
const root = document.documentElement, h1 = document.querySelector('h1');
const range = document.createRange(); range.selectNodeContents(h1);
const text = range.getBoundingClientRect(), body = document.body.getBoundingClientRect();
const pad = parseFloat(getComputedStyle(document.body).paddingRight);
return {dir: root.dir, lang: root.lang, direction: getComputedStyle(document.body).direction,
        textRight: text.right, textLeft: text.left, contentRight: body.right - pad, contentLeft: body.left,
        width: window.innerWidth, resources: performance.getEntriesByType('resource').map(r => r.name),
        plotly: typeof window.Plotly === 'object'};
"""


def _check_rtl(layout: dict[str, Any]) -> None:
    assert (layout["dir"], layout["lang"], layout["direction"]) == ("rtl", "ar", "rtl")
    # The Arabic heading starts at the right edge of the content and runs leftwards.
    assert abs(layout["textRight"] - layout["contentRight"]) <= 4, layout
    assert layout["textLeft"] - layout["contentLeft"] > 100, layout
    assert layout["plotly"] and layout["resources"] == []  # nothing fetched: the file is self-contained


def test_topic_report_draws_its_charts_right_to_left(es: Elasticsearch, alias: str, tmp_path: Path) -> None:
    _, articles = topic_articles()
    write(es, alias, articles)
    data = compare_topic(es, alias, PROFILE, since=SINCE, until=UNTIL)
    page = tmp_path / "topic.html"
    text = topic_html(data, title="الحرب في سوريا")
    page.write_text(text, encoding="utf-8")
    assert "<script src=" not in text and "<link " not in text
    with chrome(1280, 3400) as driver:
        driver.get(page.as_uri())  # type: ignore[attr-defined]
        _wait_for_charts(driver, list(CHARTS))
        for chart, traces in CHARTS.items():
            found = driver.execute_script(  # type: ignore[attr-defined]
                "const c = document.getElementById(arguments[0]);"
                "return {svgs: c.querySelectorAll('.main-svg').length, traces: c.querySelectorAll('g.trace').length,"
                " marks: c.querySelectorAll('g.trace path').length, title: c.querySelector('.gtitle').textContent};",
                chart,
            )
            assert found["svgs"] >= 1 and found["traces"] >= traces and found["marks"] >= traces, (chart, found)
            assert any("\u0600" <= ch <= "\u06ff" for ch in found["title"]), found  # an Arabic chart title
        labels = driver.execute_script(  # type: ignore[attr-defined]
            "return [...document.querySelectorAll('#chart-terms .yaxislayer-above text')].map(t => t.textContent)"
        )
        assert {"الميليشيات", "التدخل الروسي", "القوات الحليفة", "الدعم الروسي"} <= set(labels)
        _check_rtl(driver.execute_script(_LAYOUT))  # type: ignore[attr-defined]
        shot = screenshot(driver, "compare-topic-report.png")  # docs/img/compare-report.png is a copy
    assert shot.stat().st_size > 50_000
    shutil.copy(page, ARTIFACTS / "compare-topic-report.html")


def test_text_from_the_index_never_runs_in_the_report(es: Elasticsearch, alias: str, tmp_path: Path) -> None:
    # An outlet and a headline that would run script if they reached the page (or plotly's labels) raw.
    _, articles = topic_articles()
    hostile = make_article(
        "https://x.example/1",
        "<script>window.__xss = 1</script>",
        "2025-03-02T09:00:00Z",
        '<img src=x onerror="window.__xss = 2"><b>عنوان</b>',
        "نص قصير عن الغارات.",
        topics=(PROFILE,),
    )
    write(es, alias, [*articles, hostile])
    text = topic_html(compare_topic(es, alias, PROFILE, since=SINCE, until=UNTIL))
    assert "<script>window" not in text and "&lt;script&gt;window.__xss" in text and "<img src=x" not in text
    page = tmp_path / "hostile.html"
    page.write_text(text, encoding="utf-8")
    with chrome(1280, 1000) as driver:
        driver.get(page.as_uri())  # type: ignore[attr-defined]
        _wait_for_charts(driver, list(CHARTS))
        assert driver.execute_script("return window.__xss === undefined")  # type: ignore[attr-defined]
        shown = driver.execute_script(  # type: ignore[attr-defined]
            "return [...document.querySelectorAll('#chart-shares .yaxislayer-above text')].map(t => t.textContent)"
        )
        assert "<script>window.__xss = 1</script>" in shown  # shown as text, not run


def test_story_report_shows_each_version_right_to_left(es: Elasticsearch, alias: str, tmp_path: Path) -> None:
    spec, versions, others = story_articles()
    write(es, alias, [*versions.values(), *others])
    data = compare_story(es, alias, versions["first"].id)
    page = tmp_path / "story.html"
    page.write_text(story_html(data), encoding="utf-8")
    with chrome(1280, 1800) as driver:
        driver.get(page.as_uri())  # type: ignore[attr-defined]
        _wait_for_charts(driver, ["chart-lag"])
        bars = driver.execute_script(  # type: ignore[attr-defined]
            "return document.querySelectorAll('#chart-lag g.trace.bars g.point').length"
        )
        assert bars == len(versions)
        cards = driver.execute_script(  # type: ignore[attr-defined]
            "return [...document.querySelectorAll('.version')].map(v => ({"
            "added: [...v.querySelectorAll('li.added')].map(l => l.textContent.slice(2)),"
            "removed: [...v.querySelectorAll('li.removed')].map(l => l.textContent.slice(2))}))"
        )
        expected = spec["expected"]
        for key, card in zip(expected["order"][1:], cards[1:], strict=True):
            assert card["added"] == expected["added"][key]
            assert card["removed"] == [spec["sentences"][k] for k in expected["removed"][key]]
        _check_rtl(driver.execute_script(_LAYOUT))  # type: ignore[attr-defined]
        screenshot(driver, "compare-story-report.png")


def test_the_readme_screenshot_is_the_topic_report() -> None:
    image = PROJECT_ROOT / "docs" / "img" / "compare-report.png"
    assert image.exists() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
