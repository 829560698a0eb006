"""An alert digest — and a surge report — as an email: Arabic subject, right-to-left HTML and a plain-text
part. Pure functions.

The HTML is built for mail clients rather than browsers: tables for layout, inline ``style`` attributes
only (Gmail and Outlook drop ``<style>`` blocks and ``class`` rules), ``dir="rtl"`` and
``text-align:right`` on every block (Outlook ignores ``dir`` on some elements), Tahoma/Arial, which
every client has with Arabic glyphs, and dates in a left-to-right span so digits keep their order.

Everything that comes from feeds — titles, outlet names, links, matched terms — is untrusted: text is
cleaned (control and bidirectional-override characters removed, whitespace collapsed, very long titles
cut) and HTML-escaped; a link is a link only when it is ``http`` or ``https``, otherwise it is shown as
text.

Arabic numbers agree with what they count (:func:`story_count`, :func:`article_count`): خبر واحد,
خبران, 3–10 أخبار, 11–99 خبرًا, and a round hundred takes the singular (100 خبر).

A surge report (:class:`SurgeReport`, sent by :mod:`pipeline.alerts.surge`) says how many of a profile's
articles were published in the last hour against the same hour of the previous days, then names the
stories and the outlets behind the jump, in the same layout as the digest.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from urllib.parse import urlsplit

from pipeline.records import iso

__all__ = [
    "Copy",
    "Digest",
    "Story",
    "SurgeReport",
    "SurgeStory",
    "article_count",
    "build_message",
    "build_surge_message",
    "more_count",
    "render_html",
    "reading_order",
    "render_surge_html",
    "render_surge_text",
    "render_text",
    "safe_href",
    "story_count",
    "subject",
    "surge_subject",
]

MAX_TITLE = 300  # characters of a headline shown; feeds sometimes put a whole paragraph there


@dataclass(frozen=True, slots=True)
class Copy:
    """Another outlet's copy of a story."""

    outlet: str
    url: str
    published_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Story:
    """One digest entry: a story cluster, shown by its headline article."""

    cluster_id: str
    article_id: str  # the headline: the cluster's earliest article that passes the alert threshold
    title: str
    outlet: str
    url: str
    published_at: datetime | None
    terms: tuple[str, ...]
    score: float
    others: tuple[Copy, ...] = ()  # the other outlets that carried it, earliest first
    article_ids: tuple[str, ...] = ()  # every article of the cluster when it was selected


@dataclass(frozen=True, slots=True)
class Digest:
    profile_id: str
    profile_title: str
    stories: tuple[Story, ...]
    more: int = 0  # stories over the cap, left for the next digest
    resend: bool = False


def reading_order(stories: Iterable[Story]) -> tuple[Story, ...]:
    """The order recipients read: newest publication first."""
    return tuple(sorted(stories, key=lambda s: (iso(s.published_at) or "", s.cluster_id), reverse=True))


# --- Arabic wording -----------------------------------------------------------------------------------


def _agreeing(n: int, *, one: str, two: str, few: str, many: str, hundred: str) -> str:
    """The form of a counted noun phrase that agrees with ``n``: ``one`` and ``two`` (dual) as they are;
    ``few`` for 3–10, ``many`` (singular accusative) for 11–99 and ``hundred`` (singular genitive: the
    hundred governs the noun) for 0, 100, 101, 102, 200…, each with ``{n}`` filled in. The last two
    digits decide, as in ١٠٣ أخبار."""
    if n == 1:
        return one
    if n == 2:
        return two
    rest = n % 100
    form = few if 3 <= rest <= 10 else many if 11 <= rest <= 99 else hundred
    return form.format(n=n)


def story_count(n: int) -> str:
    """``n`` new stories, with the noun and adjective in agreement: خبر واحد جديد, خبران جديدان,
    3 أخبار جديدة, 11 خبرًا جديدًا, 100 خبر جديد."""
    return _agreeing(
        n, one="خبر واحد جديد", two="خبران جديدان", few="{n} أخبار جديدة", many="{n} خبرًا جديدًا", hundred="{n} خبر جديد"
    )


def article_count(n: int) -> str:
    """``n`` articles, in agreement: مقال واحد, مقالان, 3 مقالات, 11 مقالًا, 100 مقال."""
    return _agreeing(n, one="مقال واحد", two="مقالان", few="{n} مقالات", many="{n} مقالًا", hundred="{n} مقال")


def more_count(n: int) -> str:
    """The line that stands for the ``n`` stories over the cap: وخبر آخر, وخبران آخران, و 5 أخبار أخرى…"""
    later = "في الرسالة التالية"
    return _agreeing(
        n,
        one=f"وخبر آخر يصل {later}",
        two=f"وخبران آخران يصلان {later}",
        few=f"و {{n}} أخبار أخرى تصل {later}",
        many=f"و {{n}} خبرًا آخر تصل {later}",
        hundred=f"و {{n}} خبر آخر تصل {later}",
    )


def subject(digest: Digest) -> str:
    """``تنبيه إخباري: 3 أخبار جديدة — <profile title>`` (prefixed إعادة إرسال on a resend)."""
    prefix = "إعادة إرسال — " if digest.resend else ""
    return f"{prefix}تنبيه إخباري: {story_count(len(digest.stories))} — {clean(digest.profile_title, limit=150)}"


# --- cleaning untrusted text --------------------------------------------------------------------------

# C0/C1 controls, and the bidirectional embeddings, overrides and isolates: a title carrying U+202E could
# show its words (or a link's text) in reverse.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"\s+")


def clean(text: str, *, limit: int = MAX_TITLE) -> str:
    """One line of displayable text: controls removed, whitespace collapsed, cut at ``limit`` characters."""
    one_line = _SPACE.sub(" ", _INVISIBLE.sub("", text or "")).strip()
    return one_line if len(one_line) <= limit else one_line[: limit - 1].rstrip() + "…"


def safe_href(url: str) -> str | None:
    """``url`` if it may be a link in the email (http or https with a host), else None."""
    text = (url or "").strip()
    if _INVISIBLE.search(text) or any(c.isspace() for c in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    return text if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def when(moment: datetime | None) -> str:
    """A publication time as shown: ``2026-11-24 07:10 UTC``."""
    if moment is None:
        return "غير معروف"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- plain text ---------------------------------------------------------------------------------------


def render_text(digest: Digest, *, generated_at: datetime) -> str:
    """The plain-text part: numbered entries, each with outlet, time, link, terms and the other outlets."""
    lines = [
        clean(digest.profile_title, limit=150),
        f"{story_count(len(digest.stories))} — {when(generated_at)}",
        "",
    ]
    for n, story in enumerate(digest.stories, start=1):
        lines.append(f"{n}. {clean(story.title)}")
        lines.append(f"   {clean(story.outlet, limit=100)} · {when(story.published_at)}")
        lines.append(f"   {safe_href(story.url) or clean(story.url, limit=500)}")
        if story.terms:
            lines.append(f"   الكلمات المطابقة: {'، '.join(clean(t, limit=100) for t in story.terms)}")
        if story.others:
            carried = "، ".join(
                f"{clean(c.outlet, limit=100)} ({safe_href(c.url) or clean(c.url, limit=500)})" for c in story.others
            )
            lines.append(f"   نشرته أيضًا: {carried}")
        lines.append("")
    if digest.more:
        lines.extend([more_count(digest.more) + ".", ""])
    lines.append("--")
    lines.append(_footer(digest))
    return "\n".join(lines) + "\n"


def _footer(digest: Digest) -> str:
    return (
        f"رسالة آلية من منظومة رصد الأخبار العربية، ملف المتابعة: {clean(digest.profile_id, limit=100)}. "
        "يرد كل خبر مرة واحدة؛ النسخ اللاحقة من الخبر نفسه لا تُرسل من جديد."
    )


# --- HTML -----------------------------------------------------------------------------------------------

_FONT = "font-family:Tahoma,Arial,'Segoe UI',sans-serif;"
_CELL = f"{_FONT}direction:rtl;text-align:right;"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _link(url: str, text: str, style: str) -> str:
    """An anchor when ``url`` is http(s), else the escaped text alone."""
    href = safe_href(url)
    if href is None:
        return f'<span style="{style}">{_e(text)}</span>'
    return f'<a href="{_e(href)}" style="{style}" target="_blank" rel="noopener noreferrer">{_e(text)}</a>'


def _date_span(moment: datetime | None) -> str:
    return f'<span dir="ltr" style="unicode-bidi:embed;">{_e(when(moment))}</span>'


def _entry(n: int, story: Story) -> str:
    title = _link(
        story.url,
        clean(story.title) or "(بلا عنوان)",
        f"{_FONT}color:#0b4f8a;text-decoration:none;font-size:18px;font-weight:bold;line-height:1.6;",
    )
    meta = (
        f'<span style="font-weight:bold;color:#333333;">{_e(clean(story.outlet, limit=100))}</span>'
        f" &middot; {_date_span(story.published_at)}"
        f' &middot; <span style="color:#666666;">التطابق {story.score:.1f} من 10</span>'
    )
    rows = [
        f'<tr><td style="{_CELL}padding:0 0 4px 0;">'
        f'<span style="color:#999999;font-size:14px;">{n}.</span> {title}</td></tr>',
        f'<tr><td style="{_CELL}padding:0 0 6px 0;font-size:13px;color:#555555;">{meta}</td></tr>',
    ]
    if story.terms:
        chips = " ".join(
            '<span style="display:inline-block;background:#eef4fb;color:#0b4f8a;border:1px solid #c9dcf0;'
            f'border-radius:10px;padding:1px 8px;margin:0 0 3px 3px;font-size:12px;">{_e(clean(t, limit=100))}</span>'
            for t in story.terms
        )
        rows.append(
            f'<tr><td style="{_CELL}padding:0 0 6px 0;font-size:12px;color:#555555;">'
            f"الكلمات المطابقة: {chips}</td></tr>"
        )
    if story.others:
        others = "، ".join(
            _link(c.url, clean(c.outlet, limit=100), f"{_FONT}color:#0b4f8a;text-decoration:underline;")
            for c in story.others
        )
        rows.append(f'<tr><td style="{_CELL}padding:0;font-size:13px;color:#555555;">نشرته أيضًا: {others}</td></tr>')
    inner = "".join(rows)
    return (
        f'<tr><td style="{_CELL}padding:16px 24px;border-bottom:1px solid #e5e7eb;">'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" dir="rtl">{inner}</table>'
        "</td></tr>"
    )


def render_html(digest: Digest, *, generated_at: datetime) -> str:
    """The HTML part (see the module docstring for the choices)."""
    heading = _e(clean(digest.profile_title, limit=150))
    entries = "".join(_entry(n, story) for n, story in enumerate(digest.stories, start=1))
    more = (
        f'<tr><td style="{_CELL}padding:14px 24px;font-size:14px;color:#555555;background:#fafafa;">'
        f"{_e(more_count(digest.more))}.</td></tr>"
        if digest.more
        else ""
    )
    banner = "إعادة إرسال" if digest.resend else "تنبيه إخباري"
    return (
        '<!DOCTYPE html>\n<html dir="rtl" lang="ar">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(subject(digest))}</title>\n</head>\n"
        f'<body dir="rtl" style="margin:0;padding:0;background:#f3f4f6;{_FONT}">\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" dir="rtl" '
        'style="background:#f3f4f6;">\n<tr><td align="center" style="padding:24px 8px;">\n'
        '<table role="presentation" width="640" cellpadding="0" cellspacing="0" border="0" dir="rtl" '
        'style="width:100%;max-width:640px;background:#ffffff;border:1px solid #e5e7eb;">\n'
        f'<tr><td style="{_CELL}padding:20px 24px;background:#0b4f8a;color:#ffffff;">'
        f'<div style="{_CELL}font-size:13px;color:#d6e6f5;">{banner}</div>'
        f'<div style="{_CELL}font-size:22px;font-weight:bold;color:#ffffff;line-height:1.5;">{heading}</div>'
        f'<div style="{_CELL}font-size:14px;color:#ffffff;">{_e(story_count(len(digest.stories)))} &middot; '
        f"{_date_span(generated_at)}</div></td></tr>\n"
        f"{entries}\n{more}\n"
        f'<tr><td style="{_CELL}padding:16px 24px;font-size:12px;color:#888888;">{_e(_footer(digest))}</td></tr>\n'
        "</table>\n</td></tr>\n</table>\n</body>\n</html>\n"
    )


# --- the message ------------------------------------------------------------------------------------


def _alert_message(
    subject_line: str, *, sender: str, recipients: tuple[str, ...], message_id: str, date: datetime, profile_id: str
) -> EmailMessage:
    """An analysts' email with its headers and no body yet: the digest and the surge email share them
    (encoded for SMTP, RFC 2047 for the Arabic subject and names; marked auto-generated so vacation
    responders stay quiet)."""
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = subject_line
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(date.astimezone(UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["Content-Language"] = "ar"
    message["X-Alert-Profile"] = profile_id
    return message


def build_message(
    digest: Digest, *, sender: str, recipients: tuple[str, ...], message_id: str, date: datetime
) -> EmailMessage:
    """The email: text and HTML alternatives, UTF-8, headers encoded for SMTP (RFC 2047 for the
    Arabic subject and names), marked auto-generated so vacation responders stay quiet."""
    message = _alert_message(
        subject(digest), sender=sender, recipients=recipients, message_id=message_id, date=date,
        profile_id=digest.profile_id,
    )  # fmt: skip
    # base64: Arabic text is all non-ASCII, where quoted-printable triples the size.
    message.set_content(render_text(digest, generated_at=date), cte="base64")
    message.add_alternative(render_html(digest, generated_at=date), subtype="html", cte="base64")
    return message


# --- the surge report ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SurgeStory:
    """A story behind a surge: its earliest article in the window, and how much of the window it is."""

    cluster_id: str
    title: str
    outlet: str
    url: str
    published_at: datetime | None
    articles: int  # of the window's articles
    outlets: tuple[str, ...]  # every outlet that carried it in the window


@dataclass(frozen=True, slots=True)
class SurgeReport:
    profile_id: str
    profile_title: str
    window_start: datetime
    window_end: datetime
    articles: int  # the profile's articles published in the window
    baseline: float  # their mean count in the same hour over the previous days
    days: int  # how many previous days the baseline covers
    stories: tuple[SurgeStory, ...]
    outlets: tuple[tuple[str, int], ...]  # outlets by articles in the window, most first


def surge_subject(report: SurgeReport) -> str:
    """``ارتفاع مفاجئ في التغطية: 14 مقالًا في ساعة — <profile title>``."""
    return (
        f"ارتفاع مفاجئ في التغطية: {article_count(report.articles)} في ساعة — {clean(report.profile_title, limit=150)}"
    )


def _times(report: SurgeReport) -> str:
    return f"{report.window_start.astimezone(UTC):%Y-%m-%d %H:%M}–{report.window_end.astimezone(UTC):%H:%M} UTC"


def _surge_line(report: SurgeReport) -> str:
    days = "الأيام السبعة الماضية" if report.days == 7 else f"آخر {report.days} أيام"
    return (
        f"{article_count(report.articles)} في الساعة الأخيرة، مقابل {report.baseline:.1f} في المتوسط "
        f"في الساعة نفسها من {days}"
    )


def _footer_surge(report: SurgeReport) -> str:
    return (
        f"رسالة آلية من منظومة رصد الأخبار العربية، ملف المتابعة: {clean(report.profile_id, limit=100)}. "
        "تُرسل رسالة واحدة عن كل ارتفاع مفاجئ، ولا تتكرر ما دام الارتفاع مستمرًا."
    )


def render_surge_text(report: SurgeReport) -> str:
    """The plain-text part: the figures, the stories behind them (most articles first), the outlets."""
    lines = [clean(report.profile_title, limit=150), f"ارتفاع مفاجئ في التغطية — {_times(report)}", ""]
    lines += [_surge_line(report) + ".", "", "أبرز الأخبار:"]
    for n, story in enumerate(report.stories, start=1):
        lines.append(f"{n}. {clean(story.title)}")
        lines.append(
            f"   {clean(story.outlet, limit=100)} · {when(story.published_at)} · {article_count(story.articles)}"
        )
        lines.append(f"   {safe_href(story.url) or clean(story.url, limit=500)}")
        others = [o for o in story.outlets if o != story.outlet]
        if others:
            lines.append(f"   نشرته أيضًا: {'، '.join(clean(o, limit=100) for o in others)}")
    lines += ["", "المنافذ الأكثر نشرًا:"]
    lines += [f"- {clean(outlet, limit=100)}: {article_count(count)}" for outlet, count in report.outlets]
    lines += ["", "--", _footer_surge(report)]
    return "\n".join(lines) + "\n"


def render_surge_html(report: SurgeReport) -> str:
    """The HTML part, laid out like the digest (tables, inline styles, right to left)."""
    rows = []
    for n, story in enumerate(report.stories, start=1):
        title = _link(
            story.url,
            clean(story.title) or "(بلا عنوان)",
            f"{_FONT}color:#0b4f8a;text-decoration:none;font-size:17px;font-weight:bold;line-height:1.6;",
        )
        others = [o for o in story.outlets if o != story.outlet]
        also = f" &middot; نشرته أيضًا: {_e('، '.join(clean(o, limit=100) for o in others))}" if others else ""
        rows.append(
            f'<tr><td style="{_CELL}padding:14px 24px;border-bottom:1px solid #e5e7eb;">'
            f'<div style="{_CELL}"><span style="color:#999999;font-size:14px;">{n}.</span> {title}</div>'
            f'<div style="{_CELL}font-size:13px;color:#555555;">'
            f'<span style="font-weight:bold;color:#333333;">{_e(clean(story.outlet, limit=100))}</span>'
            f" &middot; {_date_span(story.published_at)} &middot; {_e(article_count(story.articles))}{also}</div>"
            "</td></tr>"
        )
    outlets = "".join(
        f'<tr><td style="{_CELL}padding:2px 24px;font-size:13px;color:#333333;">'
        f"{_e(clean(outlet, limit=100))}: {_e(article_count(count))}</td></tr>"
        for outlet, count in report.outlets
    )
    return (
        '<!DOCTYPE html>\n<html dir="rtl" lang="ar">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(surge_subject(report))}</title>\n</head>\n"
        f'<body dir="rtl" style="margin:0;padding:0;background:#f3f4f6;{_FONT}">\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" dir="rtl" '
        'style="background:#f3f4f6;">\n<tr><td align="center" style="padding:24px 8px;">\n'
        '<table role="presentation" width="640" cellpadding="0" cellspacing="0" border="0" dir="rtl" '
        'style="width:100%;max-width:640px;background:#ffffff;border:1px solid #e5e7eb;">\n'
        f'<tr><td style="{_CELL}padding:20px 24px;background:#8a3b0b;color:#ffffff;">'
        f'<div style="{_CELL}font-size:13px;color:#f5dfd6;">ارتفاع مفاجئ في التغطية</div>'
        f'<div style="{_CELL}font-size:22px;font-weight:bold;color:#ffffff;line-height:1.5;">'
        f"{_e(clean(report.profile_title, limit=150))}</div>"
        f'<div style="{_CELL}font-size:14px;color:#ffffff;">{_e(_surge_line(report))} &middot; '
        f'<span dir="ltr" style="unicode-bidi:embed;">{_e(_times(report))}</span></div></td></tr>\n'
        f'<tr><td style="{_CELL}padding:14px 24px 0 24px;font-size:15px;font-weight:bold;color:#333333;">'
        "أبرز الأخبار</td></tr>\n"
        f"{''.join(rows)}\n"
        f'<tr><td style="{_CELL}padding:14px 24px 4px 24px;font-size:15px;font-weight:bold;color:#333333;">'
        "المنافذ الأكثر نشرًا</td></tr>\n"
        f"{outlets}\n"
        f'<tr><td style="{_CELL}padding:16px 24px;font-size:12px;color:#888888;">'
        f"{_e(_footer_surge(report))}</td></tr>\n"
        "</table>\n</td></tr>\n</table>\n</body>\n</html>\n"
    )


def build_surge_message(
    report: SurgeReport, *, sender: str, recipients: tuple[str, ...], message_id: str, date: datetime
) -> EmailMessage:
    """The surge email, with the digest's headers (:func:`build_message`)."""
    message = _alert_message(
        surge_subject(report), sender=sender, recipients=recipients, message_id=message_id, date=date,
        profile_id=report.profile_id,
    )  # fmt: skip
    message["X-Alert-Kind"] = "surge"
    message.set_content(render_surge_text(report), cte="base64")
    message.add_alternative(render_surge_html(report), subtype="html", cte="base64")
    return message
