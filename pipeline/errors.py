"""The pipeline's exception tree.

    PipelineError
    ├── ConfigError            bad configuration: the command cannot start
    ├── FeedError              a feed could not be parsed
    ├── FetchError             a download failed (network, status, timeout)
    │   ├── RefusedURL         a URL or redirect target that is not allowed
    │   ├── TooLarge           over the size cap
    │   └── RateLimited        the server asked to come back later
    ├── ExtractError           no usable body in the page nor in the feed entry
    ├── LanguageRejected       not in the configured languages
    ├── IndexingError          the search server is unreachable or refused
    │   └── NoCoverage         nothing in the index to compare
    ├── LandingError           a landing-area batch cannot be written or read
    ├── KibanaError            Kibana unreachable, or refused the credentials or saved objects
    └── AlertError             an alert could not be delivered
        └── MailServerUnreachable

Every error carries the ``url`` and ``feed_id`` it concerns (either may be empty), so a batch can log
and count it and go on. Library errors are translated at the edge with ``raise ... from err`` (the
search client's in one place: ``store/es.py`` ``translated``).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""

    def __init__(self, message: str, *, url: str = "", feed_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.feed_id = feed_id

    def __str__(self) -> str:
        return self.message


class ConfigError(PipelineError):
    """Bad configuration: the run cannot start."""


class FeedError(PipelineError):
    """A feed could not be parsed (malformed, HTML instead of a feed, no entries at all)."""


class FetchError(PipelineError):
    """A download failed: network, HTTP status, timeout."""

    def __init__(self, message: str, *, url: str = "", feed_id: str = "", status: int | None = None) -> None:
        super().__init__(message, url=url, feed_id=feed_id)
        self.status = status


class RefusedURL(FetchError):
    """The URL (or a redirect target) is not allowed: bad scheme, private address, too many hops."""


class TooLarge(FetchError):
    """The response exceeded the size cap."""


class RateLimited(FetchError):
    """The server asked us to come back later (429/503 with Retry-After)."""

    def __init__(self, message: str, *, url: str = "", feed_id: str = "", retry_after: float = 0.0) -> None:
        super().__init__(message, url=url, feed_id=feed_id, status=429)
        self.retry_after = retry_after


class ExtractError(PipelineError):
    """No usable article body in the page nor in the feed entry."""


class LanguageRejected(PipelineError):
    """The text is not in one of the configured languages."""

    def __init__(self, message: str, *, url: str = "", feed_id: str = "", language: str = "") -> None:
        super().__init__(message, url=url, feed_id=feed_id)
        self.language = language


class IndexingError(PipelineError):
    """The search index is unreachable or refused a write."""


class NoCoverage(IndexingError):
    """Nothing in the index to compare: no such article or cluster, no article tagged with the profile."""


class LandingError(PipelineError):
    """A landing-area batch cannot be written or read."""


class KibanaError(PipelineError):
    """Kibana could not be reached, refused the credentials, or rejected saved objects (``setup``)."""


class AlertError(PipelineError):
    """An alert could not be delivered."""


class MailServerUnreachable(AlertError):
    """The mail server did not answer at all (refused, unreachable, timed out, TLS failed): later
    deliveries in the same run would fail the same way."""


def reason(err: BaseException) -> str:
    """``"<kind>: <message>"`` for summaries and reports, the kind being the error's nearest public class
    (a module's private subclass, such as a retried dropped connection, shows as the FetchError it is)."""
    kind = next(c.__name__ for c in type(err).__mro__ if not c.__name__.startswith("_"))
    return f"{kind}: {err}"
