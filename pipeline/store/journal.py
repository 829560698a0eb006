"""The write journal: which articles a process is clustering and indexing right now, in
``<alias>-journal``, so that the next cycle can finish what a dead process left half-done.

Clustering a batch writes in three steps — the bucket store, the articles, then the clusters they
changed (moved heads, sizes) — and nothing can make three writes one. A process killed between the
articles and the clusters (``kill -9``, the out-of-memory killer, a node lost) used to leave articles
with ``cluster_size`` 1 in clusters of three for good, since later runs skip indexed articles. Now a
process files an *entry* naming its articles before the first write and removes it after the last; an
entry whose process is gone is taken over by the next cycle, which clusters those articles again
(idempotent: they keep their clusters, the sizes and moves are written) and removes it.

Entries live in a few fixed slots (``journal.0`` … ``journal.63``) read with one ``mget``: by id only,
real-time, no search and no refresh (each costs seconds on the embedded server at 100,000 articles).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from pipeline import log
from pipeline.records import iso, parse_iso_or_none
from pipeline.store.es import get_many, translated
from pipeline.store.index import Names

_log = log.get(__name__)

SLOTS = 64  # batches in flight at once across every worker; far more than a deployment runs
# An entry whose process cannot be checked (another machine) is taken as abandoned after this long.
# Processing a batch takes seconds to minutes; a live one that takes longer is merely redone.
STALE_AFTER = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Entry:
    slot: str  # the document id, journal.<n>
    ids: tuple[str, ...]  # the articles being written
    host: str
    pid: int
    started_at: str
    seq_no: int = -1
    primary_term: int = -1


def _slot(n: int) -> str:
    return f"journal.{n}"


def open_entry(es: Elasticsearch, alias: str, ids: Sequence[str], *, now: datetime) -> Entry | None:
    """File an entry for ``ids`` in the first free slot (None when every slot is taken: the batch goes
    on without one, as before the journal existed, and says so in the log).

    Raises:
        IndexingError: the cluster cannot be reached.
    """
    entry = Entry("", tuple(ids), socket.gethostname(), os.getpid(), iso(now) or "")
    body = {"ids": list(entry.ids), "host": entry.host, "pid": entry.pid, "started_at": entry.started_at}
    name = Names(alias).journal
    with translated(f"writing {name}", url=name):
        for n in range(SLOTS):
            try:
                es.create(index=name, id=_slot(n), document=body)
            except ConflictError:
                continue
            return Entry(_slot(n), entry.ids, entry.host, entry.pid, entry.started_at)
    _log.warning("journal.full", alias=alias, slots=SLOTS, articles=len(ids))
    return None


def close_entry(es: Elasticsearch, alias: str, entry: Entry | None) -> None:
    """Remove ``entry``: its articles and their clusters are written.

    Raises:
        IndexingError: the cluster cannot be reached.
    """
    if entry is None:
        return
    name = Names(alias).journal
    # Not found: taken over and finished by another process that thought ours dead.
    with translated(f"writing {name}", url=name), contextlib.suppress(NotFoundError):
        es.delete(index=name, id=entry.slot)


def abandoned(es: Elasticsearch, alias: str, *, now: datetime) -> list[Entry]:
    """Entries whose process is gone: on this machine a pid that no longer runs, elsewhere an entry older
    than ``STALE_AFTER``.

    Raises:
        IndexingError: the journal cannot be read.
    """
    name = Names(alias).journal
    with translated(f"reading {name}", url=name):
        docs = es.mget(index=name, ids=[_slot(n) for n in range(SLOTS)])["docs"]
    host = socket.gethostname()
    found = []
    for doc in docs:
        if not doc.get("found"):
            continue
        src = doc.get("_source") or {}
        entry = Entry(
            doc["_id"],
            tuple(src.get("ids") or ()),
            str(src.get("host") or ""),
            int(src.get("pid") or 0),
            str(src.get("started_at") or ""),
            int(doc.get("_seq_no", -1)),
            int(doc.get("_primary_term", -1)),
        )
        started = parse_iso_or_none(entry.started_at)
        if entry.host == host:
            if entry.pid != os.getpid() and not _alive(entry.pid):
                found.append(entry)
        elif started is None or now - started > STALE_AFTER:
            found.append(entry)
    return found


def take_over(es: Elasticsearch, alias: str, entry: Entry, *, now: datetime) -> Entry | None:
    """Make an abandoned entry ours (None when another process took it first).

    Raises:
        IndexingError: the cluster cannot be reached.
    """
    name = Names(alias).journal
    mine = Entry(entry.slot, entry.ids, socket.gethostname(), os.getpid(), iso(now) or "")
    body = {"ids": list(mine.ids), "host": mine.host, "pid": mine.pid, "started_at": mine.started_at}
    with translated(f"writing {name}", url=name):
        try:
            if entry.seq_no >= 0:
                es.index(
                    index=name, id=entry.slot, document=body, if_seq_no=entry.seq_no, if_primary_term=entry.primary_term
                )
            else:  # a server that does not report versions: the entry is read again, a small race remains
                if not get_many(es, name, [entry.slot], fields=[]):
                    return None
                es.index(index=name, id=entry.slot, document=body)
        except ConflictError:
            return None
    return mine


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
