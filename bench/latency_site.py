"""The loopback news site of ``bench_latency.py``: outlets whose RSS feeds publish new on-topic articles
(Russia and Iran backing Assad, written for this bench from templates, not copied from anywhere) at set
times. A feed lists, at each request, the items whose publication time has come; every page exists from
the start (nothing links to it before its time).

Each feed has a rhythm (``gap_minutes``, its mean gap between items, each gap drawn between half and
one and a half of it), shown by a history of items published before the bench starts: that history is
what the poller learns the feed's cadence from, and so the polling interval it gives the feed.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape
from http.server import BaseHTTPRequestHandler

from pipeline.arabic.normalize import normalize_text
from pipeline.demo.server import SiteServer
from pipeline.topics.profiles import Profile, match_profile

# --- the articles ---------------------------------------------------------------------------------

# Subjects of feminine verbs (the sentences agree with them).
RUSSIA = ["روسيا", "موسكو"]
IRAN = ["إيران", "طهران"]
ALLY = ["حزب الله", "لواء فاطميون", "لواء زينبيون", "فيلق القدس"]
REGIME = ["قوات النظام السوري", "قوات الأسد", "القوات الحكومية", "القوات النظامية"]
PLACES = [
    "ريف حماة الشمالي", "ريف إدلب الجنوبي", "ريف اللاذقية الشمالي", "البادية السورية", "ريف حلب الجنوبي",
    "محيط تدمر", "ريف درعا الغربي", "دير الزور", "جبال القلمون", "سهل الغاب", "ريف حمص الشمالي",
    "محيط جسر الشغور", "الميادين", "البوكمال", "محيط خان شيخون", "ريف القنيطرة",
]  # fmt: skip
MEANS = [
    "منظومات دفاع جوي", "راجمات صواريخ", "طائرات مسيرة", "مدرعات حديثة", "ذخائر موجهة", "مروحيات قتالية",
    "مدافع ميدان", "أجهزة تشويش", "عربات نقل جنود", "صواريخ مضادة للدروع",
]  # fmt: skip
DAYS = ["الاثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة", "السبت", "الأحد"]
SOURCES = [
    "مصادر ميدانية", "مرصد محلي", "ناشطون في المنطقة", "مسؤول عسكري طلب عدم ذكر اسمه", "مصدر دبلوماسي غربي",
    "شهود عيان", "مراسلون محليون", "مصادر في المعارضة",
]  # fmt: skip
PERIODS = ["الأسبوع الماضي", "الشهر الماضي", "الأيام العشرة الأخيرة", "الساعات الأخيرة", "مطلع الشهر الجاري"]

HEADLINES = [
    "{ru} ترسل {means} جديدة لدعم {regime} في {place}",
    "{ir} تعزز دعمها العسكري لـ{regime} بمستشارين في {place}",
    "غارات روسية مكثفة تساند تقدم {regime} في {place}",
    "{ally} يدفع بتعزيزات لمساندة {regime} في {place}",
    "{ru} و{ir} تجددان تمسكهما ببقاء الأسد بعد معارك {place}",
    "ضباط من {ir} يقودون هجوماً لـ{regime} في {place} بغطاء جوي روسي",
    "{ru} تتعهد بمواصلة دعم {regime} عسكرياً بعد خسائر {place}",
    "طائرات سوخوي تقصف {place} دعماً لهجوم {regime}",
    "وفد عسكري من {ir} يزور دمشق لبحث دعم {regime} في {place}",
    "{ally} يقاتل إلى جانب {regime} في {place} بتنسيق مع {ir}",
]
LEADS = [
    "أعلنت {ru} {day} أنها ستواصل دعم {regime} في معاركه في {place}، وأرسلت {means} إلى قاعدة حميميم.",
    "نقلت وكالات عن {sources} أن {ir} أرسلت ضباطاً ومستشارين عسكريين لمساندة {regime} في {place} خلال {period}.",
    "شنت طائرات روسية {day} عشرات الغارات على {place} لمساندة {regime} التي تحاول التقدم نحو مواقع الفصائل.",
    "دفع {ally} بمئات المقاتلين إلى {place} لدعم {regime} بطلب من {ir}، بحسب {sources}.",
    "جددت {ru} و{ir} {day} تمسكهما ببقاء بشار الأسد، وتعهدتا بمواصلة الدعم العسكري لـ{regime} في {place}.",
]
SENTENCES = [
    "وبحسب {sources} فإن {n} غارة استهدفت مواقع للفصائل المسلحة في {place} منذ فجر {day}.",
    "وأكد مسؤول في {ru} أن الدعم العسكري لدمشق سيستمر حتى استعادة السيطرة على {place}.",
    "ونقل تقرير عن {sources} وصول {n} من عناصر {ally} إلى {place} خلال {period}.",
    "ونقلت طائرات شحن روسية {means} إلى مطار حميميم في ريف اللاذقية لتعزيز قدرات {regime}.",
    "وقال مستشار في {ir} إن بلاده لن تتخلى عن حليفها في دمشق مهما كانت الكلفة.",
    "وتدير غرفة عمليات مشتركة تضم ضباطاً من {ru} و{ir} المعارك في {place} بحسب {sources}.",
    "ويقدر عدد المستشارين العسكريين من {ir} في {place} بنحو {n} ضابطاً بحسب {sources}.",
    "وتسعى {regime} بدعم من الطيران الروسي إلى فتح طريق يربط {place} بمناطق سيطرتها.",
    "وأشارت تقارير إلى أن {ally} خسر {n} من مقاتليه في معارك {place} خلال {period}.",
    "وكانت {ru} قد أعلنت أن تدخلها العسكري جاء بطلب من الحكومة السورية لحماية مؤسسات الدولة.",
    "واتهمت المعارضة {ir} بإدارة المعارك في {place} عبر ضباط من الحرس الثوري.",
    "وبثت وزارة الدفاع الروسية مشاهد قالت إنها لضربات دقيقة على مستودعات أسلحة في {place}.",
    "ورأى محللون أن التنسيق بين {ru} و{ir} منع سقوط النظام السوري في أكثر من جبهة.",
    "ونقلاً عن {sources} فإن قوافل تحمل عتاداً وذخائر وصلت من العراق إلى {place} لدعم {regime}.",
    "وشاركت مروحيات روسية في إسناد هجوم بري شنته {regime} على قرى في {place}.",
    "وأعلن الكرملين أن الرئيس بوتين بحث هاتفياً مع الرئيس السوري سير العمليات العسكرية في {place}.",
    "وبحسب {sources} فإن قوات النخبة في {ally} تتولى اقتحام المواقع بعد قصف مدفعي كثيف.",
    "ولم تعلق دمشق رسمياً على حجم الدعم الذي تتلقاه من {ir} في معارك {place}.",
    "وذكر مرصد محلي أن {n} مدنياً قتلوا في قصف جوي روسي على {place} يوم {day}.",
    "ويقول خبراء إن الغطاء الجوي الروسي غير موازين القوى لصالح {regime} في {place}.",
    "وتتمسك {ir} بدعم الأسد وتعتبر سوريا حلقة أساسية في محور المقاومة.",
    "وأكدت {ru} أن ضرباتها تستهدف الإرهابيين وأنها تنسق مع الجيش السوري في اختيار الأهداف.",
    "وزار قائد فيلق القدس جبهات {place} مرتين خلال {period} بحسب {sources}.",
    "وأرسلت {ru} سفناً محملة بالعتاد إلى ميناء طرطوس لدعم حليفها السوري.",
    "وأشار تقرير نقل عن {sources} إلى تعزيزات من {ally} وصلت إلى {place} على متن {n} حافلة.",
    "وفي {place} أقامت {regime} بمساعدة خبراء من {ru} نقاطاً جديدة على خطوط التماس.",
    "وقال دبلوماسي غربي إن موسكو وطهران لن تسمحا بانهيار الجيش السوري قبل أي تسوية.",
    "ودمرت غارات روسية {n} آليات للفصائل في {place} قبل أن تتقدم {regime}.",
    "وأعلن الحرس الثوري تشييع {n} من عناصره قتلوا في سوريا خلال {period}.",
    "ويرى مراقبون أن بقاء الأسد بات مرتبطاً بحجم الدعم الذي تقدمه {ru} و{ir}.",
]


@dataclass(frozen=True, slots=True)
class Article:
    feed_id: str
    slug: str
    title: str
    paragraphs: tuple[str, ...]
    published: datetime  # whole seconds, UTC

    @property
    def body(self) -> str:
        return "\n\n".join(self.paragraphs)


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        ru=rng.choice(RUSSIA),
        ir=rng.choice(IRAN),
        ally=rng.choice(ALLY),
        regime=rng.choice(REGIME),
        place=rng.choice(PLACES),
        means=rng.choice(MEANS),
        day=rng.choice(DAYS),
        sources=rng.choice(SOURCES),
        period=rng.choice(PERIODS),
        n=rng.randint(3, 90),
    )


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = normalize_text(text).split()
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


class Writer:
    """Writes distinct on-topic articles: each one passes the profile's alert threshold, and no two share
    more than ``MAX_OVERLAP`` of their word 3-grams (far under the clustering threshold), so each is its own
    story and its own entry in a digest."""

    MAX_OVERLAP = 0.25

    def __init__(self, profile: Profile, rng: random.Random) -> None:
        self.profile = profile
        self.rng = rng
        self._written: list[set[tuple[str, ...]]] = []

    def write(self, feed_id: str, slug: str, published: datetime) -> Article:
        for _ in range(200):
            title = _fill(self.rng.choice(HEADLINES), self.rng)
            sentences = [_fill(self.rng.choice(LEADS), self.rng)]
            sentences += [_fill(s, self.rng) for s in self.rng.sample(SENTENCES, 6)]
            paragraphs = tuple(" ".join(sentences[i : i + 2]) for i in range(0, len(sentences), 2))
            shingles = _shingles(" ".join(paragraphs))
            if any(len(shingles & other) / len(shingles | other) > self.MAX_OVERLAP for other in self._written):
                continue
            score = match_profile(self.profile, title=title, body="\n\n".join(paragraphs)).score
            if score < self.profile.alert_threshold:
                continue
            self._written.append(shingles)
            return Article(feed_id, slug, title, paragraphs, published)
        raise RuntimeError("could not write a distinct on-topic article in 200 tries")


# --- the site -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outlet:
    feed_id: str
    name: str
    gap_minutes: float  # mean gap between the feed's items


@dataclass(frozen=True, slots=True)
class _Page:
    status: int
    headers: dict[str, str]
    body: bytes


def _page(outlet: Outlet, article: Article, url: str) -> _Page:
    when = article.published.isoformat().replace("+00:00", "Z")
    paragraphs = "".join(f"<p>{escape(p)}</p>" for p in article.paragraphs)
    html = f"""<!doctype html>
<html lang="ar" dir="rtl"><head><meta charset="utf-8"><title>{escape(article.title)} | {escape(outlet.name)}</title>
<link rel="canonical" href="{escape(url)}"><meta property="article:published_time" content="{when}"></head>
<body><header><a href="/">{escape(outlet.name)}</a> <nav><a href="/{outlet.feed_id}/syria">سوريا</a>
<a href="/{outlet.feed_id}/world">العالم</a></nav></header>
<main><article><h1>{escape(article.title)}</h1><time datetime="{when}">{when}</time>{paragraphs}</article></main>
<footer>جميع الحقوق محفوظة — {escape(outlet.name)}</footer></body></html>"""
    return _Page(200, {"Content-Type": "text/html; charset=utf-8"}, html.encode("utf-8"))


@dataclass
class LatencySite:
    """The outlets' feeds and pages on 127.0.0.1. ``articles`` holds every article (history and those
    still to come); a feed shows the newest ``FEED_ITEMS`` of those whose time has come."""

    FEED_ITEMS = 20

    outlets: list[Outlet]
    articles: list[Article] = field(default_factory=list)
    server: SiteServer = field(default_factory=SiteServer)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server.start()
        for outlet in self.outlets:
            self.server.handlers[self.feed_path(outlet)] = self._feed_handler(outlet)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @staticmethod
    def feed_path(outlet: Outlet) -> str:
        return f"/{outlet.feed_id}/rss.xml"

    def url(self, article: Article) -> str:
        return f"{self.base_url}/{article.feed_id}/news/{article.slug}.html"

    def add(self, articles: list[Article]) -> None:
        by_id = {o.feed_id: o for o in self.outlets}
        with self.lock:
            for article in articles:
                self.server.resources[f"/{article.feed_id}/news/{article.slug}.html"] = _page(
                    by_id[article.feed_id], article, self.url(article)
                )
                self.articles.append(article)

    def feeds_yaml(self) -> dict[str, list[dict[str, str]]]:
        return {
            "feeds": [
                {"id": o.feed_id, "url": self.base_url + self.feed_path(o), "outlet": o.name, "language": "ar"}
                for o in self.outlets
            ]
        }

    def _feed_handler(self, outlet: Outlet):  # type: ignore[no-untyped-def]
        def handle(req: BaseHTTPRequestHandler) -> None:
            now = datetime.fromtimestamp(time.time(), UTC)
            with self.lock:
                items = sorted(
                    (a for a in self.articles if a.feed_id == outlet.feed_id and a.published <= now),
                    key=lambda a: a.published,
                    reverse=True,
                )[: self.FEED_ITEMS]
            body = _rss(outlet, items, self.base_url, self.url).encode("utf-8")
            req.send_response(200)
            req.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)

        return handle

    def stop(self) -> None:
        self.server.stop()


def _rss(outlet: Outlet, items: list[Article], base_url: str, url_of) -> str:  # type: ignore[no-untyped-def]
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(outlet.name)}</title><link>{base_url}/{outlet.feed_id}/</link>",
        "<description>آخر الأخبار</description><language>ar</language>",
    ]
    for a in items:
        link = escape(url_of(a))
        lines.append(
            f'<item><title>{escape(a.title)}</title><link>{link}</link><guid isPermaLink="true">{link}</guid>'
            f"<pubDate>{format_datetime(a.published)}</pubDate><description>{escape(a.paragraphs[0])}</description></item>"
        )
    lines.append("</channel></rss>")
    return "\n".join(lines)


def publication_times(rng: random.Random, gap_minutes: float, *, start: float, end: float) -> list[float]:
    """Times (epoch seconds, whole) from ``start`` to ``end``, each gap drawn uniformly between half and
    one and a half of ``gap_minutes``; the first one a random part of a gap after ``start``."""
    gap = gap_minutes * 60
    times = []
    moment = start + rng.uniform(0, gap)
    while moment < end:
        times.append(float(int(moment)))
        moment += rng.uniform(0.5 * gap, 1.5 * gap)
    return times
