"""Fit a rules profile's weights on a labelled set, and say how well they generalise.

A profile of rules scores ``10 / (1 + e^(−z))`` with ``z = bias + Σ weight × value`` (see
``pipeline/topics/rules.py``): a logistic regression over the rules' values. This script computes
every article's rule values with the real matcher, fits the bias and the weights (L2-penalised,
relevant against not, borderline left out), keeps each weight on its side (a rule over context
groups never adds, any other rule never subtracts: a weight the data would put on the wrong side
is held at 0), and reports

* the figures of the fitted weights on the set itself (optimistic), and
* cross-validated figures: every article scored by weights fitted without it (leave one out;
  copies of one story, the set's duplicate groups, are left out together),

at the tag threshold and at the alert threshold, and the lowest alert threshold whose
cross-validated precision reaches the target. ``--write`` puts the fitted weights, bias and
thresholds into the profile file (nothing else in it changes).

    python bench/fit_topics.py [--profile seeds/profiles/iran-russia-assad.yaml] [--labels DIR] [--write]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_topic_accuracy import SEED_PROFILE, corpus_dev, load_examples  # noqa: E402

from pipeline.arabic.normalize import normalize_text  # noqa: E402
from pipeline.topics.evaluate import Confusion, Labelled, load_labelled  # noqa: E402
from pipeline.topics.profiles import Profile, load_profile  # noqa: E402
from pipeline.topics.rules import RuleMatcher, compile_rules  # noqa: E402
from pipeline.topics.terms import text_tokens  # noqa: E402

L2 = 0.3  # penalty on the weights (not the bias); chosen by leave-one-out F1 among 0.1, 0.3, 1, 3
ALERT_PRECISION = 0.95
EVEN_ODDS = 5.0  # the score of probability 1/2


def rule_values(matcher: RuleMatcher, articles: Sequence[Labelled]) -> tuple[np.ndarray, np.ndarray]:
    """Every article's rule values, and whether one of the required rules fired in it."""
    rows, fired = [], []
    for article in articles:
        title = text_tokens(normalize_text(article.title))
        body = text_tokens(normalize_text(article.body))
        evaluation = matcher.evaluate(title, body, tag_threshold=10.0)
        rows.append([result.value for result in evaluation.rules])
        fired.append(
            not matcher.required
            or any(evaluation.rules[index].title or evaluation.rules[index].body for index in matcher.required)
        )
    return np.array(rows), np.array(fired)


def fit(values: np.ndarray, relevant: np.ndarray, signs: np.ndarray, *, l2: float) -> np.ndarray:
    """Bias and weights of an L2-penalised logistic regression (Newton's method), each weight kept
    on the side of its sign (0 when the data would put it on the other)."""
    free = np.ones(values.shape[1], dtype=bool)
    while True:
        columns = np.hstack([np.ones((len(values), 1)), values[:, free]])
        penalty = np.eye(columns.shape[1]) * l2
        penalty[0, 0] = 1e-6
        coef = np.zeros(columns.shape[1])
        for _ in range(100):
            p = 1 / (1 + np.exp(-(columns @ coef)))
            gradient = columns.T @ (p - relevant) + penalty @ coef
            hessian = columns.T @ (columns * (p * (1 - p))[:, None]) + penalty
            step = np.linalg.solve(hessian, gradient)
            coef -= step
            if np.abs(step).max() < 1e-9:
                break
        weights = np.zeros(values.shape[1])
        weights[free] = coef[1:]
        wrong = free & (weights * signs < 0)
        if not wrong.any():
            return np.concatenate([[coef[0]], weights])
        free &= ~wrong


def scores(coef: np.ndarray, values: np.ndarray) -> np.ndarray:
    return 10 / (1 + np.exp(-(coef[0] + values @ coef[1:])))


def capped(found: np.ndarray, fired: np.ndarray, tag: float) -> np.ndarray:
    """Scores as the matcher reports them: held under the tag threshold when no required rule fired."""
    return np.where(fired, found, np.minimum(found, tag - 0.01))


def leave_one_out(
    values: np.ndarray, relevant: np.ndarray, signs: np.ndarray, groups: list[str], l2: float
) -> np.ndarray:
    out = np.zeros(len(values))
    folds: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        folds.setdefault(group or f"#{index}", []).append(index)
    for members in folds.values():
        train = np.ones(len(values), dtype=bool)
        train[members] = False
        coef = fit(values[train], relevant[train], signs, l2=l2)
        out[members] = scores(coef, values[members])
    return out


def confusion(relevant: np.ndarray, predicted: np.ndarray) -> Confusion:
    return Confusion.of(zip(relevant.tolist(), predicted.tolist(), strict=True))


def line(name: str, matrix: Confusion) -> str:
    return (
        f"{name:<34} P {matrix.precision:.3f}  R {matrix.recall:.3f}  F1 {matrix.f1:.3f}  "
        f"(TP {matrix.true_positive}, FP {matrix.false_positive}, FN {matrix.false_negative}, "
        f"TN {matrix.true_negative})"
    )


def alert_threshold(cross: np.ndarray, relevant: np.ndarray, tag: float) -> float:
    """The lowest threshold (a tenth) at which the cross-validated precision of the articles above
    it, and above every higher threshold, reaches ALERT_PRECISION, and not below EVEN_ODDS: an alert
    goes out only when the fitted model finds the story more likely on topic than not."""
    candidates = [round(t, 1) for t in np.arange(max(tag, EVEN_ODDS), 10.0, 0.1)]
    for threshold in candidates:
        if all(
            confusion(relevant, cross >= higher).precision >= ALERT_PRECISION
            for higher in candidates
            if higher >= threshold and (cross >= higher).any()
        ):
            return threshold
    return 9.9


def write(path: Path, profile: Profile, coef: np.ndarray, tag: float, alert: float, note: str) -> None:
    text = path.read_text(encoding="utf-8")
    for rule, weight in zip(profile.rules, coef[1:], strict=True):
        pattern = re.compile(rf"(- id: {re.escape(rule.id)}\n(?:  .*\n)*?  weight: )[-0-9.e]+")
        text, count = pattern.subn(rf"\g<1>{weight:.2f}", text, count=1)
        assert count == 1, f"no weight for rule {rule.id} in {path}"
    text = re.sub(r"(?m)^(  bias: )[-0-9.e]+", rf"\g<1>{coef[0]:.2f}", text, count=1)
    text = re.sub(r"(?m)^(  tag: )[-0-9.e]+", rf"\g<1>{tag:g}", text, count=1)
    text = re.sub(r"(?m)^(  alert: )[-0-9.e]+", rf"\g<1>{alert:g}", text, count=1)
    text = re.sub(r"(?ms)^(  calibration: ).*?(?=^\S|\Z)", lambda m: m.group(1) + note, text, count=1)
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=SEED_PROFILE)
    parser.add_argument("--labels", type=Path, default=None)
    parser.add_argument("--l2", type=float, default=L2)
    parser.add_argument("--tag", type=float, default=None, help="tag threshold [default: the profile's]")
    parser.add_argument("--write", action="store_true", help="put the fitted figures into the profile file")
    args = parser.parse_args()
    labels = args.labels or corpus_dev()
    if labels is None:
        sys.exit("no labelled set: pass --labels DIR or set CORPUS_DEV")
    profile = load_profile(args.profile)
    if not profile.rules:
        sys.exit(f"{args.profile} has no rules to fit")
    articles = load_labelled(labels)
    matcher = compile_rules(profile.groups, profile.rules, bias=0.0, require=profile.require)
    values, fired_all = rule_values(matcher, articles)
    tag = args.tag if args.tag is not None else profile.tag_threshold
    scored = np.array([article.label != "borderline" for article in articles])
    relevant = np.array([article.label == "relevant" for article in articles], dtype=float)
    roles = {group.id: group.role for group in profile.groups}
    # A rule of context groups only may lower the score, any other only raise it.
    signs = np.array(
        [-1.0 if all(roles[g] == "context" for slot in rule.slots for g in slot) else 1.0 for rule in profile.rules]
    )
    groups = [article.group for article in articles]
    x, y, g = values[scored], relevant[scored], [group for group, keep in zip(groups, scored, strict=True) if keep]
    fired = fired_all[scored]

    print(f"{labels}: {int(y.sum())} relevant, {int(len(y) - y.sum())} not, {int((~scored).sum())} borderline")
    print(f"{'L2':>5} {'LOO F1 at ' + format(tag, 'g'):>12}")
    for l2 in (0.1, 0.3, 1.0, 3.0):
        cross = capped(leave_one_out(x, y, signs, g, l2), fired, tag)
        print(f"{l2:>5} {confusion(y.astype(bool), cross >= tag).f1:>12.3f}")

    coef = fit(x, y, signs, l2=args.l2)
    fitted = capped(scores(coef, x), fired, tag)
    cross = capped(leave_one_out(x, y, signs, g, args.l2), fired, tag)
    truth = y.astype(bool)
    print(f"\nfitted with L2 {args.l2}: bias {coef[0]:.2f}")
    for rule, weight in zip(profile.rules, coef[1:], strict=True):
        print(f"  {rule.id:<14} {weight:6.2f}")
    print("\nthreshold  fitted P/R            cross-validated P/R")
    for threshold in (3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0):
        a, b = confusion(truth, fitted >= threshold), confusion(truth, cross >= threshold)
        print(
            f"{threshold:>9}  {a.precision:.3f}/{a.recall:.3f} ({a.false_positive} FP)"
            f"      {b.precision:.3f}/{b.recall:.3f} ({b.false_positive} FP)"
        )
    # The team-written fixtures: not fitted on, an independent check of the fitted weights.
    examples = load_examples()
    fixture_values, fixture_fired = rule_values(
        matcher, [Labelled(e.id, e.title, e.body, "relevant" if e.on else "not") for e in examples]
    )
    fixture_scores = capped(scores(coef, fixture_values), fixture_fired, tag)
    fixture_truth = np.array([e.on for e in examples])
    print("\nthreshold  fixtures P/R (written for the tests, not fitted on)")
    for threshold in (3.0, 3.5, 4.0, 4.5, 5.0, 6.0):
        c = confusion(fixture_truth, fixture_scores >= threshold)
        print(f"{threshold:>9}  {c.precision:.3f}/{c.recall:.3f} ({c.false_positive} FP, {c.false_negative} FN)")
    alert = alert_threshold(cross, truth, tag)
    print()
    print(line(f"tag ≥ {tag:g}, fitted", confusion(truth, fitted >= tag)))
    print(line(f"tag ≥ {tag:g}, leave-one-out", confusion(truth, cross >= tag)))
    print(line(f"alert ≥ {alert:g}, fitted", confusion(truth, fitted >= alert)))
    print(line(f"alert ≥ {alert:g}, leave-one-out", confusion(truth, cross >= alert)))
    all_scores = capped(scores(coef, values), fired_all, tag)
    border = ~scored
    tagged, alerted = int((all_scores[border] >= tag).sum()), int((all_scores[border] >= alert).sum())
    print(f"borderline tagged {tagged}, alerted {alerted}")
    if args.write:
        tp = confusion(truth, cross >= alert)
        at_tag = confusion(truth, cross >= tag)
        note = (
            f">-\n    Weights and bias fitted by bench/fit_topics.py (L2 {args.l2}, each weight kept on its side)"
            f" on\n    corpus-dev: {int(y.sum())} relevant against {int(len(y) - y.sum())} not, borderline left"
            f" out. Tag at {tag:g}: the\n    threshold at which leave-one-out precision and recall are both"
            f" highest there\n    ({at_tag.precision:.3f} / {at_tag.recall:.3f}) and the written fixtures"
            f" keep recall above 0.9. Alert at {alert:g}:\n    the lowest threshold, not below even odds"
            f" (5), whose leave-one-out precision is at\n    least {ALERT_PRECISION} there and above"
            f" ({tp.precision:.3f}, recall {tp.recall:.3f}).\n"
        )
        write(args.profile, profile, coef, tag, alert, note)
        print(f"wrote {args.profile}")


if __name__ == "__main__":
    main()
