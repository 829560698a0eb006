"""``compare --html``: a self-contained right-to-left HTML report with plotly charts.

One file that works offline: plotly.js is embedded once, inline; fonts come from the reader's system
(an Arabic font stack). The document is ``lang="ar" dir="rtl"``; the charts sit in left-to-right boxes
because plotly lays out its own SVG (axes, legends) and mirrored text anchors would misplace it, while
Arabic labels inside them are still shaped and ordered right to left by the browser. Bar charts read
from the right: categories on the right-hand axis, bars growing leftwards.

Everything that comes from the index (outlets, headlines, sentences, terms) is escaped, in the HTML
and in the chart labels alike (plotly reads a subset of HTML in its labels).
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped, unused-ignore]
import plotly.io as pio  # type: ignore[import-untyped, unused-ignore]
from plotly.offline import get_plotlyjs  # type: ignore[import-untyped, unused-ignore]
from plotly.subplots import make_subplots  # type: ignore[import-untyped, unused-ignore]

from pipeline.analysis.story import StoryComparison, format_lag
from pipeline.analysis.topic import TopicComparison, Verdict

__all__ = ["story_html", "topic_html"]

FONTS = '"Noto Naskh Arabic", "Noto Sans Arabic", "Amiri", "Geeza Pro", "Segoe UI", Tahoma, "DejaVu Sans", sans-serif'
VERDICTS: dict[Verdict, str] = {"over": "تغطية زائدة", "under": "تغطية ناقصة", "in line": "ضمن المعدل"}
_CSS = (
    "body { font-family: "
    + FONTS
    + "; }"
    + """
body { margin: 0 auto; max-width: 1200px; padding: 1.5rem 2rem 4rem; color: #1f2328;
       background: #fff; line-height: 1.6; }
h1 { font-size: 1.9rem; margin: 0 0 .3rem; }
h2 { font-size: 1.35rem; margin: 2.2rem 0 .4rem; border-bottom: 2px solid #d0d7de; padding-bottom: .2rem; }
.en { color: #57606a; font-size: .85rem; font-family: "DejaVu Sans", Arial, sans-serif; }
p.en, div.en { margin: 0 0 .8rem; }
.facts { background: #f6f8fa; border-radius: 8px; padding: .8rem 1.2rem; margin: 1rem 0; }
.facts li { margin: .25rem 0; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .95rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: right; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: left; direction: ltr; font-variant-numeric: tabular-nums; }
td.miss { background: #fff1f0; color: #a40e26; text-align: center; }
td.lag { white-space: nowrap; }
.was { color: #57606a; font-size: .85rem; }
.chart { direction: ltr; margin: .5rem 0 1rem; }
.version { border: 1px solid #d0d7de; border-radius: 8px; padding: .6rem 1rem; margin: .8rem 0; }
.version h3 { margin: 0 0 .2rem; font-size: 1.1rem; }
.meta { color: #57606a; font-size: .9rem; }
ul.diff { list-style: none; padding: 0; margin: .4rem 0 0; }
ul.diff li { padding: .2rem .5rem; margin: .15rem 0; border-radius: 4px; }
li.added { background: #dafbe1; } li.removed { background: #ffebe9; text-decoration: line-through; }
li.reworded { background: #fff8c5; }
.terms { columns: 2; column-gap: 2rem; }
.terms div { break-inside: avoid; margin-bottom: .8rem; }
footer { margin-top: 3rem; color: #57606a; font-size: .85rem; }
"""
)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


# Arabic counted nouns: one, two, 3-10 (plural), 11 and more (singular, accusative).
_NOUNS = {
    "article": ("مقال واحد", "مقالان", "مقالات", "مقالاً"),
    "story": ("قصة واحدة", "قصتان", "قصص", "قصة"),
    "outlet": ("وسيلة واحدة", "وسيلتان", "وسائل", "وسيلة"),
    "story_version": ("نسخة واحدة", "نسختين", "نسخ", "نسخة"),
}


def _count(n: int, noun: str) -> str:
    one, two, few, many = _NOUNS[noun]
    if n == 1:
        return one
    if n == 2:
        return two
    return f"{n} {few if 3 <= n % 100 <= 10 or n == 0 else many}"


def _lag(minutes: float | None) -> str:
    """The lag in Arabic abbreviations (د minutes, س hours, ي days), or «الأول» for the first report."""
    return format_lag(minutes, ("الأول", "د", "س", "ي"))


def _layout(fig: go.Figure, *, height: int, title: str) -> go.Figure:
    fig.update_layout(
        title={"text": _e(title), "x": 0.98, "xanchor": "right"},
        font={"family": FONTS, "size": 14},
        height=height,
        margin={"l": 40, "r": 40, "t": 60, "b": 50},
        template="plotly_white",
        legend={"x": 1.0, "xanchor": "right", "y": -0.15, "orientation": "h"},
    )
    fig.update_yaxes(automargin=True)
    fig.update_xaxes(automargin=True)
    return fig


def _right_labels(fig: go.Figure, labels: list[str]) -> None:
    """Room on the right for category labels: plotly's automargin does not widen a right-hand axis
    enough for Arabic labels, which it then clips."""
    longest = max((len(html.unescape(label)) for label in labels), default=4)
    fig.update_layout(margin={"r": 30 + 9 * longest})


def _chart(fig: go.Figure, div_id: str) -> str:
    body = pio.to_html(
        fig,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        config={"displayModeBar": False, "responsive": True},
    )
    return f'<div class="chart" id="box-{div_id}">{body}</div>'


def _page(title: str, sub: str, sections: list[str]) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="ar" dir="rtl">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<header>
<h1 id="report-title">{_e(title)}</h1>
{sub}
</header>
{"".join(sections)}
<footer><span class="en" lang="en" dir="ltr">Generated {generated} by python -m pipeline compare.</span></footer>
</body>
</html>
"""


def _en(text: str) -> str:
    return f'<p class="en" lang="en" dir="ltr">{_e(text)}</p>'


# --- one story ------------------------------------------------------------------------------------


def story_html(data: StoryComparison) -> str:
    """The story report: versions in order with their lags (chart), what each added or dropped, and who
    did not carry it."""
    versions = data.versions
    first = data.first
    fig = go.Figure(
        go.Bar(
            x=[v.lag_minutes / 60 for v in versions],
            y=[f"{_e(v.outlet)} ({n})" for n, v in enumerate(versions, start=1)],
            orientation="h",
            text=[_lag(v.lag_minutes) for v in versions],
            textposition="auto",
            hovertext=[_e(v.title) for v in versions],
            marker={"color": ["#cf222e" if n == 0 else "#0969da" for n in range(len(versions))]},
        )
    )
    _layout(fig, height=140 + 40 * len(versions), title="التأخر عن أول نسخة (ساعات)")
    fig.update_yaxes(side="right", autorange="reversed")
    fig.update_xaxes(autorange="reversed", title_text="ساعات")
    _right_labels(fig, [f"{_e(v.outlet)} (00)" for v in versions])
    cards = []
    for n, v in enumerate(versions, start=1):
        diff = v.diff
        items = []
        if diff is None:
            items.append('<li class="meta">أول نسخة منشورة: تقارن بها النسخ الأخرى</li>')
        else:
            items += [f'<li class="added">+ {_e(s)}</li>' for s in diff.added]
            items += [f'<li class="removed">− {_e(s)}</li>' for s in diff.removed]
            items += [
                f'<li class="reworded">~ {_e(r.this)}<div class="was">كانت: {_e(r.first)}</div></li>'
                for r in diff.reworded
            ]
            if not items:
                items.append('<li class="meta">لا إضافة ولا حذف: النص نفسه</li>')
        cards.append(
            f'<div class="version" id="version-{n}"><h3>{n}. {_e(v.outlet)}: {_e(v.title)}</h3>'
            f'<div class="meta"><span dir="ltr">{_e(v.published_at)}</span> · '
            f"<span>{_e(_lag(v.lag_minutes))}</span></div>"
            f'<ul class="diff">{"".join(items)}</ul></div>'
        )
    silent = "، ".join(_e(s.outlet) for s in data.not_carried_by) or "لا أحد"
    facts = (
        '<ul class="facts">'
        f'<li>أول من نشر: <b>{_e(first.outlet)}</b> <span dir="ltr">{_e(first.published_at)}</span></li>'
        f"<li>نشرته {_count(len(data.outlets), 'outlet')} في {_count(len(versions), 'story_version')}</li>"
        f"<li>لم تنشره رغم نشاطها خلال {data.window_hours} ساعة: {silent}</li></ul>"
    )
    sections = [
        facts,
        '<section id="order"><h2>ترتيب النشر والتأخر عن أول نسخة</h2>'
        + _en("Who carried the story, in order of publication, and how long after the first report.")
        + _chart(fig, "chart-lag")
        + "</section>",
        '<section id="versions"><h2>ما أضافته كل نسخة وما حذفته</h2>'
        + _en("Sentence by sentence on normalised Arabic against the earliest version: + added, − dropped, ~ reworded.")
        + "".join(cards)
        + "</section>",
    ]
    sub = _en(f"Story cluster {data.cluster_id}: how each outlet told it.")
    return _page(f"كيف روت كل وسيلة الخبر: {first.title}", sub, sections)


# --- a topic --------------------------------------------------------------------------------------


def _over_time(data: TopicComparison) -> go.Figure:
    series = data.over_time
    fig = go.Figure(
        [
            go.Scatter(x=series.starts, y=counts, mode="lines+markers", name=_e(outlet))
            for outlet, counts in series.outlets.items()
        ]
    )
    unit = {"day": "يومياً", "week": "أسبوعياً", "month": "شهرياً"}[series.interval]
    _layout(fig, height=420, title=f"عدد المقالات {unit} لكل وسيلة")
    fig.update_yaxes(title_text="مقالات", rangemode="tozero")
    fig.update_xaxes(tickformat="%Y-%m-%d")
    return fig


def _shares(data: TopicComparison) -> go.Figure:
    rows = data.coverage
    names = [_e(r.outlet) for r in rows]
    fig = go.Figure(
        [
            go.Bar(
                y=names,
                x=[100 * r.topic_share for r in rows],
                name="الحصة من تغطية الموضوع",
                orientation="h",
                marker={"color": "#0969da"},
            ),
            go.Bar(
                y=names,
                x=[100 * r.all_share for r in rows],
                name="الحصة من مجمل التغطية",
                orientation="h",
                marker={"color": "#8c959f"},
            ),
        ]
    )
    _layout(fig, height=160 + 55 * len(rows), title="الحصة من تغطية الموضوع مقابل الحصة من مجمل التغطية (%)")
    fig.update_layout(barmode="group")
    fig.update_yaxes(side="right", autorange="reversed")
    _right_labels(fig, names)
    fig.update_xaxes(autorange="reversed", title_text="%")
    return fig


def _lags(data: TopicComparison) -> go.Figure:
    """One dot per large story an outlet carried, at its delay behind the first report; a log axis,
    since delays run from minutes to days (the first report sits at one minute)."""
    titles = {c.cluster_id: c.title for c in data.clusters}
    fig = go.Figure()
    for row in data.lag_by_outlet:
        points = [(o.lag_minutes, c.cluster_id) for c in data.clusters for o in c.outlets if o.outlet == row.outlet]
        if not points:
            continue
        fig.add_trace(
            go.Scatter(
                x=[max(1, lag) for lag, _ in points],
                y=[_e(row.outlet)] * len(points),
                mode="markers",
                marker={"size": 13, "opacity": 0.75, "line": {"width": 1, "color": "#24292f"}},
                hovertext=[f"{_e(titles[cid])} · {_lag(lag)}" for lag, cid in points],
                hoverinfo="text",
                name=_e(row.outlet),
            )
        )
    ticks = [
        (1, "الأول"),
        (10, "10 د"),
        (60, "1 س"),
        (360, "6 س"),
        (1440, "1 ي"),
        (4 * 1440, "4 ي"),
        (14 * 1440, "14 ي"),
    ]
    _layout(fig, height=160 + 55 * max(1, len(fig.data)), title="التأخر عن أول تقرير في أكبر القصص")
    fig.update_layout(showlegend=False)
    fig.update_yaxes(side="right", autorange="reversed")
    _right_labels(fig, [_e(r.outlet) for r in data.lag_by_outlet])
    fig.update_xaxes(
        type="log",
        autorange="reversed",
        tickvals=[t for t, _ in ticks],
        ticktext=[label for _, label in ticks],
        title_text="بعد أول تقرير (مقياس لوغاريتمي)",
    )
    return fig


def _terms(data: TopicComparison) -> go.Figure:
    outlets = [(o, e) for o, e in data.terms.outlets.items() if e.terms]
    cols = 2 if len(outlets) > 1 else 1
    rows = max(1, math.ceil(len(outlets) / cols))
    # The right-hand column first: a right-to-left reader starts there. Titles go in row-major order.
    place = [(n // cols + 1, cols - n % cols) for n in range(len(outlets))]
    titles = [""] * (rows * cols)
    for (outlet, _), (row, col) in zip(outlets, place, strict=True):
        titles[(row - 1) * cols + col - 1] = _e(outlet)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=0.25,
        vertical_spacing=0.12 if rows > 1 else 0.2,
    )
    for (_, entry), (row, col) in zip(outlets, place, strict=True):
        terms = entry.terms
        fig.add_trace(
            go.Bar(
                x=[t.z for t in terms],
                y=[_e(t.term) for t in terms],
                orientation="h",
                marker={"color": "#8250df"},
                hovertext=[f"{t.count} × · {t.docs} مقالات" for t in terms],
                showlegend=False,
            ),
            row=row,
            col=col,
        )
        fig.update_yaxes(side="right", autorange="reversed", row=row, col=col)
        fig.update_xaxes(autorange="reversed", row=row, col=col)
    _layout(fig, height=140 + 300 * rows, title="المفردات المميزة لكل وسيلة (z)")
    fig.update_layout(margin={"t": 100})
    _right_labels(fig, [_e(t.term) for _, entry in outlets for t in entry.terms])
    return fig


def _cluster_table(data: TopicComparison) -> str:
    outlets = [r.outlet for r in data.lag_by_outlet]
    head = "".join(f"<th>{_e(o)}</th>" for o in outlets)
    rows = []
    for n, c in enumerate(data.clusters, start=1):
        lags = {o.outlet: o.lag_minutes for o in c.outlets}
        cells = "".join(
            f'<td class="lag">{_e(_lag(lags[o]))}</td>' if o in lags else '<td class="miss">✗</td>' for o in outlets
        )
        rows.append(f'<tr><td>{n}</td><td>{_e(c.title)}</td><td class="num">{c.articles}</td>{cells}</tr>')
    return (
        '<table id="clusters"><thead><tr><th>#</th><th>القصة (عنوان أول نسخة)</th><th>نسخ</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _coverage_table(data: TopicComparison) -> str:
    rows = "".join(
        f'<tr><td>{_e(r.outlet)}</td><td class="num">{r.topic_articles}</td>'
        f'<td class="num">{r.all_articles}</td><td class="num">{_pct(r.topic_share)}</td>'
        f'<td class="num">{_pct(r.all_share)}</td><td class="num">{_e(r.ratio)}</td>'
        f'<td class="num">{_e(r.z)}</td><td>{VERDICTS[r.verdict]}</td></tr>'
        for r in data.coverage
    )
    return (
        '<table id="coverage"><thead><tr><th>الوسيلة</th><th>مقالات الموضوع</th><th>كل المقالات</th>'
        "<th>الحصة من الموضوع</th><th>الحصة من الكل</th><th>النسبة</th><th>z</th><th>الحكم</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _facts(data: TopicComparison) -> str:
    clusters, totals = data.clusters, data.totals
    firsts = sorted(data.lag_by_outlet, key=lambda r: (-r.first_reports, r.outlet))
    leader = firsts[0] if firsts and firsts[0].first_reports else None
    ignored = "، ".join(_e(o) for o in data.never_covered_largest) or "لا أحد"
    over = "، ".join(_e(r.outlet) for r in data.coverage if r.verdict == "over") or "لا أحد"
    under = "، ".join(_e(r.outlet) for r in data.coverage if r.verdict == "under") or "لا أحد"
    lead = (
        f"<li>الأسبق إلى الخبر: <b>{_e(leader.outlet)}</b> "
        f"(أولاً في {leader.first_reports} من أكبر {_count(len(clusters), 'story')})</li>"
        if leader
        else ""
    )
    return (
        '<ul class="facts">'
        f"<li>{_count(totals.topic_articles, 'article')} عن الموضوع من أصل {totals.articles}، "
        f"في {_count(totals.topic_clusters, 'story')}، من {_count(totals.outlets_covering, 'outlet')}</li>"
        f"{lead}<li>لم تغطِّ أياً من أكبر {_count(len(clusters), 'story')}: {ignored}</li>"
        f"<li>تغطية زائدة: {over} · تغطية ناقصة: {under}</li></ul>"
    )


def _no_terms(data: TopicComparison) -> str:
    quiet = [(o, e.articles_sampled) for o, e in data.terms.outlets.items() if not e.terms]
    if not quiet:
        return ""
    names = "، ".join(f"{_e(o)} ({_count(n, 'article')})" for o, n in quiet)
    return f'<p id="no-terms">لا مفردة تتجاوز عتبة الدلالة (z ≥ {data.terms.method.min_z}) لدى: {names}</p>'


def topic_html(data: TopicComparison, *, title: str | None = None) -> str:
    """The topic report: coverage over time, shares, lags on the largest clusters and who never covered
    them, each outlet's distinctive terms, and how they were computed."""
    period = data.period
    method = data.terms.method
    name = title or data.profile
    sub = _en(
        f"Topic profile {data.profile}, {period.since[:10]} to {period.until[:10]} (end exclusive)"
        + (f", outlets: {', '.join(data.outlets_filter)}" if data.outlets_filter else "")
        + "."
    )
    sections = [
        _facts(data),
        '<section id="over-time"><h2>التغطية عبر الزمن</h2>'
        + _en("Articles on the topic per outlet and " + data.over_time.interval + ".")
        + _chart(_over_time(data), "chart-over-time")
        + "</section>",
        '<section id="shares"><h2>من يغطي الموضوع أكثر من غيره؟</h2>'
        + _en(
            "Each outlet's share of the topic's articles against its share of all articles in the period; "
            "z tests its topic rate against the other outlets' (|z| ≥ 1.96: over- or under-coverage)."
        )
        + _chart(_shares(data), "chart-shares")
        + _coverage_table(data)
        + "</section>",
        '<section id="lags"><h2>من سبق إلى الخبر ومن تأخر ومن تجاهله</h2>'
        + _en(
            "The largest story clusters of the topic: each outlet's delay behind the first report; ✗ never carried it."
        )
        + _chart(_lags(data), "chart-lags")
        + _cluster_table(data)
        + "</section>",
        '<section id="terms"><h2>المفردات المميزة لكل وسيلة</h2>'
        + _en(
            f"Log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008), each outlet against "
            f"the others, ranked by z; prior = the topic's pooled counts, alpha0 = {method.alpha0:.0f}; at most "
            f"{method.sample_per_outlet} most recent articles per outlet; normalised, stemmed Arabic without stop "
            "words; words and two-word phrases."
        )
        + _chart(_terms(data), "chart-terms")
        + _no_terms(data)
        + "</section>",
    ]
    return _page(f"مقارنة التغطية: {name}", sub, sections)
