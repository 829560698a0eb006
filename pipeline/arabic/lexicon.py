"""The Arabic lexicon every matcher shares: attached clitics, the Snowball stem, stop words.

Topic matching (``topic_terms``), profile drafting (``profile_builder``) and the distinctive-terms
statistic (``compare_terms``) must agree on what a word is: one home for the rules.
"""

from __future__ import annotations

import threading

import Stemmer  # type: ignore[import-not-found, unused-ignore]

from pipeline.arabic.normalize import normalize_text

ARTICLE = "ال"
MIN_REMAINDER = 2  # a clitic is only taken off a token that keeps at least two letters


def _clitic_prefixes() -> tuple[str, ...]:
    # Conjunction, then preposition, then article, each optional. Longest first.
    found: set[str] = set()
    for conjunction in ("", "و", "ف"):
        for preposition in ("", "ب", "ك", "ل"):
            for article in ("", ARTICLE):
                # ل + ال is written لل.
                prefix = conjunction + ("لل" if preposition == "ل" and article else preposition + article)
                if prefix:
                    found.add(prefix)
    return tuple(sorted(found, key=lambda prefix: (-len(prefix), prefix)))


CLITIC_PREFIXES = _clitic_prefixes()

_stemmer_lock = threading.Lock()
_stemmer = Stemmer.Stemmer("arabic")


def stem(bare: str) -> str:
    """The Snowball stem of a normalised word without its article."""
    # normalize_text folds ة into ه, which the Snowball stemmer reads as a pronoun and keeps; it
    # also strips prefixes differently with and without the article. Giving it the article and
    # the ta marbuta back makes غارة, غارات and الغارات (and روسية, الروسي, روس) agree.
    if len(bare) > 3 and bare.endswith("ه"):
        bare = bare[:-1] + "ة"
    with _stemmer_lock:  # a Stemmer object is not safe to share between threads
        stem: str = _stemmer.stemWord(ARTICLE + bare)
    return stem


def strip_article(token: str) -> str:
    """``token`` without a leading article, when at least two letters remain."""
    if token.startswith(ARTICLE) and len(token.rstrip("*")) - 2 >= MIN_REMAINDER:
        return token[2:]
    return token


# Function words, auxiliaries, reporting verbs, time words and newsroom boilerplate. Written
# plainly; compared as match keys (normalised, article off).
_STOP_TEXT = """
في من على الى إلى عن مع بين حتى منذ خلال عبر نحو لدى عند قبل بعد أمام خلف فوق تحت دون ضد حول
و ف ثم أو أم بل لكن لكنه غير سوى إلا الا إن أن ان إنه أنه انه إنها أنها لأن كي لكي لم لن لا ما ماذا
هل قد لقد كان كانت كانوا يكون تكون يكن ليس ليست صار صارت أصبح اصبح ظل يزال تزال مازال
هو هي هم هن هما أنا نحن أنت انت أنتم انتم هذا هذه ذلك تلك هذان هؤلاء أولئك الذي التي الذين اللذين اللتين
اللواتي مما ممن كما كيف كيفية أين متى لماذا إذ إذا اذا لو لولا كل بعض جميع الجميع أي أيضا ايضا
فقط حين حيث بينما كلما عدة عدد مزيد مزيدا أكثر اكثر أقل اقل أعلى اعلى أول اول ثاني ثانية أخرى اخرى آخر آخرين
جدا جنبا جانب إطار اطار بشأن حيال إزاء وفق وفقا طبقا بناء إضافة بالإضافة الإضافة عليه عليها عليهم له لها
لهم به بها بهم منه منها منهم فيه فيها فيهم إليه إليها اليه اليها عنه عنها معه معها هناك هنا الآن الان
يوم اليوم أمس غدا الشهر شهر الأسبوع أسبوع العام عام السنة سنة السنوات سنوات الماضي الماضية المقبل المقبلة
الحالي الحالية حاليا الأربع الثلاث ثلاثة أربعة خمسة آلاف ألف مئات المئات عشرات بضعة بضع
يناير فبراير مارس أبريل ابريل مايو يونيو يوليو أغسطس اغسطس سبتمبر أكتوبر اكتوبر نوفمبر ديسمبر
قال قالت يقول تقول قوله قولها أضاف أضافت ذكر ذكرت أكد أكدت يؤكد يشير تشير أشار أشارت نقل نقلت
تنقل ينقل تنسب ينسب أفاد أفادت أعلن أعلنت زعم يمكن تم يتم جاء جاءت شرط تضمن تضمنت يشمل
وكالة الوكالة الأنباء أنباء مصادر مصدر المصادر تقرير التقرير مسؤول المسؤول مسؤولين المسؤولين كبار كبير
رفيعة رفيع المستوى مستوى مستوياته عليا الأعلى العليا بعضهم الأمور منطقة المنطقة
رويترز برس الأناضول أسوشيتد
"""
# Normalised, article kept: "الله" must not become the stop word "له".
STOP_WORDS = frozenset(normalize_text(word) for word in _STOP_TEXT.split())
