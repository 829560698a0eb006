"""How well the committed seed profile tags the labelled articles in ``tests/fixtures/topics/``.

Each fixture file is a YAML list of ``{id, outlet, kind, title, body, label, category}``; ``label`` is
``on`` or ``off`` (YAML reads both unquoted as booleans, which is accepted). The profile must reach
0.90 precision and recall, and beat a naive baseline — an article matches if its normalised text
contains any of the profile's ten heaviest terms — on F1. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from pipeline.normalize import normalize_text
from pipeline.settings import PROJECT_ROOT
from pipeline.topics import Profile, load_profile, tag_article

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "topics"
SEED_PROFILE = PROJECT_ROOT / "seeds" / "profiles" / "iran-russia-assad.yaml"
MIN_ON, MIN_OFF = 60, 200
REQUIRED = 0.90


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    category: str
    title: str
    body: str
    on: bool


@dataclass(frozen=True, slots=True)
class Figures:
    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int

    @property
    def precision(self) -> float:
        found = self.true_positive + self.false_positive
        return self.true_positive / found if found else 0.0

    @property
    def recall(self) -> float:
        wanted = self.true_positive + self.false_negative
        return self.true_positive / wanted if wanted else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def line(self, name: str) -> str:
        return (
            f"{name}: precision {self.precision:.3f}, recall {self.recall:.3f}, F1 {self.f1:.3f} "
            f"(TP {self.true_positive}, FP {self.false_positive}, FN {self.false_negative}, TN {self.true_negative})"
        )


def _label(value: Any, where: str) -> bool:
    # Unquoted on/off are YAML 1.1 booleans.
    if value is True or value == "on":
        return True
    if value is False or value == "off":
        return False
    raise AssertionError(f"{where}: label must be on or off, not {value!r}")


def load_examples() -> list[Example]:
    examples: list[Example] = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        assert isinstance(entries, list), f"{path}: a fixture file is a list of articles"
        for index, entry in enumerate(entries):
            where = f"{path.name}[{index}]"
            examples.append(
                Example(
                    id=str(entry.get("id", where)),
                    category=str(entry.get("category", "")),
                    title=str(entry.get("title") or ""),
                    body=str(entry.get("body") or ""),
                    on=_label(entry.get("label"), where),
                )
            )
    return examples


def figures(examples: list[Example], predicted: list[bool]) -> Figures:
    pairs = Counter((example.on, guess) for example, guess in zip(examples, predicted, strict=True))
    return Figures(pairs[True, True], pairs[False, True], pairs[True, False], pairs[False, False])


def profile_predictions(profile: Profile, examples: list[Example]) -> list[bool]:
    return [profile.id in tag_article([profile], title=ex.title, body=ex.body)[0] for ex in examples]


def baseline_predictions(profile: Profile, examples: list[Example]) -> list[bool]:
    """Any of the ten heaviest terms, as a plain substring of the normalised title and body."""
    heaviest = sorted(profile.terms, key=lambda term: -term.weight)[:10]
    needles = [normalize_text(term.text) for term in heaviest]
    return [any(needle in normalize_text(f"{ex.title}\n{ex.body}") for needle in needles) for ex in examples]


def mistakes(examples: list[Example], predicted: list[bool]) -> str:
    wrong = [ex for ex, guess in zip(examples, predicted, strict=True) if ex.on != guess]
    by_category = Counter(f"{'missed' if ex.on else 'false alarm'} {ex.category}" for ex in wrong)
    return ", ".join(f"{what} ×{count}" for what, count in by_category.most_common()) or "none"


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    found = load_examples()
    if not found:
        pytest.skip(f"no labelled articles in {FIXTURES}")
    return found


def test_fixtures_are_large_enough(examples: list[Example]) -> None:
    on = sum(ex.on for ex in examples)
    assert on >= MIN_ON and len(examples) - on >= MIN_OFF, f"{on} on-topic, {len(examples) - on} off-topic"
    assert len({ex.id for ex in examples}) == len(examples), "fixture ids repeat"


def test_seed_profile_beats_the_threshold_and_the_baseline(examples: list[Example]) -> None:
    profile = load_profile(SEED_PROFILE)
    ours = profile_predictions(profile, examples)
    naive = baseline_predictions(profile, examples)
    mine, base = figures(examples, ours), figures(examples, naive)
    report = "\n".join(
        [
            f"{len(examples)} articles ({sum(ex.on for ex in examples)} on-topic)",
            mine.line(f"profile {profile.id} (tag ≥ {profile.tag_threshold})"),
            f"  errors: {mistakes(examples, ours)}",
            base.line("baseline (any of the 10 heaviest terms)"),
            f"  errors: {mistakes(examples, naive)}",
        ]
    )
    print("\n" + report)
    assert mine.precision >= REQUIRED, report
    assert mine.recall >= REQUIRED, report
    assert mine.f1 > base.f1, report
