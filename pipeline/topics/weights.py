"""The score of a term-weighted profile: the sum of its terms' weights, with diminishing returns.

A profile without rules (the first format, still valid) is a list of weighted terms:

* ``n`` = body occurrences + 2 × title occurrences (:data:`TITLE_FACTOR`);
* each matched term gives ``weight × (1 − e^(−n/1.5))`` (:data:`SATURATION`): its first mention gives
  half its weight, repeats add less and less, never more than the weight;
* breadth ``B = 1 − 0.5·e^(−b/3)`` with ``b`` = (distinct terms − 1) + (distinct kinds − 1): one
  term alone counts half, five terms of three kinds count ~93 %;
* evidence ``E = B × Σ contributions``; score ``= 10 × (1 − e^(−E/10))`` (:data:`SCALE`). Evidence
  5 → 3.9, 10 → 6.3, 20 → 8.6, 30 → 9.5.

So one word repeated twenty times scores at most ``10 × (1 − e^(−w/20))``, while five distinct
terms mentioned once beat it. It measures how much of a vocabulary an article uses, not whether it
tells the story: for that, see the rules of :mod:`pipeline.topics.rules`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.topics.terms import Term, TermMatcher

__all__ = ["MAX_SCORE", "SATURATION", "SCALE", "TITLE_FACTOR", "WeightedEvaluation", "evaluate_terms"]

TITLE_FACTOR = 2.0
SATURATION = 1.5
SCALE = 10.0
MAX_SCORE = 10.0


@dataclass(frozen=True, slots=True)
class WeightedEvaluation:
    score: float
    evidence: float
    breadth: float
    # (term index, title occurrences, body occurrences, contribution), best first
    rows: tuple[tuple[int, int, int, float], ...]


def evaluate_terms(
    matcher: TermMatcher, terms: Sequence[Term], title: Sequence[str], body: Sequence[str]
) -> WeightedEvaluation:
    """Score tokenised title and body against weighted ``terms`` (compiled as ``matcher``)."""
    in_title = {index: len(spans) for index, spans in matcher.spans(title).items()}
    in_body = {index: len(spans) for index, spans in matcher.spans(body).items()}
    raw: list[tuple[int, int, int, float]] = []
    for index in sorted(in_title.keys() | in_body.keys()):
        title_count, body_count = in_title.get(index, 0), in_body.get(index, 0)
        occurrences = body_count + TITLE_FACTOR * title_count
        value = terms[index].weight * (1.0 - math.exp(-occurrences / SATURATION))
        raw.append((index, title_count, body_count, value))
    if not raw:
        return WeightedEvaluation(score=0.0, evidence=0.0, breadth=0.0, rows=())
    spread = (len(raw) - 1) + (len({terms[index].kind for index, *_ in raw}) - 1)
    breadth = 1.0 - 0.5 * math.exp(-spread / 3.0)
    rows = sorted(
        ((index, title_count, body_count, value * breadth) for index, title_count, body_count, value in raw),
        key=lambda row: (-row[3], row[0]),
    )
    evidence = sum(row[3] for row in rows)
    score = round(MAX_SCORE * (1.0 - math.exp(-evidence / SCALE)), 2)
    return WeightedEvaluation(score=score, evidence=evidence, breadth=breadth, rows=tuple(rows))
