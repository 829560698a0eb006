"""Build the bundled demo news site from ``corpus.yaml``.

``build_site`` renders every page and feed of six fictional outlets into a mapping of request paths
(path plus ``?query`` when there is one) to responses; a small local HTTP server serves that mapping
as it is. ``expectations`` says, for every feed item, what a correct pipeline run must make of it, and
``bench_site`` builds a larger site of distinct pages for the throughput benchmark.

Everything here is deterministic: no randomness, no network, and no clock unless one is given. The
corpus is dated October 2025; ``build_site(..., now=...)`` moves every date by ``now - CORPUS_CLOCK``
so that the feeds look as fresh as the day they were written (the demo does, or every feed would be
``stale``), and ``expectations(now=...)`` moves its dates alike. The ``STALE_FEED`` (beside the
``FAILING_FEEDS``) answers with items weeks older than that clock.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

CORPUS_FILE = Path(__file__).with_name("corpus.yaml")

OUTCOMES = ("indexed", "feed_fallback", "duplicate", "language", "same_article", "fetch_failed")


@dataclass(frozen=True, slots=True)
class Resource:
    status: int  # 200, 404, 500, 301...
    headers: dict[str, str]  # at least Content-Type (with charset where relevant); Location for redirects
    body: bytes


@dataclass(frozen=True, slots=True)
class Expected:
    path: str  # the item's link as written in the feed, without scheme and host (query and #fragment kept)
    feed_id: str
    outcome: str  # one of OUTCOMES
    language: str  # ISO 639-1 of the text: ar, fa, ur, en
    outlet: str
    title: str
    published_at: str | None  # ISO-8601 UTC ("2025-10-03T09:15:00Z"); None if neither feed nor page gives one
    body_marker: str  # a sentence (>= 8 words) of the article body that must be in the extracted body
    boilerplate_marker: str  # a sentence of the page chrome that must not be in the extracted body; "" if none
    topic: str  # "seed" (Iran and Russia backing Assad in Syria) or "other"
    story: str  # articles telling the same story (republished wire copy) share it; unique otherwise


# --------------------------------------------------------------------------------------------------
# The corpus, resolved into one record per feed item


@dataclass(frozen=True, slots=True)
class _Item:
    feed_id: str
    outlet_id: str
    slug: str
    page_path: str  # where the article page lives: prefix/slug
    link_path: str  # the link as the feed writes it, minus scheme and host
    upper_host: bool
    redirect: bool  # link_path answers 301 towards page_path
    title: str
    section: str
    lang: str
    topic: str
    story: str
    date: datetime | None
    feed_date: bool
    page_date: bool
    author: str
    author_in: str
    summary: str
    paragraphs: tuple[str, ...]
    comments: tuple[tuple[str, str], ...]
    page: str  # article | amp | shell | missing
    outcome: str
    body_marker: str
    boilerplate_marker: str
    renders_page: bool  # False for items that point at a page another item already renders


@dataclass(frozen=True, slots=True)
class _Corpus:
    outlets: Mapping[str, Mapping[str, Any]]
    feeds: tuple[Mapping[str, Any], ...]
    items: tuple[_Item, ...]


_ITEM_KEYS = {
    "slug", "title", "section", "body", "summary", "lang", "topic", "story", "date", "feed_date",
    "page_date", "author", "author_in", "comments", "page", "link", "dup_of", "same_as", "body_marker",
    "boilerplate_marker",
}  # fmt: skip
_LINK_KEYS = {"query", "fragment", "upper_host", "path"}
_SENTENCE_END = re.compile(r"(?<=[.!?؟۔])\s+")


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def _strip_end(sentence: str) -> str:
    return sentence.rstrip(" .!?؟۔")


def _paragraphs(body: str | None) -> tuple[str, ...]:
    if not body:
        return ()
    return tuple(" ".join(p.split()) for p in re.split(r"\n\s*\n", body.strip()) if p.strip())


def _derive_body_marker(paragraphs: tuple[str, ...]) -> str:
    order = list(range(1, len(paragraphs))) + [0]
    for index in order:
        for sentence in _sentences(paragraphs[index]):
            if len(sentence.split()) >= 8:
                return _strip_end(sentence)
    raise ValueError(f"no sentence of eight words or more in {paragraphs[:1]!r}")


def _outcome(lang: str, page: str, dup_of: str | None, same_as: str | None) -> str:
    if lang != "ar":
        return "language"
    if page == "missing":
        return "fetch_failed"
    if page == "shell":
        return "feed_fallback"
    if dup_of:
        return "duplicate"
    if same_as:
        return "same_article"
    return "indexed"


@functools.lru_cache(maxsize=1)
def _corpus() -> _Corpus:
    raw = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))
    outlets: dict[str, dict[str, Any]] = raw["outlets"]
    feeds = tuple(raw["feeds"])
    defined: dict[tuple[str, str], dict[str, Any]] = {}
    for feed in feeds:
        if feed["outlet"] not in outlets:
            raise ValueError(f"feed {feed['id']}: unknown outlet {feed['outlet']!r}")
        for entry in feed["items"]:
            unknown = set(entry) - _ITEM_KEYS
            if unknown or set(entry.get("link") or {}) - _LINK_KEYS:
                raise ValueError(f"feed {feed['id']}: unknown item keys {sorted(unknown)} in {entry}")
            if "slug" in entry and "same_as" not in entry and "dup_of" not in entry:
                key = (feed["outlet"], entry["slug"])
                if key in defined:
                    raise ValueError(f"article {key} is defined twice; use same_as for a second listing")
                defined[key] = entry

    items: list[_Item] = []
    for feed in feeds:
        outlet_id = feed["outlet"]
        outlet = outlets[outlet_id]
        for entry in feed["items"]:
            base_key = entry.get("same_as") or entry.get("dup_of")
            if base_key:
                if (outlet_id, base_key) not in defined:
                    raise ValueError(f"feed {feed['id']}: {base_key!r} is not an article of {outlet_id}")
                merged = {**defined[(outlet_id, base_key)], **entry}
                merged.pop("link", None)
                merged.update({k: v for k, v in entry.items() if k == "link"})
                if "same_as" in entry:
                    merged["slug"] = base_key
            else:
                merged = dict(entry)
            items.append(_resolve(feed, outlet_id, outlet, merged, base_key, defined))
    return _Corpus(outlets=outlets, feeds=feeds, items=tuple(items))


def _resolve(
    feed: Mapping[str, Any],
    outlet_id: str,
    outlet: Mapping[str, Any],
    entry: Mapping[str, Any],
    base_key: str | None,
    defined: Mapping[tuple[str, str], Mapping[str, Any]],
) -> _Item:
    slug = entry["slug"]
    page_path = f"{outlet['prefix']}/{slug}"
    link = entry.get("link") or {}
    if link.get("path"):
        link_path = link["path"]
    else:
        link_path = page_path
        if link.get("query"):
            link_path += "?" + link["query"]
        if link.get("fragment"):
            link_path += "#" + link["fragment"]
    lang = entry.get("lang", "ar")
    page = entry.get("page", "article")
    same_as = entry.get("same_as")
    dup_of = entry.get("dup_of")
    paragraphs = _paragraphs(entry.get("body"))
    date = datetime.fromisoformat(entry["date"]) if entry.get("date") else None
    if date is not None and date.utcoffset() is None:
        raise ValueError(f"{slug}: the date needs a UTC offset")
    summary = entry.get("summary") or (_sentences(paragraphs[0])[0] if paragraphs else "")
    comments = tuple((c["name"], c["text"]) for c in entry.get("comments") or ())
    outcome = _outcome(lang, page, dup_of, same_as)
    if entry.get("body_marker"):
        body_marker = entry["body_marker"]
    elif paragraphs:
        body_marker = _derive_body_marker(paragraphs)
    else:
        body_marker = _strip_end(summary)
    if entry.get("boilerplate_marker") is not None:
        boilerplate_marker = entry["boilerplate_marker"]
    elif page in ("shell", "missing"):
        boilerplate_marker = ""
    elif comments:
        boilerplate_marker = _strip_end(comments[0][1])
    else:
        boilerplate_marker = outlet["boilerplate_marker"]
    story_default = f"{outlet_id}:{(dup_of or same_as or slug)}"
    return _Item(
        feed_id=feed["id"],
        outlet_id=outlet_id,
        slug=slug,
        page_path=page_path,
        link_path=link_path,
        upper_host=bool(link.get("upper_host")),
        redirect=bool(link.get("path")),
        title=entry["title"],
        section=entry.get("section", ""),
        lang=lang,
        topic=entry.get("topic", "other"),
        story=entry.get("story", story_default),
        date=date,
        feed_date=entry.get("feed_date", True),
        page_date=entry.get("page_date", True),
        author=entry.get("author", ""),
        author_in=entry.get("author_in", outlet.get("author_in", "feed")),
        summary=summary,
        paragraphs=paragraphs,
        comments=comments,
        page=page,
        outcome=outcome,
        body_marker=body_marker,
        boilerplate_marker=boilerplate_marker,
        renders_page=not same_as,
    )


# --------------------------------------------------------------------------------------------------
# Rendering helpers

_MONTHS = {
    "egypt": ["يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو"]
    + ["يوليو", "أغسطس", "سبتمبر", "أكتوبر", "نوفمبر", "ديسمبر"],
    "levant": ["كانون الثاني", "شباط", "آذار", "نيسان", "أيار", "حزيران"]
    + ["تموز", "آب", "أيلول", "تشرين الأول", "تشرين الثاني", "كانون الأول"],
    "maghreb": ["يناير", "فبراير", "مارس", "أبريل", "ماي", "يونيو"]
    + ["يوليوز", "غشت", "شتنبر", "أكتوبر", "نونبر", "دجنبر"],
}
_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_RTL = {"ar", "fa", "ur"}


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _xml(text: str) -> str:
    return html.escape(text, quote=False)


def _host_upper(base_url: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc.upper(), parts.path, "", ""))


def _link_url(base_url: str, item: _Item) -> str:
    return (_host_upper(base_url) if item.upper_host else base_url) + item.link_path


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _visible_date(outlet: Mapping[str, Any], when: datetime) -> str:
    text = f"{when.day} {_MONTHS[outlet['months']][when.month - 1]} {when.year} - {when:%H:%M}"
    return text.translate(_ARABIC_INDIC) if outlet.get("digits") == "arabic-indic" else text


def _author_on(item: _Item, where: str) -> bool:
    return bool(item.author) and item.author_in in (where, "both")


def _body_html(paragraphs: Iterable[str], inline: tuple[str, str] | None = None) -> str:
    parts = []
    for index, paragraph in enumerate(paragraphs):
        parts.append(f"      <p>{_esc(paragraph)}</p>")
        if inline and index == 1:
            title, url = inline
            parts.append(
                f'      <div class="related-inline"><strong>اقرأ أيضاً:</strong> '
                f'<a href="{_esc(url)}">{_esc(title)}</a></div>'
            )
    return "\n".join(parts)


def _comments_html(outlet: Mapping[str, Any], comments: tuple[tuple[str, str], ...]) -> str:
    if not comments:
        return ""
    heading = _esc(outlet.get("comments_heading", "التعليقات"))
    if outlet.get("comments_style") == "list":
        rows = "\n".join(
            f'      <li class="comment" id="comment-{n}"><div class="comment-body">'
            f'<div class="comment-meta"><b class="fn">{_esc(name)}</b></div>'
            f'<div class="comment-content"><p>{_esc(text)}</p></div></div></li>'
            for n, (name, text) in enumerate(comments, 1)
        )
        return (
            f'  <div id="comments" class="comments-area">\n    <h3 class="comments-title">{heading}</h3>\n'
            f'    <ol class="comment-list">\n{rows}\n    </ol>\n'
            f'    <div id="respond" class="comment-respond"><textarea name="comment"></textarea>'
            f"<button>أرسل ردك</button></div>\n  </div>"
        )
    rows = "\n".join(
        f'    <div class="comment" id="comment-{n}"><div class="comment-meta">'
        f'<span class="comment-author">{_esc(name)}</span></div>'
        f'<p class="comment-text">{_esc(text)}</p></div>'
        for n, (name, text) in enumerate(comments, 1)
    )
    return (
        f'  <section id="comments" class="comments">\n    <h3 class="comments-title">{heading} ({len(comments)})</h3>\n'
        f'{rows}\n    <form class="comment-form"><textarea name="comment" placeholder="أضف تعليقك"></textarea>'
        f"<button>إرسال</button></form>\n  </section>"
    )


def _head_meta(outlet: Mapping[str, Any], item: _Item, canonical: str) -> str:
    wanted = set(outlet.get("meta") or ())
    lines = []
    if "og" in wanted:
        lines += [
            f'<meta property="og:title" content="{_esc(item.title)}">',
            '<meta property="og:type" content="article">',
            f'<meta property="og:url" content="{_esc(canonical)}">',
            f'<meta property="og:site_name" content="{_esc(outlet["name_ar"])}">',
        ]
    if "published" in wanted and item.page_date and item.date is not None:
        lines.append(f'<meta property="article:published_time" content="{item.date.isoformat()}">')
    if "author" in wanted and _author_on(item, "page"):
        lines.append(f'<meta name="author" content="{_esc(item.author)}">')
    if "description" in wanted and item.summary:
        lines.append(f'<meta name="description" content="{_esc(item.summary)}">')
    return "\n".join(lines)


def _jsonld(outlet: Mapping[str, Any], item: _Item, canonical: str) -> str:
    if not outlet.get("jsonld"):
        return ""
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": item.title,
        "inLanguage": item.lang,
        "mainEntityOfPage": canonical,
        "publisher": {"@type": "Organization", "name": outlet["name_ar"]},
    }
    if item.page_date and item.date is not None:
        data["datePublished"] = item.date.isoformat()
    if _author_on(item, "page"):
        data["author"] = {"@type": "Person", "name": item.author}
    text = json.dumps(data, ensure_ascii=False, indent=1).replace("</", "<\\/")
    return f'<script type="application/ld+json">\n{text}\n</script>'


def _render_page(
    outlet: Mapping[str, Any],
    item: _Item,
    base_url: str,
    related: list[tuple[str, str]],
    paragraphs: tuple[str, ...] | None = None,
) -> str:
    canonical = base_url + item.page_path
    key = {"amp": "amp_template", "shell": "shell_template"}.get(item.page, "template")
    template = Template(outlet[key])
    section_url = f"{base_url}{outlet['prefix']}/{item.slug.split('/')[0]}"
    dateline = ""
    if item.page_date and item.date is not None:
        dateline = (
            f'<time class="published" datetime="{item.date.isoformat()}">'
            f"{_esc(_visible_date(outlet, item.date))}</time>"
        )
    byline = ""
    if _author_on(item, "page"):
        byline = f'<span class="author">{_esc(outlet.get("byline", "{author}").format(author=item.author))}</span>'
    inline = related[0] if outlet.get("inline_related") and item.page == "article" and related else None
    values = {
        "lang": item.lang,
        "dir": "rtl" if item.lang in _RTL else "ltr",
        "charset": outlet["page_encoding"],
        "title": _esc(item.title),
        "head_meta": _head_meta(outlet, item, canonical),
        "canonical": _esc(canonical),
        "base": _esc(base_url),
        "path": _esc(item.page_path),
        "section": _esc(item.section),
        "section_url": _esc(section_url),
        "dateline": dateline,
        "byline": byline,
        "body": _body_html(item.paragraphs if paragraphs is None else paragraphs, inline),
        "related": "\n".join(f'      <li><a href="{_esc(url)}">{_esc(title)}</a></li>' for title, url in related),
        "comments": _comments_html(outlet, item.comments),
        "jsonld": _jsonld(outlet, item, canonical),
    }
    return template.substitute(values)


def _html_resource(text: str, encoding: str, status: int = 200) -> Resource:
    return Resource(status, {"Content-Type": f"text/html; charset={encoding}"}, text.encode(encoding))


def _not_found(outlet: Mapping[str, Any]) -> Resource:
    text = (
        '<!DOCTYPE html>\n<html lang="ar" dir="rtl"><head><meta charset="utf-8">'
        f"<title>الصفحة غير موجودة - {_esc(outlet['name_ar'])}</title></head>\n"
        "<body><h1>404</h1><p>عذراً، الصفحة التي تبحث عنها غير موجودة أو ربما نُقلت.</p></body></html>\n"
    )
    return _html_resource(text, "utf-8", status=404)


def _redirect(location: str) -> Resource:
    body = f'<html><body><a href="{_esc(location)}">Moved Permanently</a></body></html>\n'.encode()
    return Resource(301, {"Location": location, "Content-Type": "text/html; charset=utf-8"}, body)


# --------------------------------------------------------------------------------------------------
# Feeds


def _rfc822(when: datetime) -> str:
    return format_datetime(when)


def _feed_resource(text: str, feed: Mapping[str, Any]) -> Resource:
    kind = "application/atom+xml" if feed["format"] == "atom" else "application/rss+xml"
    charset = feed.get("header_charset") or feed["encoding"]
    body = text.encode(feed["encoding"])
    etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
    return Resource(200, {"Content-Type": f"{kind}; charset={charset}", "ETag": etag}, body)


def _feed_paragraph_html(paragraphs: Iterable[str]) -> str:
    return "".join(f"<p>{_esc(p)}</p>" for p in paragraphs)


def _render_rss(
    feed: Mapping[str, Any], outlet: Mapping[str, Any], items: list[_Item], base_url: str, feed_url: str
) -> str:
    dates = [i.date for i in items if i.date is not None and i.feed_date]
    lines = [
        f'<?xml version="1.0" encoding="{feed["encoding"]}"?>',
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom">',
        "<channel>",
        f"  <title>{_xml(feed['title'])}</title>",
        f"  <link>{_xml(base_url + outlet['prefix'] + '/')}</link>",
        f"  <description>{_xml(feed.get('description', ''))}</description>",
        "  <language>ar</language>",
        f'  <atom:link href="{_esc(feed_url)}" rel="self" type="application/rss+xml"/>',
    ]
    if dates:
        lines.append(f"  <lastBuildDate>{_rfc822(max(dates))}</lastBuildDate>")
    for item in items:
        link = _link_url(base_url, item)
        lines += ["  <item>", f"    <title>{_xml(item.title)}</title>", f"    <link>{_xml(link)}</link>"]
        lines.append(f'    <guid isPermaLink="true">{_xml(link)}</guid>')
        if item.feed_date and item.date is not None:
            lines.append(f"    <pubDate>{_rfc822(item.date)}</pubDate>")
        if _author_on(item, "feed"):
            lines.append(f"    <dc:creator>{_xml(item.author)}</dc:creator>")
        if item.section:
            lines.append(f"    <category>{_xml(item.section)}</category>")
        lines.append(f"    <description>{_xml(item.summary)}</description>")
        if feed.get("full_content") and item.paragraphs:
            content = _feed_paragraph_html(item.paragraphs)
            if "]]>" in content:
                raise ValueError(f"{item.slug}: ']]>' cannot go into CDATA")
            lines.append(f"    <content:encoded><![CDATA[{content}]]></content:encoded>")
        lines.append("  </item>")
    lines += ["</channel>", "</rss>", ""]
    return "\n".join(lines)


def _render_atom(
    feed: Mapping[str, Any], outlet: Mapping[str, Any], items: list[_Item], base_url: str, feed_url: str
) -> str:
    tag = f"tag:{feed['outlet']}.example,2025:"
    dates = [i.date for i in items if i.date is not None and i.feed_date]
    lines = [
        f'<?xml version="1.0" encoding="{feed["encoding"]}"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="ar">',
        f"  <title>{_xml(feed['title'])}</title>",
        f"  <subtitle>{_xml(feed.get('description', ''))}</subtitle>",
        f"  <id>{tag}{_xml(feed['id'])}</id>",
        f'  <link rel="self" type="application/atom+xml" href="{_esc(feed_url)}"/>',
        f'  <link rel="alternate" type="text/html" href="{_esc(base_url + outlet["prefix"] + "/")}"/>',
    ]
    if dates:
        lines.append(f"  <updated>{max(dates).isoformat()}</updated>")
    for item in items:
        lines += [
            "  <entry>",
            f"    <title>{_xml(item.title)}</title>",
            f'    <link rel="alternate" type="text/html" href="{_esc(_link_url(base_url, item))}"/>',
            f"    <id>{tag}{_xml(item.link_path)}</id>",
        ]
        if item.feed_date and item.date is not None:
            lines.append(f"    <published>{item.date.isoformat()}</published>")
            lines.append(f"    <updated>{item.date.isoformat()}</updated>")
        if _author_on(item, "feed"):
            lines.append(f"    <author><name>{_xml(item.author)}</name></author>")
        if item.section:
            lines.append(f'    <category term="{_esc(item.section)}"/>')
        lines.append(f'    <summary type="text">{_xml(item.summary)}</summary>')
        if feed.get("full_content") and item.paragraphs:
            lines.append(f'    <content type="html">{_xml(_feed_paragraph_html(item.paragraphs))}</content>')
        lines.append("  </entry>")
    lines += ["</feed>", ""]
    return "\n".join(lines)


def _render_feed(feed: Mapping[str, Any], outlet: Mapping[str, Any], items: list[_Item], base_url: str) -> Resource:
    feed_url = base_url + feed["path"]
    render = _render_atom if feed["format"] == "atom" else _render_rss
    return _feed_resource(render(feed, outlet, items, base_url, feed_url), feed)


# --------------------------------------------------------------------------------------------------
# Public interface


def _related(corpus: _Corpus, item: _Item, base_url: str, count: int = 3) -> list[tuple[str, str]]:
    """Up to ``count`` other Arabic articles of the same outlet, in corpus order after this one."""
    pool = [
        i
        for i in corpus.items
        if i.outlet_id == item.outlet_id and i.renders_page and i.page == "article" and i.lang == "ar"
    ]
    start = next((n for n, i in enumerate(pool) if i.slug == item.slug), -1) + 1
    picked: list[tuple[str, str]] = []
    for offset in range(len(pool)):
        other = pool[(start + offset) % len(pool)]
        if other.story == item.story or other.slug == item.slug:
            continue
        picked.append((other.title, base_url + other.page_path))
        if len(picked) == count:
            break
    return picked


def _index_page(corpus: _Corpus, base_url: str) -> Resource:
    rows = "\n".join(
        f'<li><a href="{_esc(base_url + f["path"])}">{_esc(f["title"])}</a> ({_esc(f["id"])})</li>'
        for f in corpus.feeds
    )
    text = (
        '<!DOCTYPE html>\n<html lang="ar" dir="rtl"><head><meta charset="utf-8">'
        "<title>موقع الأخبار التجريبي</title></head>\n<body><h1>موقع الأخبار التجريبي</h1>\n"
        f"<p>مواقع وهمية لاختبار خط الجمع.</p>\n<ul>\n{rows}\n</ul></body></html>\n"
    )
    return _html_resource(text, "utf-8")


def _shift(now: datetime | None) -> timedelta:
    return now - CORPUS_CLOCK if now is not None else timedelta(0)


def _moved(items: Iterable[_Item], shift: timedelta) -> list[_Item]:
    return [replace(i, date=i.date + shift) if i.date is not None and shift else i for i in items]


def build_site(base_url: str, *, now: datetime | None = None) -> dict[str, Resource]:
    """Every path (with query string if any, as requested by a client) -> Resource.

    ``base_url`` like 'http://127.0.0.1:8123' with no trailing slash; all links in feeds and pages are
    absolute URLs built from it. With ``now``, every date of the corpus is moved by ``now - CORPUS_CLOCK``.
    """
    base_url = base_url.rstrip("/")
    corpus = _corpus()
    corpus = replace(corpus, items=tuple(_moved(corpus.items, _shift(now))))
    site: dict[str, Resource] = {
        "/": _index_page(corpus, base_url),
        "/robots.txt": Resource(200, {"Content-Type": "text/plain; charset=utf-8"}, b"User-agent: *\nAllow: /\n"),
    }
    for item in corpus.items:
        outlet = corpus.outlets[item.outlet_id]
        if item.renders_page:
            if item.page == "missing":
                page = _not_found(outlet)
            else:
                text = _render_page(outlet, item, base_url, _related(corpus, item, base_url))
                page = _html_resource(text, outlet["page_encoding"])
            site[item.page_path] = page
        request_path = item.link_path.split("#", 1)[0]
        if item.redirect:
            site[request_path] = _redirect(base_url + item.page_path)
        elif request_path != item.page_path:
            site[request_path] = site[item.page_path]
    for feed in corpus.feeds:
        items = [i for i in corpus.items if i.feed_id == feed["id"]]
        site[feed["path"]] = _render_feed(feed, corpus.outlets[feed["outlet"]], items, base_url)
    site["/alnil/rss/sports.xml"] = Resource(
        500,
        {"Content-Type": "text/html; charset=utf-8"},
        b"<html><body><h1>500 Internal Server Error</h1></body></html>",
    )
    site["/almanara/feed/culture.xml"] = _redirect(MALFORMED_LOCATION)  # /stall/… is the server's own
    site[STALE_FEED[2]] = _stale_feed(corpus, base_url, now or CORPUS_CLOCK)
    return site


def _stale_feed(corpus: _Corpus, base_url: str, clock: datetime) -> Resource:
    """A section feed the outlet stopped updating: it still answers, with articles from weeks ago."""
    feed_id, outlet_id, path = STALE_FEED
    outlet = corpus.outlets[outlet_id]
    pages = [i for i in corpus.items if i.outlet_id == outlet_id and i.renders_page and i.lang == "ar"]
    items = [replace(item, date=clock - timedelta(days=days)) for item, days in zip(pages, STALE_DAYS, strict=False)]
    feed = {
        "id": feed_id,
        "outlet": outlet_id,
        "path": path,
        "format": "rss",
        "encoding": "utf-8",
        "title": f"{outlet['name_ar']} - ثقافة",
        "description": "أخبار الثقافة والفنون",
    }
    return _render_feed(feed, outlet, items, base_url)


# A host name that no resolver can answer, and that fails on this machine without a query leaving it:
# longer than DNS allows (253 characters), in labels that each look fine.
UNRESOLVABLE_HOST = ".".join(["this-outlet-domain-does-not-exist-anywhere-on-the-internet"] * 5) + ".invalid"
# Feeds that fail, as some always do in production. The demo and every end-to-end test run with them:
# (id, outlet, url path or absolute URL, what goes wrong).
FAILING_FEEDS: tuple[tuple[str, str, str, str], ...] = (
    ("almadar-breaking", "almadar", "http://127.0.0.1:9/almadar/rss/breaking.xml", "connection refused"),
    ("alsham-opinion", "alsham", f"http://{UNRESOLVABLE_HOST}/rss/opinion.xml", "host name does not resolve"),
    ("alnil-sports", "alnil", "/alnil/rss/sports.xml", "HTTP 500"),
    ("alwaha-economy", "alwaha", "/stall/alwaha/rss/economy.xml", "answers nothing: read timeout"),
    ("almanara-culture", "almanara", "/almanara/feed/culture.xml", "redirects to a malformed URL"),
)
# The Location header of that last feed: an IPv6 literal that never closes its bracket.
MALFORMED_LOCATION = "http://[almanara.example/feed/culture"
# The corpus's own "now": just after its newest item (a site built with `now` moves every date by the
# difference). Every sample feed is fresh at this clock.
CORPUS_CLOCK = datetime(2025, 10, 6, 12, 0, tzinfo=UTC)
# A feed that answers 200 but stopped publishing (id, outlet, path): its items are the outlet's pages,
# dated these many days before the site's clock — a daily rhythm that ended weeks ago, so `stale`.
STALE_FEED = ("alwaha-culture", "alwaha", "/alwaha/rss/culture.xml")
STALE_DAYS = (40, 41, 42, 43)


def demo_feeds(base_url: str, *, failing: bool = True, stale: bool = False) -> list[dict[str, Any]]:
    """The feed list as mappings {id, url, outlet, language} (same shape as seeds/feeds.yaml entries): the
    sample outlets' feeds, unless ``failing`` is False the ``FAILING_FEEDS``, and with ``stale`` the
    ``STALE_FEED`` (what the demo polls; its items are pages other feeds list too)."""
    base_url = base_url.rstrip("/")
    corpus = _corpus()
    feeds = [
        {
            "id": feed["id"],
            "url": base_url + feed["path"],
            "outlet": corpus.outlets[feed["outlet"]]["name_ar"],
            "language": "ar",
        }
        for feed in corpus.feeds
    ]
    if failing:
        feeds += [
            {
                "id": feed_id,
                "url": where if where.startswith("http") else base_url + where,
                "outlet": corpus.outlets[outlet]["name_ar"],
                "language": "ar",
            }
            for feed_id, outlet, where, _ in FAILING_FEEDS
        ]
    if stale:
        feed_id, outlet, path = STALE_FEED
        feeds.append(
            {"id": feed_id, "url": base_url + path, "outlet": corpus.outlets[outlet]["name_ar"], "language": "ar"}
        )
    return feeds


def _expected_date(item: _Item) -> str | None:  # of an item already moved to the site's clock
    if item.date is None or not (item.feed_date or (item.page_date and item.page not in ("shell", "missing"))):
        return None
    return _utc(item.date)


def expectations(*, now: datetime | None = None) -> list[Expected]:
    """One per feed item, in feed order, derived from corpus.yaml (dates moved as ``build_site(now=now)``
    moves them)."""
    corpus = _corpus()
    corpus = replace(corpus, items=tuple(_moved(corpus.items, _shift(now))))
    return [
        Expected(
            path=item.link_path,
            feed_id=item.feed_id,
            outcome=item.outcome,
            language=item.lang,
            outlet=corpus.outlets[item.outlet_id]["name_ar"],
            title=item.title,
            published_at=_expected_date(item),
            body_marker=item.body_marker,
            boilerplate_marker=item.boilerplate_marker,
            topic=item.topic,
            story=item.story,
        )
        for item in corpus.items
    ]


# --------------------------------------------------------------------------------------------------
# Benchmark site

_BENCH_FEED_SIZE = 100
_BENCH_START = datetime(2025, 10, 6, 12, 0, tzinfo=timezone(timedelta(hours=3)))


def _bench_paragraphs(articles: list[_Item], i: int) -> tuple[str, ...]:
    """Article ``i % len(articles)`` with its paragraphs rotated, a paragraph of another article added,
    every paragraph numbered, and a closing line carrying the page number: distinct for every ``i``."""
    count = len(articles)
    main = articles[i % count]
    lap = i // count
    paragraphs = list(main.paragraphs)
    shift = lap % len(paragraphs)
    paragraphs = paragraphs[shift:] + paragraphs[:shift]
    if (lap // len(main.paragraphs)) % 2:
        paragraphs.reverse()
    other = articles[(i % count + 1 + lap % (count - 1)) % count]
    paragraphs.insert(len(paragraphs) // 2, other.paragraphs[lap % len(other.paragraphs)])
    numbered = [f"{str(n).translate(_ARABIC_INDIC)}. {p}" for n, p in enumerate(paragraphs, 1)]
    numbered.append(f"أُعدّ هذا الملف ضمن الأرشيف التجريبي للموقع تحت الرقم التسلسلي {i + 1} في سلسلة التقارير الدورية.")
    return tuple(numbered)


def _page_weight(articles: list[_Item], i: int, base_url: str) -> tuple[str, str]:
    """Chrome that real news pages carry and the sample templates leave out: a mega-menu, inline
    configuration scripts and styles, a "most read" box with teasers, a footer link farm. Returns (top,
    bottom) to put inside <body>. About 100 KB of UTF-8, as heavy as a typical Arabic news page."""
    titles = [a.title for a in articles]
    teasers = [_sentences(a.paragraphs[0])[0] for a in articles]
    style = (
        "<style>"
        + "".join(f".c{k}{{margin:{k % 9}px {k % 7}px;color:#{k * 2654435 % 0xFFFFFF:06x}}}" for k in range(500))
        + "</style>"
    )
    menu = "".join(
        f'<li><a href="{base_url}/section/{k}">{_esc(titles[(i + k) % len(titles)][:40])}</a></li>' for k in range(120)
    )
    config = json.dumps(
        {
            "ads": [
                {"slot": f"div-gpt-{k}", "sizes": [[300, 250], [728, 90]], "targeting": {"section": k % 13, "page": i}}
                for k in range(220)
            ],
            "analytics": {"id": f"UA-{i}", "dimensions": list(range(300))},
        }
    )
    most_read = "".join(
        f'<li class="c{k}"><a href="{base_url}/most-read/{(i + k) % 997}"><h3>{_esc(titles[(i + 3 * k) % len(titles)])}'
        f"</h3><p>{_esc(teasers[(i + 5 * k) % len(teasers)])}</p></a></li>"
        for k in range(30)
    )
    footer = "".join(
        f'<a href="{base_url}/page/{k}">{_esc(titles[(i + 7 * k) % len(titles)][:30])}</a> ' for k in range(80)
    )
    top = f'{style}<header class="mega"><nav><ul class="menu">{menu}</ul></nav></header>'
    bottom = (
        f'<aside class="most-read"><h2>الأكثر قراءة</h2><ol>{most_read}</ol></aside>'
        f'<script>window.__CONFIG__ = {config};</script><footer class="links">{footer}</footer>'
    )
    return top, bottom


def bench_site(base_url: str, n: int, *, heavy: bool = True) -> tuple[dict[str, Resource], list[dict[str, Any]]]:
    """A site with ``n`` distinct article pages spread over feeds of about 100 items each.

    The corpus's Arabic articles are cycled through the six outlet templates with rotated, numbered
    paragraphs (plus one borrowed paragraph and a numbered closing line), so every page body differs.
    With ``heavy``, each page also carries about 100 KB of the chrome real news pages have (see
    ``_page_weight``). Pages and feeds are all UTF-8. Returns (resources, feeds) with feeds shaped like
    ``demo_feeds``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    base_url = base_url.rstrip("/")
    corpus = _corpus()
    articles = [i for i in corpus.items if i.renders_page and i.lang == "ar" and len(i.paragraphs) >= 3]
    articles = [a for a in articles if a.page != "amp"]
    outlet_ids = list(corpus.outlets)
    site: dict[str, Resource] = {}
    feeds: list[dict[str, Any]] = []
    for k, start in enumerate(range(0, n, _BENCH_FEED_SIZE)):
        outlet_id = outlet_ids[k % len(outlet_ids)]
        outlet = {**corpus.outlets[outlet_id], "page_encoding": "utf-8"}
        fmt = "atom" if outlet_id == "almanara" else "rss"
        feed: dict[str, Any] = {
            "id": f"bench-{outlet_id}-{k + 1:03d}",
            "outlet": outlet_id,
            "path": f"{outlet['prefix']}/bench/feed-{k + 1:03d}.xml",
            "format": fmt,
            "encoding": "utf-8",
            "full_content": k % 2 == 1,
            "title": f"{outlet['name_ar']} - أرشيف {k + 1}",
            "description": "صفحات الاختبار لقياس الأداء",
        }
        items: list[_Item] = []
        for i in range(start, min(n, start + _BENCH_FEED_SIZE)):
            source = articles[i % len(articles)]
            slug = f"bench/{i + 1:05d}"
            paragraphs = _bench_paragraphs(articles, i)
            item = replace(
                source,
                feed_id=feed["id"],
                outlet_id=outlet_id,
                slug=slug,
                page_path=f"{outlet['prefix']}/{slug}",
                link_path=f"{outlet['prefix']}/{slug}",
                upper_host=False,
                redirect=False,
                title=f"{source.title} ({i + 1})",
                date=_BENCH_START - timedelta(minutes=7 * i),
                feed_date=True,
                page_date=True,
                author_in=outlet.get("author_in", "feed"),
                summary=_sentences(paragraphs[0])[0],
                paragraphs=paragraphs,
                comments=(),
                page="article",
                story=f"bench:{i + 1}",
            )
            items.append(item)
        for index, item in enumerate(items):
            neighbours = [items[(index + d) % len(items)] for d in (1, 2, 3) if len(items) > d]
            related = [(o.title, base_url + o.page_path) for o in neighbours]
            text = _render_page(outlet, item, base_url, related)
            if heavy:
                top, bottom = _page_weight(articles, int(item.slug.rsplit("/", 1)[1]), base_url)
                head, sep, rest = text.partition("<body")
                opening, gt, body = rest.partition(">")
                text = head + sep + opening + gt + top + body.replace("</body>", bottom + "</body>", 1)
            site[item.page_path] = _html_resource(text, "utf-8")
        site[feed["path"]] = _render_feed(feed, outlet, items, base_url)
        feeds.append({"id": feed["id"], "url": base_url + feed["path"], "outlet": outlet["name_ar"], "language": "ar"})
    return site, feeds
