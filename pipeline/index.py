"""Elasticsearch at the edge: connection, index set-up, state indices, bulk writes, search.

The articles live in a backing index ``<alias>-000001`` behind the alias ``ES_INDEX`` that analysts and
Kibana search; a template from ``schemas/`` fixes their mapping. Feed state and the seen-URL ledger live
in ``<alias>-feeds`` and ``<alias>-seen``, so several workers (Airflow, or two runs) agree.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError
from elasticsearch import helpers as es_helpers

from pipeline import log
from pipeline.errors import IndexingError
from pipeline.records import Article, FeedState
from pipeline.settings import PROJECT_ROOT, Settings

SCHEMAS = PROJECT_ROOT / "schemas"
_log = log.get(__name__)


def connect(settings: Settings, url: str) -> Elasticsearch:
    """A client for ``url`` with the configured credentials; checks the cluster answers.

    Raises:
        IndexingError: the cluster does not answer.
    """
    kwargs: dict[str, Any] = {"request_timeout": settings.es_timeout, "retry_on_timeout": True, "max_retries": 3}
    if settings.es_api_key:
        kwargs["api_key"] = settings.es_api_key
    elif settings.es_user:
        # Encoded here as UTF-8: the client would encode as ASCII and crash on a password like "pässword".
        token = f"{settings.es_user}:{settings.es_password or ''}".encode()
        kwargs["basic_auth"] = base64.b64encode(token).decode("ascii")
    es = Elasticsearch(url, **kwargs)
    try:
        es.info()
    except (ApiError, TransportError) as err:
        raise IndexingError(f"Elasticsearch at {url} does not answer: {err}", url=url) from err
    return es


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


def load_template(alias: str, path: Path = SCHEMAS / "index-template.json") -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    raw.pop("_comment", None)
    raw["index_patterns"] = [p.replace("{alias}", alias) for p in raw["index_patterns"]]
    return raw


def ensure_indices(es: Elasticsearch, alias: str) -> None:
    """Install the template, the backing index behind the alias, and the state indices. Idempotent.

    Raises:
        IndexingError: the cluster refused.
    """
    names = Names(alias)
    template = load_template(alias)
    try:
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
        for key in ("feeds", "seen", "alerts", "lsh"):
            name = getattr(names, key)
            if not es.indices.exists(index=name):
                _create(es, name, mappings=state[key]["mappings"])
                upgraded |= key == "lsh" and existed
    except (ApiError, TransportError) as err:
        raise IndexingError(f"could not set up indices for {alias}: {err}", url=alias) from err
    if upgraded:
        # An index made before the near-duplicate bucket store existed: file its articles once, so that
        # they are found as earlier copies and exact duplicates (one pass over the index).
        from pipeline import lsh

        filed = lsh.backfill(es, alias)
        _log.info("index.backfilled", alias=alias, articles=filed)


def _create(es: Elasticsearch, name: str, **body: Any) -> None:
    try:
        es.indices.create(index=name, **body)
    except ApiError as err:
        # Another worker created it between our check and our create: that's fine.
        if "resource_already_exists" not in str(err):
            raise


def refresh(es: Elasticsearch, alias: str) -> None:
    names = Names(alias)
    es.indices.refresh(index=[alias, names.feeds, names.seen])


def get_many(
    es: Elasticsearch, index: str, ids: Sequence[str], *, fields: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Documents by id that exist, as {id: _source}; in chunks so a big poll stays one request each."""
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 1000):
        chunk = list(ids[start : start + 1000])
        if not chunk:
            continue
        kwargs: dict[str, Any] = {"index": index, "ids": chunk}
        if fields is not None:
            kwargs["source"] = list(fields) if fields else False
        resp = es.mget(**kwargs)
        for doc in resp["docs"]:
            if doc.get("found"):
                out[doc["_id"]] = doc.get("_source") or {}
    return out


def load_feed_states(es: Elasticsearch, alias: str, feed_ids: Sequence[str]) -> dict[str, FeedState]:
    found = get_many(es, Names(alias).feeds, feed_ids)
    known = {f.name for f in fields(FeedState)}
    return {fid: FeedState(**{k: v for k, v in src.items() if k in known}) for fid, src in found.items()}


@dataclass(slots=True)
class BulkResult:
    ok: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    # Of the failed: those the cluster could not take for now (unreachable, 5xx, 429 after every retry),
    # as opposed to documents it refused (mapping errors). A retry later may succeed.
    transient: list[str] = field(default_factory=list)

    def raise_if_transient(self, what: str) -> None:
        """Raise when some documents failed only because the cluster could not take them now.

        Raises:
            IndexingError: naming ``what`` and the first reason.
        """
        if self.transient:
            reason = dict(self.failed).get(self.transient[0], "")
            raise IndexingError(f"{what}: {len(self.transient)} documents not written ({reason}); retry later")


def bulk_write(es: Elasticsearch, actions: Iterable[dict[str, Any]], *, chunk_size: int = 500) -> BulkResult:
    """Send bulk actions; 429s are retried with backoff, other per-document failures are reported
    without losing the rest of the batch.

    Raises:
        IndexingError: the cluster could not be reached at all.
    """
    result = BulkResult()
    try:
        for ok, item in es_helpers.streaming_bulk(
            es,
            actions,
            chunk_size=chunk_size,
            max_retries=6,
            initial_backoff=0.5,
            max_backoff=30,
            raise_on_error=False,
            raise_on_exception=False,
        ):
            op = next(iter(item.values()))
            doc_id = str(op.get("_id"))
            if ok:
                result.ok.append(doc_id)
            else:
                error = op.get("error")
                reason = error.get("reason", str(error)) if isinstance(error, dict) else str(error or op.get("status"))
                result.failed.append((doc_id, reason))
                status = op.get("status")
                if not isinstance(status, int) or status == 429 or status >= 500:
                    result.transient.append(doc_id)
    except (ApiError, TransportError) as err:
        raise IndexingError(f"bulk write failed: {err}") from err
    return result


def article_actions(alias: str, articles: Iterable[Article]) -> Iterator[dict[str, Any]]:
    for article in articles:
        # "index" with a deterministic _id: a re-run overwrites, never duplicates.
        yield {"_op_type": "index", "_index": alias, "_id": article.id, "_source": article.to_doc()}


def feed_state_actions(alias: str, states: Iterable[FeedState]) -> Iterator[dict[str, Any]]:
    index = Names(alias).feeds
    for state in states:
        yield {"_op_type": "index", "_index": index, "_id": state.feed_id, "_source": state.to_doc()}


def search_articles(
    es: Elasticsearch,
    alias: str,
    query: str,
    *,
    size: int = 10,
    sort: str = "best",
    outlet: str | None = None,
) -> dict[str, Any]:
    """Arabic full-text search over title, summary and body, with highlighted fragments."""
    must: dict[str, Any] = {
        "multi_match": {
            "query": query,
            "fields": ["title^3", "summary^1.5", "body", "title.exact^2", "body.exact^0.5"],
            "type": "best_fields",
        }
    }
    filters: list[dict[str, Any]] = [{"term": {"outlet": outlet}}] if outlet else []
    body: dict[str, Any] = {
        "query": {"bool": {"must": [must], "filter": filters}},
        "size": size,
        "_source": ["title", "outlet", "url", "canonical_url", "published_at", "cluster_id", "topics", "language"],
        "highlight": {
            "fields": {"title": {"number_of_fragments": 0}, "body": {"fragment_size": 160, "number_of_fragments": 2}},
            # Not « »: Arabic text uses those as quotation marks.
            "pre_tags": ["<mark>"],
            "post_tags": ["</mark>"],
        },
    }
    if sort == "newest":
        body["sort"] = [{"published_at": {"order": "desc"}}, "_score"]
    try:
        return dict(es.search(index=alias, **body))
    except (ApiError, TransportError) as err:
        raise IndexingError(f"search failed: {err}", url=alias) from err


def _scan(
    es: Elasticsearch, alias: str, query: dict[str, Any], fields: list[str], *, page: int = 5000
) -> Iterator[dict[str, Any]]:
    """Every hit of ``query`` with ``fields``, page by page (search_after on a unique key)."""
    after: list[Any] | None = None
    while True:
        kwargs: dict[str, Any] = {
            "index": alias,
            "size": page,
            "query": query,
            "source_includes": fields,
            "sort": [{"canonical_url": {"order": "asc"}}],
        }
        if after is not None:
            kwargs["search_after"] = after
        try:
            hits = es.search(**kwargs)["hits"]["hits"]
        except (ApiError, TransportError) as err:
            raise IndexingError(f"search in {alias} failed: {err}", url=alias) from err
        yield from hits
        if len(hits) < page:
            return
        after = hits[-1]["sort"]


def get_article(es: Elasticsearch, alias: str, article_id: str, fields: list[str]) -> dict[str, Any]:
    """One article's ``fields``.

    Raises:
        IndexingError: no such article, or the index cannot be read.
    """
    try:
        return dict(es.get(index=alias, id=article_id, source_includes=fields)["_source"])
    except NotFoundError:
        raise IndexingError(f"no article with id {article_id} in {alias}", url=alias) from None
    except (ApiError, TransportError) as err:
        raise IndexingError(f"could not read {alias}: {err}", url=alias) from err


def scan_articles(es: Elasticsearch, alias: str, fields: list[str]) -> Iterator[dict[str, Any]]:
    """Every article of ``alias`` with ``fields``, page by page."""
    return _scan(es, alias, {"match_all": {}}, fields, page=1000)
