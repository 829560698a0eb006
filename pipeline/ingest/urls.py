"""Canonical article URLs: one spelling per article, so its document id never changes.

``canonical_url`` decides the Elasticsearch ``_id`` (``records.doc_id``), so its rules are spelled out
here rather than delegated: a library upgrade that changed them would index every article twice.
courlan's ``normalize_url`` was the starting point, but it cannot be used as is:

- ``strict=True`` keeps only a short allow-list of query keys (``id``, ``p``, ``page``...), so
  ``?nid=5`` or ``article.php?12345`` collapse onto one URL and distinct articles onto one document;
- ``strict=False`` drops keys by a prefix regex (``source``, ``gallery``, ``cid``, ``reference``...);
- it keeps ``%d8%a7`` and ``%D8%A7`` apart, keeps ``/a/../b`` and the ``user:password@`` part, and
  turns punycode hosts into Unicode while leaving the query decoding lossy.

So we keep its ideas (lower-case scheme and host, default port and fragment dropped, trackers
removed) and implement them on the standard library, with RFC 3986 normalisation on top.
"""

from __future__ import annotations

import re
import string
from urllib.parse import SplitResult, unquote_plus, urlsplit

_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# Characters whose percent-escapes are decoded in a path: servers route on the decoded path, so
# "%28" and "(" reach the same article. "%2F" stays encoded (data, not a separator), as do the
# escapes of "?", "#" and "%".
_PATH_DECODE = _UNRESERVED | frozenset("!$&'()*+,;=:@")
_PATH_RAW = _PATH_DECODE | frozenset("/")
# In the query "&", "=" and "+" carry meaning (separator, key/value, space): their escapes stay, and
# a raw "+" stays raw ("a+b" is "a b", "a%2Bb" is "a+b").
_QUERY_DECODE = _UNRESERVED | frozenset("!$'()*,;:@/?")
_QUERY_RAW = _QUERY_DECODE | frozenset("+=")

_HEX = frozenset(string.hexdigits)
_HOST_RE = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")

# Query keys that only say how the reader arrived (campaigns, click ids, referrers). Exact names,
# compared lower-cased; anything else may identify the article (?id=123, ?nid=5) and is kept.
_TRACKING_KEYS = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "msclkid", "yclid", "twclid", "ttclid", "igshid",
        "igsh", "wbraid", "gbraid", "mc_cid", "mc_eid", "ref", "ref_src", "ref_url", "referrer",
        "ocid", "ncid", "cmpid", "cmp", "xtor", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok",
        "__twitter_impression", "s_cid", "smid", "fb_action_ids", "fb_action_types", "fb_source",
    }
)  # fmt: skip
# Families of tracking keys: Google/Urchin, AT Internet (at_medium, at_campaign...), Piwik, Matomo,
# HubSpot ads.
_TRACKING_PREFIXES = ("utm_", "at_", "pk_", "mtm_", "hsa_")


def canonical_url(url: str) -> str:
    """The one spelling of ``url`` that identifies its article.

    Scheme and host lower-cased (IDN hosts in punycode), default port, user info and fragment
    dropped, dot segments resolved, percent-encoding normalised (raw and encoded Arabic give the
    same ASCII result), tracking parameters removed and the remaining ones sorted by key.
    Idempotent: ``canonical_url(canonical_url(u)) == canonical_url(u)``.

    Raises:
        ValueError: not an http(s) URL, no host, a bad port or an unusable host name.
    """
    parts = _split(url)
    host = _host(parts)
    port = parts.port  # raises ValueError itself on a non-numeric or out-of-range port
    scheme = parts.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    # User info is dropped: credentials must never reach the index, and they do not name the article.
    path = _remove_dot_segments(_normalise_escapes(parts.path, _PATH_DECODE, _PATH_RAW)) or "/"
    query = _canonical_query(parts.query)
    return f"{scheme}://{netloc}{path}{'?' + query if query else ''}"


def host_of(url: str) -> str:
    """The lower-cased host of ``url`` without port (punycode for IDN), for per-host limits.

    Raises:
        ValueError: as ``canonical_url``.
    """
    return _host(_split(url))


def _split(url: str) -> SplitResult:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in _SCHEMES:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {url!r}")
    return parts


def _host(parts: SplitResult) -> str:
    host = (parts.hostname or "").rstrip(".")  # "example.com." is the same host as "example.com"
    if ":" in host:  # an IPv6 literal; urlsplit already removed the brackets
        return host.lower()
    if not host.isascii():
        # One form for IDN hosts: punycode, what DNS and HTTP clients see. Feeds write both forms.
        try:
            host = host.lower().encode("idna").decode("ascii")
        except UnicodeError as err:
            raise ValueError(f"bad host name {host!r}: {err}") from None
    host = host.lower()
    if not _HOST_RE.match(host):
        raise ValueError(f"bad host name {host!r}")
    return host


def _canonical_query(query: str) -> str:
    pairs: list[tuple[str, str]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        key, eq, value = piece.partition("=")
        if _is_tracking_key(unquote_plus(key)):
            continue
        key = _normalise_escapes(key, _QUERY_DECODE, _QUERY_RAW)
        pairs.append((key, eq + _normalise_escapes(value, _QUERY_DECODE, _QUERY_RAW)))
    # Stable sort on the key only: the order of repeated keys (?tag=a&tag=b) may matter to the site.
    pairs.sort(key=lambda pair: pair[0])
    return "&".join(key + rest for key, rest in pairs)


def _is_tracking_key(key: str) -> bool:
    lowered = key.strip().lower()
    return lowered in _TRACKING_KEYS or lowered.startswith(_TRACKING_PREFIXES)


def _normalise_escapes(part: str, decode: frozenset[str], raw: frozenset[str]) -> str:
    """Percent-encoding in one spelling: escapes of ``decode`` characters decoded, the others in
    upper case; raw characters outside ``raw`` (non-ASCII, spaces, a stray "%") encoded as UTF-8."""
    out: list[str] = []
    i = 0
    while i < len(part):
        char = part[i]
        code = part[i + 1 : i + 3]
        if char == "%" and len(code) == 2 and all(digit in _HEX for digit in code):
            decoded = chr(int(code, 16))
            out.append(decoded if decoded in decode else "%" + code.upper())
            i += 3
            continue
        if char in raw:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: "/a/./b/../c" is "/a/c" on every server."""
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    if path.startswith("/") and not result.startswith("/"):
        result = "/" + result
    return result
