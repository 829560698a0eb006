"""The search client at the edge: connecting, the one translation of its errors, and the primitives every
store module uses (documents by id, bulk writes, paged scans).

Two rules hold for every call the pipeline makes to Elasticsearch:

- **A brief outage is waited out.** The client's own retries come back to back, so a server restarting
  for a second used to fail a whole cycle after its downloads and extraction were done. Connections
  refused or dropped, 429 and 502–504 answers are retried here with exponential backoff and jitter
  (tenacity) for at most ``ES_RETRY_SECONDS``; then the error stands.
- **Errors are translated once.** Every call runs inside :func:`translated`, which turns the client's
  ``ApiError``/``TransportError`` into an :class:`~pipeline.errors.IndexingError` with a one-line
  reason (``"reading news-articles-seen: cannot connect to http://127.0.0.1:9200 (Connection
  refused)"``), the shape the command line prints. Code that expects a particular answer (a 409 on
  ``create``, a 404 on ``get``) catches it inside the block, before the translation.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import Transport, TransportApiResponse
from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch import helpers as es_helpers
from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result, stop_after_delay
from tenacity.wait import wait_random_exponential

from pipeline import log
from pipeline.errors import IndexingError
from pipeline.settings import Settings

_log = log.get(__name__)

# Answers that mean "not now": the cluster is busy or a proxy in front of it lost its upstream.
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
# Backoff between retries: 0.25 s, 0.5 s, 1 s … (each drawn at random below that), at most 8 s.
_FIRST_WAIT, _MAX_WAIT = 0.25, 8.0
# A server that does not answer the first call at all is more likely a wrong ES_URL than a restart: say
# so after this long rather than after the full ES_RETRY_SECONDS.
FIRST_CONTACT_SECONDS = 5.0
_patience: contextvars.ContextVar[float | None] = contextvars.ContextVar("es_patience", default=None)


def _transient(response: TransportApiResponse) -> bool:
    return response.meta.status in TRANSIENT_STATUS


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    if outcome is None:
        return
    reason = describe(outcome.exception()) if outcome.failed else f"HTTP {outcome.result().meta.status}"
    wait = state.next_action.sleep if state.next_action else 0.0
    _log.warning("es.retry", reason=reason, attempt=state.attempt_number, wait_seconds=round(wait, 2))


def _last_answer(state: RetryCallState) -> Any:
    # Out of patience on a 429/5xx answer: hand it back, so the client raises its usual ApiError.
    return state.outcome.result() if state.outcome else None


class PatientTransport(Transport):
    """A transport that waits out brief outages (see the module docstring). ``patience`` is set on the
    subclass that :func:`connect` makes for the configured ``ES_RETRY_SECONDS``."""

    patience: float = 30.0

    def perform_request(self, method: str, target: str, **kwargs: Any) -> TransportApiResponse:
        patience = _patience.get()
        retrying = Retrying(
            stop=stop_after_delay(self.patience if patience is None else min(patience, self.patience)),
            wait=wait_random_exponential(multiplier=_FIRST_WAIT, max=_MAX_WAIT),
            retry=retry_if_exception_type(TransportConnectionError) | retry_if_result(_transient),
            before_sleep=_log_retry,
            retry_error_callback=_last_answer,
            reraise=True,
        )
        response: TransportApiResponse = retrying(super().perform_request, method, target, **kwargs)
        return response


@functools.cache
def _transport_class(patience: float) -> type[PatientTransport]:
    return type("PatientTransport", (PatientTransport,), {"patience": patience})


def client(settings: Settings, url: str) -> Elasticsearch:
    """A client for ``url`` with the configured credentials and the patient transport; nothing is sent."""
    kwargs: dict[str, Any] = {
        "request_timeout": settings.es_timeout,
        # Retries are the transport's (with backoff); the client's own would come back to back.
        "max_retries": 0,
        "retry_on_timeout": False,
        "transport_class": _transport_class(settings.es_retry_seconds),
    }
    if settings.es_api_key:
        kwargs["api_key"] = settings.es_api_key
    elif settings.es_user:
        # Encoded here as UTF-8: the client would encode as ASCII and crash on a password like "pässword".
        token = f"{settings.es_user}:{settings.es_password or ''}".encode()
        kwargs["basic_auth"] = base64.b64encode(token).decode("ascii")
    return Elasticsearch(url, **kwargs)


def connect(settings: Settings, url: str) -> Elasticsearch:
    """A client for ``url`` (see :func:`client`); checks that the cluster answers.

    Raises:
        IndexingError: the cluster does not answer, even after waiting ``ES_RETRY_SECONDS``.
    """
    es = client(settings, url)
    token = _patience.set(FIRST_CONTACT_SECONDS)
    try:
        with translated(f"Elasticsearch at {url} does not answer", url=url):
            es.info()
    finally:
        _patience.reset(token)
    return es


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def describe(err: BaseException | None) -> str:
    """One line saying what went wrong with a call to the search server."""
    if isinstance(err, ApiError):
        info = err.info if isinstance(err.info, dict) else {}
        error = info.get("error")
        if isinstance(error, dict):
            root = (error.get("root_cause") or [error])[0]
            reason = f"{root.get('type', '')}: {root.get('reason', '')}".strip(": ")
        else:
            reason = str(error or err.message)
        return f"HTTP {err.status_code} {reason}"[:300]
    if isinstance(err, TransportError):
        found = _ERRNO.search(str(err))
        cause = found.group(1).strip() if found else type(err).__name__
        if isinstance(err, TransportConnectionError):
            return f"cannot connect ({cause})"
        return f"{type(err).__name__} ({cause})"[:300]
    return str(err)[:300]


@contextmanager
def translated(what: str, *, url: str = "") -> Iterator[None]:
    """The one place the search client's errors become ``IndexingError("<what>: <one-line reason>")``.

    Raises:
        IndexingError: a call inside the block failed.
    """
    try:
        yield
    except (ApiError, TransportError) as err:
        raise IndexingError(f"{what}: {describe(err)}", url=url) from err


def get_many(
    es: Elasticsearch, index: str, ids: Sequence[str], *, fields: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Documents by id that exist, as {id: _source}; in chunks so a big poll stays one request each.

    Raises:
        IndexingError: the index cannot be read.
    """
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 1000):
        chunk = list(ids[start : start + 1000])
        if not chunk:
            continue
        kwargs: dict[str, Any] = {"index": index, "ids": chunk}
        if fields is not None:
            kwargs["source"] = list(fields) if fields else False
        with translated(f"reading {index}", url=index):
            resp = es.mget(**kwargs)
        for doc in resp["docs"]:
            if doc.get("found"):
                out[doc["_id"]] = doc.get("_source") or {}
    return out


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


def bulk_items(
    es: Elasticsearch, actions: Iterable[dict[str, Any]], *, chunk_size: int = 500
) -> Iterator[tuple[str, int, str]]:
    """(document id, HTTP status, reason) of every bulk action, in order; 429s are retried with backoff
    by the helper, whole requests by the transport. A status of 0 means no answer at all.

    Raises:
        IndexingError: the cluster could not be reached at all.
    """
    with translated("bulk write"):
        for _, item in es_helpers.streaming_bulk(
            es,
            actions,
            chunk_size=chunk_size,
            max_retries=6,
            initial_backoff=0.5,
            max_backoff=30,
            raise_on_error=False,
            raise_on_exception=False,
        ):
            op: dict[str, Any] = next(iter(item.values()))
            error = op.get("error")
            reason = error.get("reason", str(error)) if isinstance(error, dict) else str(error or "")
            status = op.get("status")
            yield str(op.get("_id")), status if isinstance(status, int) else 0, reason or str(status)


def bulk_write(es: Elasticsearch, actions: Iterable[dict[str, Any]], *, chunk_size: int = 500) -> BulkResult:
    """Send bulk actions; other per-document failures are reported without losing the rest of the batch.

    Raises:
        IndexingError: the cluster could not be reached at all.
    """
    result = BulkResult()
    for doc_id, status, reason in bulk_items(es, actions, chunk_size=chunk_size):
        if 200 <= status < 300:
            result.ok.append(doc_id)
            continue
        result.failed.append((doc_id, reason))
        if status == 0 or status in TRANSIENT_STATUS or status >= 500:
            result.transient.append(doc_id)
    return result


def scan(
    es: Elasticsearch, index: str, query: dict[str, Any], fields: list[str], *, page: int = 5000
) -> Iterator[dict[str, Any]]:
    """Every hit of ``query`` with ``fields``, page by page (search_after on ``canonical_url``, unique
    per article).

    Raises:
        IndexingError: the index cannot be searched.
    """
    after: list[Any] | None = None
    while True:
        kwargs: dict[str, Any] = {
            "index": index,
            "size": page,
            "query": query,
            "source_includes": fields,
            "sort": [{"canonical_url": {"order": "asc"}}],
        }
        if after is not None:
            kwargs["search_after"] = after
        with translated(f"searching {index}", url=index):
            hits = es.search(**kwargs)["hits"]["hits"]
        yield from hits
        if len(hits) < page:
            return
        after = hits[-1]["sort"]
