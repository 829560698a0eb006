"""``python -m pipeline profile build|explain|test``: draft a profile, explain a tag, test a profile."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pipeline import log
from pipeline.cli.common import (
    DataOpt,
    EsUrlOpt,
    IndexOpt,
    JsonOpt,
    err,
    fail,
    open_index,
    out,
    progress_bar,
    read_settings,
    settings_from,
)
from pipeline.errors import ConfigError, IndexingError
from pipeline.records import parse_period
from pipeline.store import index
from pipeline.topics.evaluate import (
    LabelledReport,
    dry_run,
    evaluate_profile,
    load_labelled,
)
from pipeline.topics.profiles import (
    Profile,
    RulesExplanation,
    WeightedExplanation,
    explain,
    load_profile,
    load_profiles,
)

app: typer.Typer = typer.Typer(
    help="Topic profiles: build one from a report, explain a tag, test one on labelled articles or the index.",
    no_args_is_help=True,
)

LabelsOpt = Annotated[
    Path | None,
    typer.Option("--labels", help="A labelled set (articles.jsonl and labels.jsonl, as in corpus-dev)."),
]


@app.command("build")
def build_cmd(
    report: Annotated[Path, typer.Argument(help="The report (UTF-8 text) the profile is about.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the profile (YAML).")],
    profile_id: Annotated[
        str | None, typer.Option("--id", help="Profile id [default: a slug of the output's name].")
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="Title shown to analysts.")] = None,
    max_terms: Annotated[int, typer.Option("--max-terms", min=5, max=1000)] = 120,
    labels: LabelsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Draft a profile from a report: weighted terms and phrases, spelling variants, thresholds. With
    --labels, the thresholds are read off the labelled set and the draft's figures on it printed.
    Review it term by term, edit it by hand, then `retag`."""
    from pipeline.topics.draft import build_profile, dump_profile, profile_id_from

    chosen_id = profile_id or profile_id_from(output.stem)
    if not _valid_id(chosen_id):
        raise typer.BadParameter(
            f"{chosen_id!r}: an id is 2-63 characters a-z, 0-9, - and _, starting with a letter or digit",
            param_hint="--id",
        )
    if output.exists() and not force:
        fail(f"{output} exists: choose another file or pass --force")
    try:
        text = report.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read {report}: {e}")
    try:
        articles = load_labelled(labels) if labels is not None else None
        mapping = build_profile(text, profile_id=chosen_id, title=title or output.stem, max_terms=max_terms)
    except ConfigError as e:
        fail(str(e))
    except ValueError as e:
        fail(str(e))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(dump_profile(mapping), encoding="utf-8")
    try:
        draft = load_profile(output)
    except ConfigError as e:  # a draft the schema refuses is a bug of the builder: say so plainly
        fail(f"the draft written to {output} does not load: {e}")
    figures: dict[str, Any] = {}
    if articles is not None:
        from pipeline.topics.draft import calibrate_draft

        mapping, before, after = calibrate_draft(mapping, draft, articles)
        output.write_text(dump_profile(mapping), encoding="utf-8")
        draft = load_profile(output)
        figures = {"default_thresholds": before.as_dict(), "calibrated_thresholds": after.as_dict()}
    summary = {"profile": draft.id, "file": str(output), "terms": len(draft.terms)} | figures
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    err.print(
        f"wrote {output}: {len(draft.terms)} terms, id {draft.id}. Review it, then `python -m pipeline retag "
        f"--profile {draft.id}`."
    )
    if figures:
        _print_figures(before, f"{labels}, the builder's default thresholds")
        _print_figures(after, f"{labels}, thresholds read off it (written to {output})")


def _valid_id(profile_id: str) -> bool:
    # The schema's pattern for ids (schemas/profile.schema.json).
    return re.fullmatch(r"[a-z0-9][a-z0-9_-]{1,62}", profile_id) is not None


@app.command("explain")
def explain_cmd(
    article_id: Annotated[str, typer.Argument(help="An article's id (shown by `search`).")],
    profile_id: Annotated[str | None, typer.Option("--profile", help="Only this profile.")] = None,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why an article matched (or did not): the rules that fired and where, each one's part of the
    score, the terms of every group (or, for a profile of weighted terms, each term's contribution),
    and the score against the thresholds."""
    log.configure(json=as_json or None)
    try:
        settings = read_settings(es_url=es_url, es_index=es_index, data_dir=data_dir)
        profiles = [p for p in load_profiles(settings.profiles_dir) if profile_id in (None, p.id)]
        if not profiles:
            fail(
                f"no profile {profile_id!r} in {settings.profiles_dir}"
                if profile_id
                else f"no profile in {settings.profiles_dir}"
            )
        with open_index(settings) as es:
            doc = index.get_article(es, settings.es_index, article_id, ["title", "body", "outlet"])
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    reports = [explain(p, title=doc.get("title", ""), body=doc.get("body", "")) for p in profiles]
    if as_json:
        profiles_json = [report.to_dict() for report in reports]
        print(json.dumps({"article": article_id, "profiles": profiles_json}, ensure_ascii=False, indent=2))
        return
    out.print(escape(f"{doc.get('title', '')} — {doc.get('outlet', '')}"), style="bold", highlight=False)
    for report in reports:
        print_explanation(report)


def print_explanation(report: WeightedExplanation | RulesExplanation) -> None:
    """One profile's explanation (:func:`pipeline.topics.profiles.explain`) as tables."""
    verdict = "[green]tagged[/green]" if report.tagged else "[dim]not tagged[/dim]"
    out.print(
        f"\n{escape(report.profile)}: score {report.score:.2f} (tag ≥ {report.threshold}, "
        f"alert ≥ {report.alert_threshold}) {verdict}"
    )
    if isinstance(report, WeightedExplanation):
        table = Table(show_header=True)
        for column in ("term", "kind", "weight", "title", "body", "contribution"):
            table.add_column(column)
        for term in sorted(report.terms, key=lambda x: -x.contribution):
            table.add_row(
                term.term,
                term.kind,
                f"{term.weight:g}",
                str(term.occurrences.title),
                str(term.occurrences.body),
                f"{term.contribution:.3f}",
            )
        out.print(table)
        return
    out.print(
        escape(
            f"log-odds {report.logit:+.2f} = bias {report.bias:+.2f} + the rules below; "
            f"{report.body_words} words in the body"
        ),
        highlight=False,
    )
    if report.capped:
        out.print(escape(f"held under the tag threshold: none of {', '.join(report.required)} fired"))
    table = Table(show_header=True)
    for column in ("rule", "slots (groups)", "window", "weight", "title", "lead", "body", "value", "adds"):
        table.add_column(column)
    for rule in report.rules:
        table.add_row(
            rule.rule + (" *" if rule.required else ""),
            " + ".join("|".join(slot) for slot in rule.slots),
            str(rule.window),
            f"{rule.weight:+g}",
            str(rule.fired.title),
            str(rule.fired.lead),
            str(rule.fired.body),
            f"{rule.value:.2f}",
            f"{rule.contribution:+.2f}",
        )
    out.print(table)
    if report.required:
        out.print("* one of these rules must fire for a tag", style="dim")
    for rule in report.rules:
        for window in rule.windows[:5]:
            out.print(escape(f"  {rule.rule} in the {window.where}: «{window.text}»"), highlight=False)
    groups: dict[str, list[str]] = {}
    for matched in report.terms:
        groups.setdefault(f"{matched.group} ({matched.role})", []).append(
            f"{matched.term} {matched.occurrences.title}/{matched.occurrences.body}"
        )
    for group, terms in groups.items():
        out.print(escape(f"  {group}: {'، '.join(terms)}"), highlight=False)


@app.command("test")
def test_cmd(
    profile: Annotated[str, typer.Argument(help="A profile file, or the id of an installed profile.")],
    labels: LabelsOpt = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Dry run over the articles published in this period (36h, 7d, 2w)."),
    ] = None,
    es_url: EsUrlOpt = None,
    es_index: IndexOpt = None,
    data_dir: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """How a profile does: with --labels, its precision, recall and F1 on a labelled set (borderline
    articles counted apart) and every error with the rules behind it; with --since, a dry run over
    the index: what it would tag and alert, against the tags stored now. Writes nothing."""
    if (labels is None) == (since is None):
        raise typer.BadParameter("give either --labels DIR or --since PERIOD")
    log.configure(json=as_json or None)
    try:
        settings = settings_from(es_url=es_url, es_index=es_index, data_dir=data_dir)
        tested, installed = _profile_to_test(profile, settings.profiles_dir)
        if labels is not None:
            articles = load_labelled(labels)
            with progress_bar(not as_json) as update:
                progress = (lambda done, total: update("test", done, total)) if update else None
                report = evaluate_profile(tested, articles, progress=progress)
            _print_labelled(report, labels, as_json=as_json)
            return
        assert since is not None
        try:
            start = parse_period(since, now=datetime.now(UTC))
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--since") from None
        with open_index(settings) as es:
            result = dry_run(es, settings.es_index, tested, since=start, installed=installed)
    except (ConfigError, IndexingError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return
    out.print(
        f"{escape(result.profile)} on {result.scanned} articles published since {result.since} (dry run, "
        "nothing written):"
    )
    out.print(f"  tagged:  now {result.tagged_now}, would be {result.would_tag}")
    out.print(f"  alerted stories: now {result.alerts_now}, would be {result.would_alert}")
    for heading, rows in (
        ("newly tagged", result.newly_tagged),
        ("no longer tagged", result.untagged),
        ("stories newly passing the alert threshold", result.new_alerts),
        ("stories no longer passing it", result.dropped_alerts),
    ):
        if rows:
            out.print(f"\n[bold]{heading}[/bold] ({len(rows)})")
        for row in rows[:50]:
            before = "—" if row["score_now"] is None else f"{row['score_now']:.2f}"
            out.print(
                escape(
                    f"  {before} → {row['score']:.2f}  {row['published_at'] or '?'}  {row['outlet']}: {row['title']}"
                ),
                highlight=False,
            )


def _profile_to_test(name: str, profiles_dir: Path) -> tuple[Profile, Profile | None]:
    """The profile to test (a file, or an installed id) and the installed profile with its id, if any.

    Raises:
        ConfigError: no such file or installed profile, or an invalid one.
    """
    installed = {profile.id: profile for profile in load_profiles(profiles_dir)}
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        tested = load_profile(path)
    elif name in installed:
        tested = installed[name]
    else:
        raise ConfigError(f"no profile file {name} and no profile {name!r} in {profiles_dir}")
    return tested, installed.get(tested.id)


def _print_labelled(report: LabelledReport, labels: Path, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return
    _print_figures(report, str(labels))
    for error in report.errors:
        out.print(
            escape(f"\n{error['error']}: {error['id']} (score {error['score']:.2f}) {error['title']}"),
            style="bold",
            highlight=False,
        )
        if error["why"]:
            out.print(escape(f"  label: {error['label']} — {error['why']}"), highlight=False)
        explanation = error["explanation"]
        for rule in explanation.get("rules", []):
            fired = rule["fired"]
            out.print(
                escape(
                    f"  {rule['rule']} {rule['contribution']:+.2f} (title {fired['title']}, lead {fired['lead']}, "
                    f"body {fired['body']})"
                ),
                highlight=False,
            )
            for window in rule["windows"]:
                out.print(escape(f"    «{window}»"), highlight=False)
        if explanation.get("capped"):
            out.print("  held under the tag threshold: no required rule fired")
        for term in explanation.get("terms", []):
            out.print(escape(f"  {term}"), highlight=False)


def _print_figures(report: LabelledReport, where: str) -> None:
    table = Table(title=f"{report.profile} on {where}", show_header=True)
    for column in ("threshold", "precision", "recall", "F1", "TP", "FP", "FN", "TN", "borderline"):
        table.add_column(column)
    for name, value, matrix, borderline in (
        ("tag", report.tag_threshold, report.tag, report.borderline_tagged),
        ("alert", report.alert_threshold, report.alert, report.borderline_alerted),
    ):
        table.add_row(
            f"{name} ≥ {value:g}",
            f"{matrix.precision:.3f}",
            f"{matrix.recall:.3f}",
            f"{matrix.f1:.3f}",
            str(matrix.true_positive),
            str(matrix.false_positive),
            str(matrix.false_negative),
            str(matrix.true_negative),
            f"{borderline} of {report.borderline}",
        )
    out.print(table)
