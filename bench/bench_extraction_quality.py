"""Extraction quality, default against fast: token F1 against the expected body and boilerplate leak,
per page class, for ``EXTRACT_FALLBACK=always`` (trafilatura's full default path on every page) and
``auto`` (its main pass alone where confident), side by side.

Page classes come from:

- ``tests/fixtures/extraction/``: Arabic pages written for this purpose (fictional events), each with
  its expected body and sentences of its chrome (cookie banner, newsletter box, related and most-read
  lists, reader comments, rights line) that must not leak into the body;
- the bundled sample site (``pipeline/demo``): every Arabic article page, per outlet template, with its
  corpus paragraphs as the expected body and its chrome marker as boilerplate;
- the benchmark's pages (``bench/bench_pipeline.py``: heavy chrome, cookie banner, comments), scored
  against the expected paragraphs the site is built from;
- real saved pages from trafilatura's own test data (its source distribution, downloaded at bench time
  with pip into a cache outside the repository, never committed): they carry no expected body, so the
  fast configuration is scored against the default's output there.

    python bench/bench_extraction_quality.py [--json] [--cache DIR] [--no-download]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.ingest.extract import decode_html, extract_body  # noqa: E402
from pipeline.settings import PROJECT_ROOT  # noqa: E402

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "extraction"
TRAFILATURA_SDIST = "trafilatura==2.3.1"
CONFIGS = ("always", "auto")  # the default path on every page; the fast path where confident
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Case:
    source: str
    page_class: str
    name: str
    html: str
    body: str | None  # None: no expected body (scored against the default configuration's output)
    boilerplate: tuple[str, ...]


def tokens(text: str) -> list[str]:
    """Words, case- and form-folded (NFKC), punctuation and layout ignored."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def token_f1(got: str, expected: str) -> float:
    """F1 of the bags of words of ``got`` and ``expected`` (1.0 when both are empty)."""
    a, b = Counter(tokens(got)), Counter(tokens(expected))
    if not a and not b:
        return 1.0
    overlap = sum((a & b).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(a.values()), overlap / sum(b.values())
    return 2 * precision * recall / (precision + recall)


def leaked(got: str, boilerplate: Iterable[str]) -> list[str]:
    """The boilerplate sentences found in ``got`` (compared word by word, so layout does not hide one)."""
    text = " " + " ".join(tokens(got)) + " "
    return [b for b in boilerplate if " " + " ".join(tokens(b)) + " " in text]


def fixture_cases() -> Iterator[Case]:
    for entry in json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8")):
        html = (FIXTURES / entry["file"]).read_text(encoding="utf-8")
        body = "\n".join(entry["body"])
        yield Case("fixtures", entry["class"], entry["file"], html, body, tuple(entry["boilerplate"]))


def sample_site_cases() -> Iterator[Case]:
    # The site's corpus holds each page's paragraphs: the expected body (a bench may read it; the
    # public ``expectations()`` gives markers only).
    from pipeline.demo.site import _corpus, build_site, expectations

    resources = build_site("http://127.0.0.1:9")
    markers = {e.path.split("#")[0]: e.boilerplate_marker for e in expectations()}
    for item in _corpus().items:
        if not item.renders_page or item.page not in ("article", "amp") or item.lang != "ar":
            continue
        res = resources.get(item.page_path)
        if res is None or res.status != 200:
            continue
        html = decode_html(res.body, res.headers.get("Content-Type", ""))
        marker = markers.get(item.link_path.split("#")[0], "")
        yield Case(
            "sample site",
            f"{item.outlet_id} {item.page}",
            item.page_path,
            html,
            "\n".join(item.paragraphs),
            (marker,) if marker else (),
        )


def bench_page_cases(n: int = 60) -> Iterator[Case]:
    from bench.bench_pipeline import COMMENTS, COOKIE_BANNER, build_sites
    from pipeline.demo.site import _bench_paragraphs, _corpus

    resources, _ = build_sites(9, n)
    corpus = _corpus()
    articles = [i for i in corpus.items if i.renders_page and i.lang == "ar" and len(i.paragraphs) >= 3]
    articles = [a for a in articles if a.page != "amp"]
    cookie = re.sub(r"<[^>]+>", " ", COOKIE_BANNER).split("  ")[0].strip()
    pages = sorted(p for p in resources if "/bench/" in p and not p.endswith(".xml"))
    for path in pages:
        i = int(path.rsplit("/", 1)[1]) - 1
        html = resources[path].body.decode("utf-8")
        body = "\n".join(_bench_paragraphs(articles, i))
        yield Case("benchmark pages", "bench page (heavy chrome)", path, html, body, (cookie, *COMMENTS[:2]))


def real_page_cases(cache: Path, *, download: bool) -> Iterator[Case]:
    """trafilatura's own test pages, from its source distribution (cached outside the repository)."""
    cache.mkdir(parents=True, exist_ok=True)
    archives = sorted(cache.glob("trafilatura-*.tar.gz"))
    if not archives and download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", TRAFILATURA_SDIST]
            + ["-d", str(cache)],
            check=True,
            capture_output=True,
        )
        archives = sorted(cache.glob("trafilatura-*.tar.gz"))
    if not archives:
        return
    with tarfile.open(archives[-1]) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if "/tests/resources/" not in member.name or not name.endswith((".html", ".htm", ".html.gz")):
                continue
            raw = tar.extractfile(member).read()  # type: ignore[union-attr]
            if name.endswith(".gz"):
                raw = gzip.decompress(raw)
            yield Case("trafilatura test pages", "real saved page", name, decode_html(raw, ""), None, ())


def score(cases: Iterable[Case]) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        out = {config: extract_body(case.html, url="https://example.org/a", fallback=config) for config in CONFIGS}
        reference = case.body if case.body is not None else out["always"].get("text", "")
        row: dict[str, Any] = {"source": case.source, "class": case.page_class, "page": case.name}
        for config in CONFIGS:
            text = out[config].get("text", "")
            row[f"f1_{config}"] = token_f1(text, reference)
            row[f"leaks_{config}"] = len(leaked(text, case.boilerplate))
            row[f"path_{config}"] = out[config].get("path", "")
        row["boilerplate"] = len(case.boilerplate)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per page class: pages, mean and lowest F1 and leaks for each configuration, pages kept on the fast
    path, and whether the fast configuration lost anything there."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["source"], row["class"])].append(row)
    out = []
    for (source, cls), group in sorted(groups.items()):
        entry: dict[str, Any] = {"source": source, "class": cls, "pages": len(group)}
        for config in CONFIGS:
            entry[f"f1_{config}"] = round(sum(r[f"f1_{config}"] for r in group) / len(group), 3)
            entry[f"min_f1_{config}"] = round(min(r[f"f1_{config}"] for r in group), 3)
            entry[f"leaks_{config}"] = (
                f"{sum(r[f'leaks_{config}'] for r in group)}/{sum(r['boilerplate'] for r in group)}"
            )
        entry["fast_path_pages"] = sum(r["path_auto"] == "fast" for r in group)
        entry["fast_loses"] = any(
            r["f1_auto"] < r["f1_always"] - 1e-9 or r["leaks_auto"] > r["leaks_always"] for r in group
        )
        out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bench-extraction-quality")
    parser.add_argument("--no-download", action="store_true", help="skip trafilatura's pages unless cached")
    args = parser.parse_args()
    cases = [
        *fixture_cases(),
        *sample_site_cases(),
        *bench_page_cases(),
        *real_page_cases(args.cache, download=not args.no_download),
    ]
    rows = score(cases)
    result = {"classes": table(rows), "pages": rows}
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    head = ("source", "class", "pages", "f1_always", "f1_auto", "min_f1_always", "min_f1_auto")
    head += ("leaks_always", "leaks_auto", "fast_path_pages", "fast_loses")
    print(" | ".join(head))
    for entry in result["classes"]:
        print(" | ".join(str(entry[k]) for k in head))


if __name__ == "__main__":
    main()
