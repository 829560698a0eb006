"""The near-duplicate bucket store: ``<alias>-lsh``, whose documents are only ever read by id.

A bucket holds the articles filed under one sketch key (``cluster.sketch``). It is a run of *slot*
documents ``<key>.0``, ``<key>.1``, … each naming one article and its publication time:

- reading buckets is ``mget`` of slot 0 of every key, then of the next slots of the buckets that had
  one, and so on (slots are filled in order, so the first missing slot ends a bucket);
- filing an article is a bulk ``create`` of the first free slot. A 409 means another worker took that
  slot since we read the bucket: we take the next one. Nothing is ever read, changed and written back,
  so workers running at once lose nothing, and a retried batch finds its own articles already filed;
- a bucket with ``CROWDED`` members takes no more: its key is a stock phrase or a page template, or a
  story already well filed. Later articles are filed under their next keys instead, while the members
  already in it stay where every copy looks (an article's first keys), so none is ever stranded.

Why documents by id: the embedded server (noida-db) answers every search, and every refresh, with a
pass over all its documents (about 3 s and 1–2 s at 100,000 articles), while ``mget`` and bulk writes
take milliseconds at any size (``mget`` reads in real time, without a refresh); on Elasticsearch both
are core, cheap APIs. Why few keys per article: the embedded server holds about 1.2 KB of memory per
document, whatever its size.

The same store keeps two other kinds of runs, looked up by id for the same reasons: ``text-<hash>``,
the articles of one outlet with one exact text (exact deduplication), and ``cluster-<id>``, the
articles that joined a cluster (moving a cluster, counting its size). A slot does not say which cluster
its article is in (that changes): the article's document does.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from elasticsearch import Elasticsearch

from pipeline import log
from pipeline.errors import IndexingError
from pipeline.records import Article
from pipeline.store.es import bulk_items, get_many
from pipeline.store.index import Names

_log = log.get(__name__)

# Keys an article is filed under: copies at shingle similarity 0.4 share one of their first 8 with
# probability 0.998, and 8 documents per article keep the embedded server's memory near 1 GB per
# 100,000 articles.
FILED_KEYS = 8
# A bucket with this many members takes no more articles. A key shared by that many articles is
# boilerplate, or a story whose copies are already found through it.
CROWDED = 8
# Keys whose buckets an article reads: its first PROBE_STEP (every member a candidate), then further
# along its sketch, PROBE_STEP at a time, while it has found fewer than FILED_KEYS buckets that are not
# crowded (much of the text is boilerplate), up to MAX_PROBED.
PROBE_STEP = 16
MAX_PROBED = 256
# Members read from one bucket at most (workers filing at once can push a bucket past CROWDED).
CAP = 64


@dataclass(frozen=True, slots=True)
class Member:
    article_id: str
    published_at: int  # epoch seconds: the look-back window is applied without reading the article


@dataclass(slots=True)
class Bucket:
    members: list[Member] = field(default_factory=list)  # in slot order
    full: bool = False  # CAP members or more: members not read

    @property
    def crowded(self) -> bool:
        return self.full or len(self.members) >= CROWDED


@dataclass(frozen=True, slots=True)
class Probe:
    buckets: dict[str, Bucket]  # every key read
    looked: dict[str, list[str]]  # article id → the keys whose members are its candidates, in sketch order
    filed: dict[str, list[str]]  # article id → the keys it is (to be) filed under


@dataclass(frozen=True, slots=True)
class Filed:
    slots: dict[tuple[str, str], int]  # (key, article id) → the slot it took
    taken: dict[str, list[int]]  # key → slots another worker took after we read the bucket
    failed: int = 0  # slots not written for another reason (logged)


def slot_id(key: str, slot: int) -> str:
    return f"{key}.{slot}"


def text_key(outlet: str, content_hash: str) -> str:
    """The key of one outlet's exact text: exact deduplication looks it up by id."""
    return "text-" + hashlib.blake2b(f"{outlet}\x1f{content_hash}".encode(), digest_size=8).hexdigest()


def cluster_key(cluster_id: str) -> str:
    """The key of a cluster's run: the articles that joined the cluster (besides its head)."""
    return f"cluster-{cluster_id}"


def read_buckets(es: Elasticsearch, alias: str, keys: Iterable[str]) -> dict[str, Bucket]:
    """The buckets of ``keys`` (an empty one for a key no article was filed under), at most CAP members."""
    return _read(es, alias, dict.fromkeys(keys, 0), cap=CAP)


def read_runs(es: Elasticsearch, alias: str, keys: Iterable[str]) -> dict[str, Bucket]:
    """The buckets of ``keys`` read to their end: clusters' runs, which have no cap."""
    return _read(es, alias, dict.fromkeys(keys, 0), cap=None)


def _read(es: Elasticsearch, alias: str, start: Mapping[str, int], *, cap: int | None) -> dict[str, Bucket]:
    """Members of each key's bucket from slot ``start[key]`` on, in rounds of ``mget``: each round reads
    as many slots again as the bucket has shown so far. With a ``cap``, the second round also looks at
    the last slot a bucket can have, so a full one costs two reads, not seven rounds."""
    index = Names(alias).lsh
    end = cap if cap is not None else 1 << 62
    out = {key: Bucket(full=lo >= end) for key, lo in start.items()}
    # key → (first slot of this round's window, end of the window, also read the last slot)
    todo = {key: (lo, min(end, lo + 1), False) for key, lo in start.items() if lo < end}
    while todo:
        ids = [slot_id(k, n) for k, (lo, hi, last) in todo.items() for n in [*range(lo, hi), *([end - 1] * last)]]
        docs = get_many(es, index, ids, fields=["article_id", "published_at"])
        after: dict[str, tuple[int, int, bool]] = {}
        for key, (lo, hi, last) in todo.items():
            bucket = out[key]
            if last and slot_id(key, end - 1) in docs:
                bucket.full = True
                continue
            ended = False
            for n in range(lo, hi):
                src = docs.get(slot_id(key, n))
                if src is None:
                    ended = True
                    break
                bucket.members.append(Member(str(src["article_id"]), int(src["published_at"])))
            if ended:
                continue
            if hi >= end:
                bucket.full = True
                continue
            after[key] = (hi, min(end, max(4, 2 * hi)), cap is not None and start[key] == 0 and hi == 1)
        todo = after
    return out


def probe(es: Elasticsearch, alias: str, sketches: Mapping[str, Sequence[str]]) -> Probe:
    """Read the buckets of each article's first ``PROBE_STEP`` sketch keys, and further along its sketch
    until it has ``FILED_KEYS`` keys to be filed under: buckets not crowded, counting the articles of
    this batch filed before it (``sketches`` is in filing order), or buckets it is already in (an
    article taken again). One set of reads for a whole batch."""
    buckets: dict[str, Bucket] = {}
    position = dict.fromkeys(sketches, 0)
    while True:
        filed = _plan(sketches, position, buckets)
        readers = [
            article_id
            for article_id, keys in sketches.items()
            if len(filed[article_id]) < FILED_KEYS and position[article_id] < min(len(keys), MAX_PROBED)
        ]
        if not readers:
            break
        chunks = {a: sketches[a][position[a] : min(position[a] + PROBE_STEP, MAX_PROBED)] for a in readers}
        buckets.update(read_buckets(es, alias, {k for chunk in chunks.values() for k in chunk if k not in buckets}))
        for article_id, chunk in chunks.items():
            position[article_id] += len(chunk)
    looked = {}
    for article_id, keys in sketches.items():
        first = list(keys[:PROBE_STEP])
        seen = set(first)
        looked[article_id] = first + [
            k for k in keys[PROBE_STEP : position[article_id]] if k not in seen and not buckets[k].crowded
        ]
    return Probe(buckets=buckets, looked=looked, filed=filed)


def _plan(
    sketches: Mapping[str, Sequence[str]], position: Mapping[str, int], buckets: Mapping[str, Bucket]
) -> dict[str, list[str]]:
    """The keys each article is filed under, from the keys read so far."""
    load: dict[str, int] = defaultdict(int)  # slots this batch will take
    filed: dict[str, list[str]] = {}
    for article_id, keys in sketches.items():
        chosen: list[str] = []
        for key in keys[: position[article_id]]:
            if len(chosen) == FILED_KEYS:
                break
            bucket = buckets[key]
            if any(m.article_id == article_id for m in bucket.members):
                chosen.append(key)
            elif not bucket.full and len(bucket.members) + load[key] < CROWDED:
                chosen.append(key)
                load[key] += 1
        filed[article_id] = chosen
    return filed


def file_articles(
    es: Elasticsearch,
    alias: str,
    entries: Sequence[tuple[str, Member]],
    buckets: Mapping[str, Bucket],
    *,
    limit: int | None = CROWDED,
) -> Filed:
    """File each (key, member) in the first free slot after the members read in ``buckets`` (entries of
    one key take consecutive slots, in the order given). A slot taken meanwhile by another worker (409)
    moves the entry to the next one; a bucket that reaches ``limit`` members meanwhile takes no more.

    Raises:
        IndexingError: the cluster could not be reached, or could not take some slots now (429, 5xx):
            the batch must be retried (before its articles are written, so nothing is lost).
    """
    index = Names(alias).lsh
    free = {key: len(buckets[key].members) for key, _ in entries}
    pending = list(entries)
    slots: dict[tuple[str, str], int] = {}
    taken: dict[str, list[int]] = defaultdict(list)
    failed = 0
    while pending:
        attempt: dict[str, tuple[str, Member]] = {}
        for key, member in pending:
            if limit is None or free[key] < limit:
                attempt[slot_id(key, free[key])] = (key, member)
                free[key] += 1
        pending = []
        conflicts: list[str] = []
        for doc_id, status, reason in _create(es, index, attempt):
            key, member = attempt[doc_id]
            slot = int(doc_id.rpartition(".")[2])
            if status in (200, 201):
                slots[(key, member.article_id)] = slot
            elif status == 409:
                conflicts.append(doc_id)
            elif status == 429 or status >= 500 or status == 0:
                raise IndexingError(f"filing near-duplicate keys: slot {doc_id} not written ({reason}); retry later")
            else:
                failed += 1
                _log.warning("cluster.file_failed", key=key, article=member.article_id, reason=reason)
        # A 409 is usually another worker's slot; but a create retried after a dropped connection meets
        # its own first try, which did land: that slot is ours, not one to skip.
        holders = get_many(es, index, conflicts, fields=["article_id"]) if conflicts else {}
        for doc_id in conflicts:
            key, member = attempt[doc_id]
            slot = int(doc_id.rpartition(".")[2])
            if holders.get(doc_id, {}).get("article_id") == member.article_id:
                slots[(key, member.article_id)] = slot
            else:
                taken[key].append(slot)
                pending.append((key, member))
    return Filed(slots=slots, taken=dict(taken), failed=failed)


def _create(es: Elasticsearch, index: str, docs: Mapping[str, tuple[str, Member]]) -> Iterator[tuple[str, int, str]]:
    """(slot id, HTTP status, reason) of a bulk ``create`` of each slot; 429s are retried with backoff."""
    actions = (
        {
            "_op_type": "create",
            "_index": index,
            "_id": doc_id,
            "_source": {"article_id": member.article_id, "published_at": member.published_at},
        }
        for doc_id, (_, member) in docs.items()
    )
    return bulk_items(es, actions, chunk_size=2000)


def read_late(es: Elasticsearch, alias: str, filed: Filed) -> dict[str, list[Member]]:
    """Members other workers filed while we filed ours, by key: the slots we found taken, and the slots
    after our last one on each key. Read after our articles were indexed, this closes the race between
    two workers filing copies of one story at once: of the two, the one that files second meets the
    other's slot (in its reads or as a 409), and if that article is not indexed yet when it looks, the
    other worker will find this one's slot after its own, and this one's article already indexed."""
    last: dict[str, int] = {}
    for (key, _), slot in filed.slots.items():
        last[key] = max(last.get(key, -1), slot)
    after = _read(es, alias, {key: slot + 1 for key, slot in last.items()}, cap=CAP)
    late = {key: list(bucket.members) for key, bucket in after.items() if bucket.members}
    ids = [slot_id(key, slot) for key, slots in filed.taken.items() for slot in slots]
    for doc_id, src in get_many(es, Names(alias).lsh, ids, fields=["article_id", "published_at"]).items():
        key = doc_id.rpartition(".")[0]
        late.setdefault(key, []).append(Member(str(src["article_id"]), int(src["published_at"])))
    return late


def indexed_texts(es: Elasticsearch, alias: str, articles: Sequence[Article]) -> dict[tuple[str, str], str]:
    """(outlet, content_hash) → _id of the earliest indexed article with that text, for exact
    deduplication: look-ups by id in the text runs (``text_key``), checked against the articles."""
    wanted = {text_key(a.outlet, a.content_hash): (a.outlet, a.content_hash) for a in articles}
    runs = read_buckets(es, alias, wanted)
    ids = sorted({m.article_id for run in runs.values() for m in run.members})
    docs = get_many(es, alias, ids, fields=["outlet", "content_hash", "published_at"])
    found: dict[tuple[str, str], str] = {}
    for doc_id, src in sorted(docs.items(), key=lambda item: (str(item[1].get("published_at")), item[0])):
        text = (src.get("outlet"), src.get("content_hash"))
        if text in wanted.values():
            found.setdefault((str(text[0]), str(text[1])), doc_id)
    return found


def file_under(es: Elasticsearch, alias: str, articles: Sequence[Article], found: Probe) -> tuple[list[Article], Filed]:
    """File each article under the keys ``found`` planned for it and under its text key, except where it
    is filed already (a retried batch, an updated article). Returns the articles with the sketch keys
    they are filed under in ``lsh_bands`` (a slot lost to a bucket crowded meanwhile is not)."""
    buckets = dict(found.buckets)
    texts = {a.id: text_key(a.outlet, a.content_hash) for a in articles}
    buckets.update(read_buckets(es, alias, set(texts.values())))
    entries = []
    keys: dict[str, list[str]] = defaultdict(list)  # article id → keys it is filed under already
    for a in articles:
        for key in [*found.filed.get(a.id, ()), texts[a.id]]:
            if any(m.article_id == a.id for m in buckets[key].members):
                keys[a.id].append(key)
            else:
                entries.append((key, Member(a.id, int(a.published_at.timestamp()))))
    entries.sort(key=lambda e: (e[0], e[1].published_at, e[1].article_id))  # slots in a fixed order
    filed = file_articles(es, alias, entries, buckets)
    for key, article_id in filed.slots:
        keys[article_id].append(key)
    return [replace(a, lsh_bands=tuple(sorted(k for k in keys[a.id] if k != texts[a.id]))) for a in articles], filed
