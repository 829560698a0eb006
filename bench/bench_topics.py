"""Topic tagging side by side on real and written labelled articles, and the time it takes.

Three taggers, each at its own thresholds:

* the seed profile (``seeds/profiles/iran-russia-assad.yaml``: term groups and rules);
* the previous profile and matcher (``bench/profiles/iran-russia-assad-v1.yaml``: weighted terms
  summed, tag 5.2, alert 7);
* a naive baseline: any of the previous profile's ten heaviest terms in the normalised text.

On corpus-dev (relevant vs not; borderline articles counted apart) — development figures: the seed
profile's weights were fitted on it (``bench/fit_topics.py`` gives the leave-one-out figures) — and
on the written fixtures of ``tests/fixtures/topics``. Then the matching time per article.

    python bench/bench_topics.py [--labels DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_topic_accuracy import PREVIOUS_PROFILE, SEED_PROFILE, SEED_REPORT, corpus_dev, load_examples  # noqa: E402

from pipeline.arabic.normalize import normalize_text  # noqa: E402
from pipeline.topics.evaluate import Confusion, Labelled, load_labelled  # noqa: E402
from pipeline.topics.profiles import Profile, load_profile, match_profile  # noqa: E402

Tagger = Callable[[Labelled], float]  # an article's score; the caller compares it with thresholds


def scorer(profile: Profile) -> Tagger:
    return lambda article: match_profile(profile, title=article.title, body=article.body).score


def naive(profile: Profile) -> Tagger:
    heaviest = [normalize_text(term.text) for term in sorted(profile.terms, key=lambda term: -term.weight)[:10]]
    return lambda article: (
        10.0 if any(n in normalize_text(f"{article.title}\n{article.body}") for n in heaviest) else 0.0
    )


def row(name: str, threshold: float, scores: Sequence[float], articles: Sequence[Labelled]) -> str:
    scored = [
        (a.label == "relevant", s >= threshold)
        for a, s in zip(articles, scores, strict=True)
        if a.label != "borderline"
    ]
    matrix = Confusion.of(scored)
    border = [s >= threshold for a, s in zip(articles, scores, strict=True) if a.label == "borderline"]
    borderline = f"{sum(border)} of {len(border)}" if border else "—"
    return (
        f"| {name} | {matrix.precision:.3f} | {matrix.recall:.3f} | {matrix.f1:.3f} | {matrix.true_positive} | "
        f"{matrix.false_positive} | {matrix.false_negative} | {matrix.true_negative} | {borderline} |"
    )


def table(title: str, articles: Sequence[Labelled], seed: Profile, previous: Profile) -> None:
    print(f"\n{title}\n")
    print("| tagger | precision | recall | F1 | TP | FP | FN | TN | borderline tagged |")
    print("|---|---|---|---|---|---|---|---|---|")
    ours = [scorer(seed)(a) for a in articles]
    before = [scorer(previous)(a) for a in articles]
    baseline = [naive(previous)(a) for a in articles]
    print(row(f"seed profile, tag ≥ {seed.tag_threshold:g}", seed.tag_threshold, ours, articles))
    print(row(f"seed profile, alert ≥ {seed.alert_threshold:g}", seed.alert_threshold, ours, articles))
    print(row(f"previous profile, tag ≥ {previous.tag_threshold:g}", previous.tag_threshold, before, articles))
    print(row(f"previous profile, alert ≥ {previous.alert_threshold:g}", previous.alert_threshold, before, articles))
    print(row("naive: any of the 10 heaviest terms", 5.0, baseline, articles))


def timing(seed: Profile, previous: Profile, articles: Sequence[Labelled]) -> None:
    words = SEED_REPORT.read_text(encoding="utf-8").split()
    dense = Labelled("report", "عنوان", " ".join(words[:600]), "relevant")
    print("\n| matching time | seed profile | previous profile |\n|---|---|---|")
    for name, sample, runs in (
        ("600 words of the seed report", [dense], 200),
        ("corpus-dev, per article", articles, 3),
    ):
        cells = []
        for profile in (seed, previous):
            tag = scorer(profile)
            for article in sample:  # compile and warm the token memo, as a worker does
                tag(article)
            started = time.perf_counter()
            for _ in range(runs):
                for article in sample:
                    tag(article)
            cells.append(f"{(time.perf_counter() - started) / runs / len(sample) * 1000:.2f} ms")
        print(f"| {name} | {cells[0]} | {cells[1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=None, help="a labelled set [default: corpus-dev]")
    args = parser.parse_args()
    seed, previous = load_profile(SEED_PROFILE), load_profile(PREVIOUS_PROFILE)
    labels = args.labels or corpus_dev()
    articles: list[Labelled] = []
    if labels is None:
        print("no corpus-dev (set CORPUS_DEV or pass --labels): written fixtures only")
    else:
        articles = load_labelled(labels)
        counts = {label: sum(a.label == label for a in articles) for label in ("relevant", "not", "borderline")}
        table(
            f"{labels} — development figures ({counts['relevant']} relevant, {counts['not']} not, "
            f"{counts['borderline']} borderline counted apart)",
            articles,
            seed,
            previous,
        )
    fixtures = [Labelled(e.id, e.title, e.body, "relevant" if e.on else "not") for e in load_examples()]
    table(f"tests/fixtures/topics — written for the tests ({len(fixtures)} articles)", fixtures, seed, previous)
    timing(seed, previous, articles or fixtures)


if __name__ == "__main__":
    main()
