"""Extraction quality floors on the committed fixtures (``tests/fixtures/extraction/``: Arabic pages with
outlet chrome, written for this purpose, with their expected bodies) and on the sample site's pages: the
fast path (trafilatura's main pass alone where confident) must lose nothing against the full default
path, and both must find the body and leave the chrome. The figures per page class, with trafilatura's
own test pages, come from ``bench/bench_extraction_quality.py``."""

from __future__ import annotations

import sys

import pytest

from pipeline.ingest.extract import extract_body
from pipeline.settings import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT))
from bench.bench_extraction_quality import (  # noqa: E402
    Case,
    fixture_cases,
    leaked,
    sample_site_cases,
    token_f1,
)

FIXTURES = list(fixture_cases())
SAMPLE = list(sample_site_cases())
# Lowest token F1 against the expected body, per source (the sample site's pages carry bylines and captions
# that are not in the corpus paragraphs).
FLOOR = {"fixtures": 0.85, "sample site": 0.94}


def _ids(cases: list[Case]) -> list[str]:
    return [c.name for c in cases]


@pytest.mark.parametrize("case", FIXTURES + SAMPLE, ids=_ids(FIXTURES + SAMPLE))
def test_the_fast_path_finds_the_body_as_well_as_the_full_path_and_leaks_no_chrome(case: Case) -> None:
    assert case.body is not None
    fast = extract_body(case.html, url="https://example.org/a", fallback="auto")["text"]
    full = extract_body(case.html, url="https://example.org/a", fallback="always")["text"]
    assert token_f1(fast, case.body) >= token_f1(full, case.body) - 1e-9
    assert token_f1(fast, case.body) >= FLOOR[case.source], fast
    assert leaked(fast, case.boilerplate) == []
    assert leaked(full, case.boilerplate) == []


def test_the_fixtures_cover_the_page_classes_of_news_sites() -> None:
    classes = {c.page_class for c in FIXTURES}
    assert {"article with chrome", "short brief", "body without paragraphs", "article with a table"} <= classes
    assert {"live updates", "interview", "photo story", "AMP page", "body split by inserts"} <= classes


def test_pages_where_the_main_pass_is_unsure_take_the_full_path() -> None:
    paths = {c.page_class: extract_body(c.html, url="https://example.org/a")["path"] for c in FIXTURES}
    assert paths["short brief"] == "full"  # the fallbacks most often find more on short texts
    assert paths["article with chrome"] == "fast"


def test_token_f1_and_leaks_measure_what_they_say() -> None:
    assert token_f1("كان يا ما كان", "كان يا ما كان") == 1.0
    assert token_f1("", "نص") == 0.0 and token_f1("", "") == 1.0
    assert 0.0 < token_f1("كان يا ما كان في قديم الزمان", "كان يا ما كان") < 1.0
    assert leaked("الخبر. جميع   الحقوق محفوظة، للموقع", ["جميع الحقوق محفوظة للموقع", "اشترك الآن"]) == [
        "جميع الحقوق محفوظة للموقع"
    ]
