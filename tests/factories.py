"""One way to make an ``Article`` in the tests: every field has a plain default, a test names only what
it is about."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.records import Article
from pipeline.stories.fingerprint import fingerprint

T0 = datetime(2025, 10, 3, 9, 0, tzinfo=UTC)


def make_article(
    url: str = "https://news.example/1",
    *,
    body: str = "نص الخبر عن الغارات الروسية في سوريا",
    outlet: str = "وكالة",
    title: str = "عنوان الخبر",
    published_at: datetime = T0,
    fetched_at: datetime | None = None,
    content_hash: str | None = None,
    fingerprinted: bool = False,
    **fields: Any,
) -> Article:
    """An article at ``url`` (its canonical URL too unless ``canonical_url`` is given). ``fingerprinted``
    computes its near-duplicate signature from ``body``, as extraction does; other ``fields`` are passed
    to ``Article`` as they are."""
    if fingerprinted:
        fp = fingerprint(body)
        fields.setdefault("lsh_bands", fp.bands)
        fields.setdefault("minhash", fp.signature)
    values: dict[str, Any] = {
        "url": url,
        "canonical_url": url,
        "feed_id": "f",
        "outlet": outlet,
        "title": title,
        "body": body,
        "summary": "",
        "author": None,
        "published_at": published_at,
        "fetched_at": fetched_at or published_at,
        "language": "ar",
        "content_hash": content_hash or url,
        "word_count": len(body.split()),
    }
    values.update(fields)
    return Article(**values)
