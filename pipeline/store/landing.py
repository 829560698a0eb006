"""The landing area: batches of extracted articles between the polling and the processing DAGs.

A folder by default (``DATA_DIR/landing``), or any fsspec URL every worker can reach (``s3://bucket/news``
with s3fs installed, ``gs://…``, ``memory://`` in tests). Layout::

    batches/2026-11-25/<ref>.json.gz   one batch: its articles and what the poll knew about them
    done/2026-11-25/<ref>.json         written once the batch is indexed: the processing counts

A batch appears whole or not at all: a local file is written beside its final name and renamed; an
object store's single PUT is atomic already. A batch's name is fixed by the task that writes it (DAG run
and map index), so a retried polling task replaces its batch instead of adding a second one. Processing
is idempotent too, so a batch processed twice (a replay, two processing runs at once) indexes nothing
twice. Processed batches are removed after the retention; unprocessed ones are never removed.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fsspec  # type: ignore[import-untyped]
from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

from pipeline import log
from pipeline.errors import ConfigError, LandingError
from pipeline.records import Article, iso

_log = log.get(__name__)
FORMAT = 1
_REF = re.compile(r"^\d{4}-\d{2}-\d{2}/[A-Za-z0-9._-]{1,200}$")


@dataclass(frozen=True, slots=True)
class Batch:
    ref: str  # "2026-11-25/<name>": where it lives under batches/ and done/
    articles: list[Article]
    rank: dict[str, int]
    updated: dict[str, str | None]
    attempts: dict[str, int]
    meta: dict[str, Any]  # created_at, feeds, the poll's counts


def batch_ref(name: str, *, now: datetime | None = None) -> str:
    """A batch reference for ``name`` (made safe for any file system or object store), dated ``now``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:200] or uuid.uuid4().hex
    return f"{(now or datetime.now(UTC)):%Y-%m-%d}/{safe}"


class Landing:
    """One landing area. Thread- and process-safe through its file/object semantics only."""

    def __init__(self, url: str) -> None:
        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as err:
            raise ConfigError(f"LANDING_URL {url!r} cannot be used: {err}") from err
        self.url = url
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)

    def _path(self, kind: str, ref: str, suffix: str) -> str:
        if not _REF.match(ref):
            raise LandingError(f"not a batch reference: {ref!r} (expected YYYY-MM-DD/name)")
        return f"{self.root}/{kind}/{ref}{suffix}"

    def _put(self, path: str, data: bytes) -> None:
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    def write(
        self,
        ref: str,
        articles: list[Article],
        *,
        rank: dict[str, int],
        updated: dict[str, str | None],
        attempts: dict[str, int],
        meta: dict[str, Any],
    ) -> str:
        """Write a batch atomically (replacing one of the same ``ref``) and return its reference.

        Raises:
            LandingError: the landing area refused the write.
        """
        body = {
            "format": FORMAT,
            "ref": ref,
            "created_at": iso(datetime.now(UTC)),
            "meta": meta,
            "articles": [
                {
                    "doc": a.to_doc(),
                    "rank": rank.get(a.id),
                    "updated": updated.get(a.id),
                    "attempts": attempts.get(a.id, 0),
                }
                for a in articles
            ],
        }
        data = gzip.compress(json.dumps(body, ensure_ascii=False).encode("utf-8"), compresslevel=5)
        path = self._path("batches", ref, ".json.gz")
        try:
            self._put(path, data)
        except OSError as err:
            raise LandingError(f"could not write batch {ref} to {self.url}: {err}", url=path) from err
        _log.info("landing.written", ref=ref, articles=len(articles), bytes=len(data), url=self.url)
        return ref

    def read(self, ref: str) -> Batch:
        """Read a batch back.

        Raises:
            LandingError: it is missing or not a batch this version can read.
        """
        path = self._path("batches", ref, ".json.gz")
        try:
            raw = json.loads(gzip.decompress(self.fs.cat_file(path)).decode("utf-8"))
        except FileNotFoundError:
            raise LandingError(f"no batch {ref} in {self.url}", url=path) from None
        except (OSError, ValueError, EOFError) as err:
            raise LandingError(f"batch {ref} in {self.url} is unreadable: {err}", url=path) from err
        if raw.get("format") != FORMAT:
            raise LandingError(f"batch {ref} has format {raw.get('format')!r}, expected {FORMAT}", url=path)
        articles, rank, updated, attempts = [], {}, {}, {}
        for entry in raw["articles"]:
            a = Article.from_doc(entry["doc"])
            articles.append(a)
            if entry.get("rank") is not None:
                rank[a.id] = int(entry["rank"])
            updated[a.id] = entry.get("updated")
            attempts[a.id] = int(entry.get("attempts") or 0)
        return Batch(ref, articles, rank, updated, attempts, dict(raw.get("meta") or {}))

    def size(self, ref: str) -> int:
        """The batch's size in bytes (0 when it is missing)."""
        try:
            return int(self.fs.size(self._path("batches", ref, ".json.gz")))
        except FileNotFoundError:
            return 0

    def mark_done(self, ref: str, counts: dict[str, Any]) -> None:
        """Record that ``ref`` is indexed (with the processing counts)."""
        body = {"ref": ref, "processed_at": iso(datetime.now(UTC)), **counts}
        self._put(self._path("done", ref, ".json"), json.dumps(body, ensure_ascii=False).encode("utf-8"))

    def _refs(self, kind: str, suffix: str) -> list[str]:
        try:
            found = self.fs.glob(f"{self.root}/{kind}/*/*{suffix}")
        except FileNotFoundError:
            return []
        refs = []
        for path in found:
            day, name = str(path).rstrip("/").split("/")[-2:]
            refs.append(f"{day}/{name[: -len(suffix)]}")
        return sorted(refs)

    def batches(self) -> list[str]:
        return self._refs("batches", ".json.gz")

    def done(self) -> set[str]:
        """Batches marked processed."""
        return set(self._refs("done", ".json"))

    def pending(self) -> list[str]:
        """Batches written and not yet processed, oldest first."""
        done = self.done()
        return [ref for ref in self.batches() if ref not in done]

    def prune(self, retention_days: float, *, now: datetime | None = None) -> int:
        """Remove processed batches (and their markers) older than ``retention_days``; return how many.
        Unprocessed batches are kept whatever their age, and logged."""
        cutoff = ((now or datetime.now(UTC)) - timedelta(days=retention_days)).strftime("%Y-%m-%d")
        done = self.done()
        removed = 0
        for ref in self.batches():
            if ref.split("/")[0] >= cutoff:
                continue
            if ref not in done:
                _log.warning("landing.unprocessed", ref=ref, url=self.url)
                continue
            for path in (self._path("batches", ref, ".json.gz"), self._path("done", ref, ".json")):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path)
            removed += 1
        return removed
