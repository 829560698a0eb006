"""Elasticsearch at the edge: connection, index set-up, state indices, bulk writes.

The articles live in a backing index ``<alias>-000001`` behind the alias ``ES_INDEX`` that analysts and
Kibana search; a template from ``schemas/`` fixes their mapping. Feed state and the seen-URL ledger live
in ``<alias>-feeds`` and ``<alias>-seen``, so several workers (Airflow, or two runs) agree. What analysts
type is turned into queries in :mod:`pipeline.analysis.search`, not here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError

from pipeline import log
from pipeline.arabic.normalize import normalize_text
from pipeline.errors import IndexingError
from pipeline.records import Article, FeedState
from pipeline.settings import PROJECT_ROOT
from pipeline.store.es import get_many, scan, translated

SCHEMAS = PROJECT_ROOT / "schemas"
_log = log.get(__name__)


@dataclass(frozen=True, slots=True)
class Names:
    alias: str

    @property
    def backing(self) -> str:
        return f"{self.alias}-000001"

    @property
    def template(self) -> str:
        return f"{self.alias}-template"

    @property
    def feeds(self) -> str:
        return f"{self.alias}-feeds"

    @property
    def seen(self) -> str:
        return f"{self.alias}-seen"

    @property
    def alerts(self) -> str:
        return f"{self.alias}-alerts"

    @property
    def lsh(self) -> str:
        return f"{self.alias}-lsh"

    @property
    def journal(self) -> str:
        return f"{self.alias}-journal"

    @property
    def incidents(self) -> str:
        return f"{self.alias}-incidents"


def load_template(alias: str, path: Path = SCHEMAS / "index-template.json") -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    raw.pop("_comment", None)
    raw["index_patterns"] = [p.replace("{alias}", alias) for p in raw["index_patterns"]]
    return raw


def ensure_indices(es: Elasticsearch, alias: str) -> bool:
    """Install the template, the backing index behind the alias, and the state indices. Idempotent.
    True when the alias held articles from before the near-duplicate bucket store existed: they must be
    filed in it once (``clustering.prepare_index`` does).

    Raises:
        IndexingError: the cluster refused.
    """
    names = Names(alias)
    template = load_template(alias)
    with translated(f"could not set up indices for {alias}", url=alias):
        es.indices.put_index_template(name=names.template, **template)
        existed = bool(es.indices.exists_alias(name=alias))
        if not existed:
            if es.indices.exists(index=alias):
                raise IndexingError(
                    f"{alias!r} is an index, not an alias: rename it or choose another ES_INDEX", url=alias
                )
            _create(es, names.backing, aliases={alias: {"is_write_index": True}})
        else:
            # New fields in the template reach the live index too (additive mapping changes only).
            es.indices.put_mapping(index=alias, **template["template"]["mappings"])
        state = json.loads((SCHEMAS / "state-indices.json").read_text(encoding="utf-8"))
        upgraded = False
        for key in ("feeds", "seen", "alerts", "lsh", "journal", "incidents"):
            name = getattr(names, key)
            if not es.indices.exists(index=name):
                _create(es, name, mappings=state[key]["mappings"])
                upgraded |= key == "lsh" and existed
            else:
                # Fields added since the index was made (the feeds' health) reach it too: additive only.
                es.indices.put_mapping(index=name, properties=state[key]["mappings"]["properties"])
    return upgraded


def _create(es: Elasticsearch, name: str, **body: Any) -> None:
    try:
        es.indices.create(index=name, **body)
    except ApiError as err:
        # Another worker created it between our check and our create: that's fine.
        if "resource_already_exists" not in str(err):
            raise


def refresh(es: Elasticsearch, alias: str) -> None:
    """Make the articles, feed states and seen ledger written so far visible to searches.

    Raises:
        IndexingError: the cluster cannot be reached.
    """
    names = Names(alias)
    with translated(f"refreshing {alias}", url=alias):
        es.indices.refresh(index=[alias, names.feeds, names.seen])


def load_feed_states(es: Elasticsearch, alias: str, feed_ids: Sequence[str]) -> dict[str, FeedState]:
    found = get_many(es, Names(alias).feeds, feed_ids)
    known = {f.name for f in fields(FeedState)}
    return {fid: FeedState(**{k: v for k, v in src.items() if k in known}) for fid, src in found.items()}


# The exact, normalised copies of the text fields (schemas/index-template.json): quoted phrases are
# matched on them word for word, with spelling variants folded the way the whole pipeline folds them.
NORMALISED = {"title": "title_norm", "summary": "summary_norm", "body": "body_norm"}


def normalised_fields(*, title: str, summary: str, body: str) -> dict[str, str]:
    """``title_norm``, ``summary_norm``, ``body_norm``: the text through ``normalize_text``. Computed here,
    when the document is written, so the landing area and the extraction workers never carry them."""
    return {
        "title_norm": normalize_text(title),
        "summary_norm": normalize_text(summary),
        "body_norm": normalize_text(body),
    }


def article_actions(alias: str, articles: Iterable[Article]) -> Iterator[dict[str, Any]]:
    for article in articles:
        doc = article.to_doc()
        doc.update(normalised_fields(title=article.title, summary=article.summary, body=article.body))
        # "index" with a deterministic _id: a re-run overwrites, never duplicates.
        yield {"_op_type": "index", "_index": alias, "_id": article.id, "_source": doc}


def feed_state_actions(alias: str, states: Iterable[FeedState]) -> Iterator[dict[str, Any]]:
    index = Names(alias).feeds
    for state in states:
        yield {"_op_type": "index", "_index": index, "_id": state.feed_id, "_source": state.to_doc()}


def get_article(es: Elasticsearch, alias: str, article_id: str, fields: list[str]) -> dict[str, Any]:
    """One article's ``fields``.

    Raises:
        IndexingError: no such article, or the index cannot be read.
    """
    with translated(f"reading {alias}", url=alias):
        try:
            return dict(es.get(index=alias, id=article_id, source_includes=fields)["_source"])
        except NotFoundError:
            raise IndexingError(f"no article with id {article_id} in {alias}", url=alias) from None


def scan_articles(es: Elasticsearch, alias: str, fields: list[str]) -> Iterator[dict[str, Any]]:
    """Every article of ``alias`` with ``fields``, page by page."""
    return scan(es, alias, {"match_all": {}}, fields, page=1000)
