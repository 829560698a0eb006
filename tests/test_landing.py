"""The landing area between the polling and processing DAGs: on a local folder and on an fsspec object
store (``memory://``, the same code path as ``s3://``); and how feeds are cut into polling batches."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from factories import make_article

from pipeline.errors import LandingError
from pipeline.records import Article
from pipeline.settings import Settings
from pipeline.store.landing import Landing, batch_ref
from pipeline.tasks import plan_feed_batches, plan_processing, process_landed

WHEN = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def article(n: int) -> Article:
    return make_article(
        f"https://example.org/a/{n}?utm_source=x",
        canonical_url=f"https://example.org/a/{n}",
        feed_id="feed-a",
        outlet="الصحيفة",
        title=f"عنوان الخبر رقم {n} عن «الأسد» & <b>",
        body="فقرة أولى.\n\nفقرة ثانية عن موسكو وطهران.",
        summary="ملخص",
        published_at=WHEN,
        fetched_at=WHEN + timedelta(minutes=5),
        content_hash=f"h{n}",
        word_count=9,
        topics=("iran-russia-assad",),
        topic_matches=({"profile": "iran-russia-assad", "score": 7.5, "terms": ["الأسد"]},),
        lsh_bands=("00abc", "01def"),
        minhash="AAEC",
    )


@pytest.fixture(params=["folder", "memory"])
def landing(request: pytest.FixtureRequest, tmp_path: Path) -> Landing:
    if request.param == "folder":
        return Landing(str(tmp_path / "landing"))
    return Landing(f"memory://landing-{uuid.uuid4().hex}")


def test_a_batch_reads_back_exactly_what_was_written(landing: Landing) -> None:
    articles = [article(1), article(2)]
    ref = landing.write(
        batch_ref("run 1/0", now=WHEN),
        articles,
        rank={articles[0].id: 5},
        updated={articles[0].id: "2026-11-20T09:00:00Z", articles[1].id: None},
        attempts={articles[1].id: 2},
        meta={"feeds": ["feed-a"]},
    )
    assert ref == "2026-11-20/run_1_0"
    batch = landing.read(ref)
    assert batch.articles == articles
    assert batch.rank == {articles[0].id: 5}
    assert batch.updated[articles[0].id] == "2026-11-20T09:00:00Z" and batch.attempts[articles[1].id] == 2
    assert batch.meta == {"feeds": ["feed-a"]}
    assert landing.batches() == [ref] and landing.pending() == [ref] and landing.size(ref) > 0


def test_a_retried_task_replaces_its_batch_instead_of_adding_one(landing: Landing) -> None:
    ref = batch_ref("run-1-0", now=WHEN)
    landing.write(ref, [article(1)], rank={}, updated={}, attempts={}, meta={})
    landing.write(ref, [article(1), article(2)], rank={}, updated={}, attempts={}, meta={})
    assert landing.batches() == [ref]
    assert len(landing.read(ref).articles) == 2


def test_done_batches_leave_the_pending_list_and_are_pruned_after_the_retention(landing: Landing) -> None:
    old = landing.write(
        batch_ref("old", now=WHEN - timedelta(days=10)), [article(1)], rank={}, updated={}, attempts={}, meta={}
    )
    stuck = landing.write(
        batch_ref("stuck", now=WHEN - timedelta(days=10)), [article(2)], rank={}, updated={}, attempts={}, meta={}
    )
    recent = landing.write(batch_ref("recent", now=WHEN), [article(3)], rank={}, updated={}, attempts={}, meta={})
    landing.mark_done(old, {"indexed": 1})
    landing.mark_done(recent, {"indexed": 1})
    assert landing.pending() == [stuck]
    removed = landing.prune(7, now=WHEN)
    assert removed == 1
    # The processed old batch is gone; the unprocessed one is kept whatever its age; the recent one stays.
    assert landing.batches() == [stuck, recent]


def test_a_local_batch_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    landing = Landing(str(tmp_path / "landing"))
    ref = landing.write(batch_ref("a", now=WHEN), [article(1)], rank={}, updated={}, attempts={}, meta={})
    folder = tmp_path / "landing" / "batches" / "2026-11-20"
    # What a writer killed mid-write leaves behind: a temporary file beside the batch. It is not a batch.
    (folder / "b.json.gz.0123abcd.tmp").write_bytes(b"\x1f\x8b partial")
    assert landing.batches() == [ref]
    assert [p.name for p in folder.iterdir() if p.name.endswith(".json.gz")] == ["a.json.gz"]


def test_unreadable_missing_or_foreign_batches_raise_a_clear_error(tmp_path: Path) -> None:
    landing = Landing(str(tmp_path / "landing"))
    with pytest.raises(LandingError, match="no batch 2026-11-20/none"):
        landing.read("2026-11-20/none")
    with pytest.raises(LandingError, match="not a batch reference"):
        landing.read("../../etc/passwd")
    bad = tmp_path / "landing" / "batches" / "2026-11-20" / "bad.json.gz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(gzip.compress(b"{not json"))
    with pytest.raises(LandingError, match="unreadable"):
        landing.read("2026-11-20/bad")
    bad.write_bytes(gzip.compress(b'{"format": 99, "articles": []}'))
    with pytest.raises(LandingError, match="format 99"):
        landing.read("2026-11-20/bad")


def test_feeds_of_one_host_share_a_polling_batch(tmp_path: Path) -> None:
    feeds = [{"id": f"big-{n}", "url": f"https://big.example/{n}.xml", "outlet": "Big"} for n in range(5)]
    feeds += [{"id": f"s{n}", "url": f"https://site{n}.example/rss", "outlet": f"S{n}"} for n in range(7)]
    path = tmp_path / "feeds.yaml"
    path.write_text(yaml.safe_dump({"feeds": feeds}), encoding="utf-8")
    batches = plan_feed_batches(Settings(feeds_file=path, poll_batch_feeds=4))
    assert sorted(f for b in batches for f in b) == sorted(f["id"] for f in feeds)
    holding_big = [b for b in batches if any(f.startswith("big-") for f in b)]
    assert len(holding_big) == 1 and sum(f.startswith("big-") for f in holding_big[0]) == 5
    assert all(len(b) <= 4 for b in batches if b is not holding_big[0])


def test_processing_plan_takes_announced_and_pending_batches_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    landing = Landing(settings.landing)
    done = landing.write(batch_ref("done", now=WHEN), [article(1)], rank={}, updated={}, attempts={}, meta={})
    lost = landing.write(batch_ref("lost-event", now=WHEN), [article(2)], rank={}, updated={}, attempts={}, meta={})
    new = landing.write(batch_ref("new", now=WHEN), [article(3)], rank={}, updated={}, attempts={}, meta={})
    landing.mark_done(done, {})
    assert plan_processing(settings, [new, done]) == [sorted([lost, new])]
    assert plan_processing(settings, []) == [sorted([lost, new])]


def test_an_unreadable_batch_is_reported_and_does_not_hold_back_the_others(
    es_url: str, alias: str, tmp_path: Path
) -> None:
    settings = Settings(es_url=es_url, es_index=alias, data_dir=tmp_path)
    landing = Landing(settings.landing)
    good = landing.write(batch_ref("good", now=WHEN), [article(1)], rank={}, updated={}, attempts={}, meta={})
    bad = batch_ref("bad", now=WHEN)
    broken = tmp_path / "landing" / "batches" / f"{bad}.json.gz"
    broken.write_bytes(b"this is not gzip")
    counts = process_landed(settings, [bad, good])
    assert counts["indexed"] == 1 and counts["batches"] == [good]
    assert [u["batch"] for u in counts["unreadable"]] == [bad] and "unreadable" in counts["unreadable"][0]["reason"]
    assert landing.pending() == [bad]
