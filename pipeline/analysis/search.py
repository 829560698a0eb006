"""Search for analysts (``python -m pipeline search``): the query language, outlet names, dates, topics,
one line per story, and highlighted snippets.

The query language is Elasticsearch's ``simple_query_string`` syntax, with the words analysts type for its
operators:

==========================  =====================================================================
``"الضربات الجوية"``          these words, in this order (also ``«…»``); ``"…"~2``: up to 2 words apart
``روسيا OR إيران``, ``|``     either
``-طقس``, ``NOT طقس``         not this word, phrase or group
``(روسيا OR إيران) الأسد``    grouping; words side by side must all be there (``AND`` and ``+`` say so)
``صاروخ*``                   words starting with these letters (on the stems the analyzer stores)
==========================  =====================================================================

``OR`` binds closer than the implicit AND, as in web search engines: ``روسيا OR إيران الأسد`` means
(روسيا or إيران) and الأسد. ``OR``, ``AND`` and ``NOT`` are operators only in capitals.

Words go to ``title``, ``summary`` and ``body`` through the built-in ``arabic`` analyzer (stems, stop
words dropped, hamza forms folded). A quoted phrase goes, normalised by
:func:`pipeline.arabic.normalize.normalize_text`, to ``title_norm``, ``summary_norm`` and ``body_norm``:
the same text normalised the same way when it was indexed and analysed with ``standard`` (every word
kept, nothing stemmed), so a phrase matches exactly these words in this order, whatever their hamza,
ta marbuta, diacritics or digits. The embedded server ignores ``simple_query_string``'s
``quote_field_suffix`` (and makes a stop word in it a clause that matches nothing), so the query is
parsed here: each phrase becomes a ``simple_query_string`` on the normalised fields, each run of
neighbouring words one ``multi_match`` on the analysed ones, joined in a ``bool`` query — the same request
on both servers. Articles indexed before the normalised fields existed lack them, so quoted phrases
cannot find them until ``retag`` fills them in: a search with a phrase counts them (a filter-only count)
so the command can say so. Matching them through the analyzer instead doubled the cost of every phrase
on the embedded server, which evaluates every clause of a query on every document.

Cost on the embedded server: full-text clauses are evaluated document by document (at 20,000 articles a
word query took 6.7 s, a phrase 7.9 s, the multi_match this replaces 10.4 s; README, "Searching from the
command line"); filters, aggregations and ``collapse`` cost little beside them. So ``--cluster`` reads the
shown stories' outlets with one more filter-only search rather than ``collapse``'s ``inner_hits`` (a
search per story).

An ``--outlet`` is a feed id or an outlet's name, whole or in part (normalised, so hamza and ta marbuta
do not matter), resolved against the outlets in the index and the feed list; an unknown one is an
:class:`UnknownOutlet` naming the known ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from elasticsearch import Elasticsearch

from pipeline.arabic.normalize import normalize_text
from pipeline.errors import ConfigError
from pipeline.records import FeedConfig, iso
from pipeline.store.es import translated
from pipeline.store.index import NORMALISED

__all__ = [
    "And",
    "Hit",
    "Not",
    "Or",
    "OutletChoice",
    "Phrase",
    "SearchResult",
    "UnknownOutlet",
    "Word",
    "compile_query",
    "parse_query",
    "resolve_outlet",
    "search",
]

Sort = Literal["best", "newest"]
SORTS: tuple[Sort, ...] = ("best", "newest")
# Boosts: a word in the headline says more about the article than one in the body.
ANALYSED = ("title^3", "summary^1.5", "body")
EXACT = (f"{NORMALISED['title']}^3", f"{NORMALISED['summary']}^1.5", NORMALISED["body"])
SOURCE = ["title", "outlet", "feed_id", "url", "canonical_url", "published_at", "cluster_id", "cluster_size", "topics"]
FRAGMENT = 160  # characters of a snippet


class UnknownOutlet(ConfigError):
    """``--outlet`` names no outlet in the index or the feed list; the message lists the known ones."""


# --- the query language ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Word:
    text: str  # as typed; a trailing * makes it a prefix


@dataclass(frozen=True, slots=True)
class Phrase:
    text: str  # normalised (normalize_text), the form it is matched in
    slop: int = 0
    typed: str = ""  # as the analyst wrote it, for showing back


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


Node = Word | Phrase | Not | And | Or

# A phrase in straight, Arabic or curly quotes (an unclosed one runs to the end), with an optional ~slop.
_TOKEN = re.compile(
    r"""(?P<phrase>"[^"]*"?|«[^»]*»?|“[^”]*”?)(?:~(?P<slop>\d+))?
    |(?P<open>\()|(?P<close>\))|(?P<or>\|)|(?P<and>\+)
    |(?P<not>-)(?=[^\s\-])
    |(?P<word>[^\s()"«»“”|]+)""",
    re.VERBOSE,
)
_KEYWORDS = {"OR": "or", "AND": "and", "NOT": "not"}
_SPECIAL = re.compile(r'([+|\-"*()~\\])')


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, slop) of each token: phrase, word, open, close, or, and, not."""
    found: list[tuple[str, str, int]] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup if match.lastgroup != "slop" else "phrase"
        if match.group("phrase") is not None:
            raw = match.group("phrase")
            body = raw[1:-1] if len(raw) > 1 and raw[-1] in '"»”' else raw[1:]
            found.append(("phrase", body, int(match.group("slop") or 0)))
        elif kind == "word" and match.group("word") in _KEYWORDS:
            found.append((_KEYWORDS[match.group("word")], match.group("word"), 0))
        else:
            found.append((str(kind), match.group(0), 0))
    return found


class _Parser:
    """and := or+ ; or := unary ('OR' unary)* ; unary := 'NOT' unary | atom ; atom := '(' and ')' | phrase | word.
    Lenient like simple_query_string: a stray operator or parenthesis is ignored, never an error."""

    def __init__(self, tokens: list[tuple[str, str, int]]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def conjunction(self, *, nested: bool) -> Node | None:
        items: list[Node] = []
        while (kind := self.peek()) is not None:
            if kind == "close":
                if nested:
                    break
                self.at += 1  # an unmatched ")": ignored
                continue
            if kind in ("and", "or"):
                self.at += 1  # "AND" is the default; an "OR" with nothing before it means nothing
                continue
            item = self.disjunction(nested=nested)
            if item is not None:
                items.append(item)
        return _joined(And, items)

    def disjunction(self, *, nested: bool) -> Node | None:
        items: list[Node] = []
        first = self.unary(nested=nested)
        if first is not None:
            items.append(first)
        while self.peek() == "or":
            self.at += 1
            item = self.unary(nested=nested)
            if item is not None:
                items.append(item)
        return _joined(Or, items)

    def unary(self, *, nested: bool) -> Node | None:
        kind = self.peek()
        if kind == "not":
            self.at += 1
            item = self.unary(nested=nested)
            return Not(item) if item is not None else None
        if kind == "open":
            self.at += 1
            group = self.conjunction(nested=True)
            if self.peek() == "close":
                self.at += 1
            return group
        if kind in ("phrase", "word"):
            _, text, slop = self.tokens[self.at]
            self.at += 1
            if kind == "word":
                return Word(text)
            normalised = " ".join(normalize_text(text).replace('"', " ").split())
            return Phrase(normalised, slop, " ".join(text.split())) if normalised else None
        return None  # an operator where a term should be: the caller skips it


def _joined(kind: type[And] | type[Or], items: list[Node]) -> Node | None:
    if not items:
        return None
    return items[0] if len(items) == 1 else kind(tuple(items))


def parse_query(text: str) -> Node:
    """The query tree of what an analyst typed (syntax in the module docstring).

    Raises:
        ValueError: nothing to search for (empty, only operators, or only exclusions).
    """
    tree = _Parser(_tokens(text)).conjunction(nested=False)
    if tree is None:
        raise ValueError(f"nothing to search for in {text!r}")
    if _only_exclusions(tree):
        raise ValueError(f"{text!r} only excludes: say what to look for too (e.g. سوريا -طقس)")
    return tree


def _only_exclusions(node: Node) -> bool:
    if isinstance(node, Not):
        return True
    if isinstance(node, And):
        return all(_only_exclusions(item) for item in node.items)
    return False


def describe(node: Node, *, top: bool = True) -> str:
    """The tree written back in the query language, every group bracketed but the whole: what the
    command understood (``(روسيا OR إيران) الأسد``)."""
    if isinstance(node, Word):
        return node.text
    if isinstance(node, Phrase):
        return f'"{node.typed or node.text}"' + (f"~{node.slop}" if node.slop else "")
    if isinstance(node, Not):
        return f"-{describe(node.item, top=False)}"
    joiner = " OR " if isinstance(node, Or) else " "
    inner = joiner.join(describe(item, top=False) for item in node.items)
    return inner if top else f"({inner})"


def _escaped(word: str) -> str:
    # Every operator character inside a prefix is literal; the trailing * stays.
    return _SPECIAL.sub(r"\\\1", word[:-1]) + "*"


def _words_clause(words: Sequence[Word], operator: Literal["and", "or"]) -> dict[str, Any]:
    """Neighbouring words as one clause. Plain words go in one ``multi_match`` (``cross_fields``: the words
    may sit in different fields), so a stop word among them is dropped by the analyzer — the embedded
    server's ``simple_query_string`` would instead make it a clause that matches nothing. A prefix
    (``word*``) is a ``simple_query_string`` of its own."""
    plain = [w.text for w in words if not _is_prefix(w.text)]
    clauses: list[dict[str, Any]] = []
    if plain:
        kind = "cross_fields" if operator == "and" else "best_fields"
        clauses.append(
            {"multi_match": {"query": " ".join(plain), "fields": list(ANALYSED), "type": kind, "operator": operator}}
        )
    for word in words:
        if _is_prefix(word.text):
            query = {"query": _escaped(word.text), "fields": list(ANALYSED), "analyze_wildcard": True}
            clauses.append({"simple_query_string": query})
    if len(clauses) == 1:
        return clauses[0]
    if operator == "and":
        return {"bool": {"must": clauses}}
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def _is_prefix(word: str) -> bool:
    return word.endswith("*") and len(word) > 1


def _phrase_clause(phrase: Phrase, fields: Sequence[str]) -> dict[str, Any]:
    # The normalised text on the normalised fields; as typed (the analyzer folds it its own way) on the others.
    text = phrase.text if fields == EXACT else " ".join((phrase.typed or phrase.text).replace('"', " ").split())
    quoted = f'"{text}"' + (f"~{phrase.slop}" if phrase.slop else "")
    return {"simple_query_string": {"query": quoted, "fields": list(fields), "default_operator": "and"}}


def compile_query(node: Node, *, highlight: bool = False) -> dict[str, Any]:
    """The Elasticsearch query for a tree. With ``highlight``, the clauses that say which words to mark:
    exclusions left out, phrases on both the original and the normalised fields (the original text is
    shown when the analyzer finds the phrase in it, the normalised text otherwise)."""
    if isinstance(node, Word):
        return _words_clause([node], "and")
    if isinstance(node, Phrase):
        if highlight:
            return {"bool": {"should": [_phrase_clause(node, EXACT), _phrase_clause(node, ANALYSED)]}}
        return _phrase_clause(node, EXACT)
    if isinstance(node, Not):
        if highlight:
            return {"match_none": {}}
        return {"bool": {"must_not": [compile_query(node.item)]}}
    words = [item for item in node.items if isinstance(item, Word)]
    others = [item for item in node.items if not isinstance(item, Word)]
    if isinstance(node, Or) or highlight:
        clauses = ([_words_clause(words, "or")] if words else []) + [
            compile_query(item, highlight=highlight) for item in others
        ]
        return {"bool": {"should": clauses, "minimum_should_match": 1}}
    must = ([_words_clause(words, "and")] if words else []) + [
        compile_query(item) for item in others if not isinstance(item, Not)
    ]
    must_not = [compile_query(item.item) for item in others if isinstance(item, Not)]
    return {"bool": {"must": must or [{"match_all": {}}], "must_not": must_not}}


def has_phrase(node: Node) -> bool:
    if isinstance(node, Phrase):
        return True
    if isinstance(node, Not):
        return has_phrase(node.item)
    if isinstance(node, And | Or):
        return any(has_phrase(item) for item in node.items)
    return False


# --- filters ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutletChoice:
    """What ``--outlet`` resolved to: outlet names and feed ids to keep (an article of either is kept)."""

    asked: str
    outlets: tuple[str, ...] = ()
    feed_ids: tuple[str, ...] = ()

    def filter(self) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = []
        if self.outlets:
            clauses.append({"terms": {"outlet": list(self.outlets)}})
        if self.feed_ids:
            clauses.append({"terms": {"feed_id": list(self.feed_ids)}})
        return {"bool": {"should": clauses, "minimum_should_match": 1}}

    def describe(self) -> str:
        return "، ".join([*self.outlets, *self.feed_ids])


@dataclass(slots=True)
class KnownOutlet:
    feed_ids: set[str] = field(default_factory=set)
    articles: int = 0  # in the index


def known_outlets(es: Elasticsearch, alias: str, feeds: Sequence[FeedConfig]) -> dict[str, KnownOutlet]:
    """Outlet name → its feed ids and articles, from the index (one aggregation) and the feed list.

    Raises:
        IndexingError: the index cannot be searched.
    """
    aggs = {"outlets": {"terms": {"field": "outlet", "size": 5000}, "aggs": {"feeds": {"terms": {"field": "feed_id"}}}}}
    with translated(f"searching {alias}", url=alias):
        resp = es.search(index=alias, size=0, aggs=aggs)
    known: dict[str, KnownOutlet] = {}
    for bucket in resp["aggregations"]["outlets"]["buckets"]:
        entry = known.setdefault(str(bucket["key"]), KnownOutlet())
        entry.articles += int(bucket["doc_count"])
        entry.feed_ids.update(str(b["key"]) for b in bucket["feeds"]["buckets"])
    for feed in feeds:
        known.setdefault(feed.outlet, KnownOutlet()).feed_ids.add(feed.id)
    return known


def resolve_outlet(asked: str, known: dict[str, KnownOutlet]) -> OutletChoice:
    """``asked`` as a feed id, an outlet's name, or a part of names or ids (hamza, ta marbuta, diacritics
    and Latin case do not matter). A part that fits several outlets keeps them all.

    Raises:
        UnknownOutlet: nothing fits; the message lists the known outlets with their feed ids, those with
            articles in the index first.
    """
    want = asked.strip()
    folded = normalize_text(want)
    feed_ids = {fid for entry in known.values() for fid in entry.feed_ids}
    if want in feed_ids:
        return OutletChoice(asked, feed_ids=(want,))
    named = sorted(name for name in known if normalize_text(name) == folded)
    if named:
        return OutletChoice(asked, outlets=tuple(named))
    partial = sorted(name for name in known if folded and folded in normalize_text(name))
    owned = {fid for name in partial for fid in known[name].feed_ids}
    by_id = sorted(fid for fid in feed_ids - owned if folded and folded in fid.lower())
    if partial or by_id:
        return OutletChoice(asked, outlets=tuple(partial), feed_ids=tuple(by_id))
    raise UnknownOutlet(f"no outlet or feed id matches --outlet {asked!r}. {_listing(known)}")


def _listing(known: dict[str, KnownOutlet], *, most: int = 40) -> str:
    def named(names: list[str]) -> str:
        return "; ".join(f"{n} ({', '.join(sorted(known[n].feed_ids)) or 'no feed'})" for n in names[:most])

    indexed = sorted((n for n in known if known[n].articles), key=lambda n: (-known[n].articles, n))
    listed = sorted(n for n in known if not known[n].articles)
    parts = [f"In the index: {named(indexed)}" if indexed else "Nothing in the index yet"]
    if listed:
        parts.append(f"in the feed list, nothing indexed yet: {named(listed)}")
    hidden = max(0, len(indexed) - most) + max(0, len(listed) - most)
    return ". ".join(parts) + (f" (and {hidden} more)" if hidden else "")


# --- the search --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """One article (or, with ``cluster``, one story shown by its best article)."""

    id: str
    title: str
    title_marked: str  # the title with matched words between <mark> and </mark>
    snippets: tuple[str, ...]  # passages of the body, marked the same way
    outlet: str
    feed_id: str
    url: str
    published_at: str | None
    cluster_id: str
    copies: int  # articles in the story's cluster
    topics: tuple[str, ...]
    score: float | None
    other_outlets: tuple[str, ...] = ()  # with ``cluster``: the other outlets that carried the story


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str
    understood: str  # the query as parsed, fully bracketed
    total: int  # articles that match
    stories: int | None  # with ``cluster``: stories that match
    sort: Sort
    cluster: bool
    outlet: OutletChoice | None
    topic: str | None
    since: str | None
    until: str | None
    unnormalised: int  # with a phrase: articles in range it cannot find (indexed before title_norm existed)
    hits: tuple[Hit, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outlet"] = (
            None
            if self.outlet is None
            else {
                "asked": self.outlet.asked,
                "outlets": list(self.outlet.outlets),
                "feed_ids": list(self.outlet.feed_ids),
            }
        )
        return data


def search(
    es: Elasticsearch,
    alias: str,
    query: str,
    *,
    size: int = 10,
    sort: Sort = "best",
    outlet: OutletChoice | None = None,
    topic: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cluster: bool = False,
) -> SearchResult:
    """Search the articles of ``alias`` (the language in the module docstring). ``until`` is excluded.
    With ``cluster``, one hit per story (``collapse`` on ``cluster_id``): its best-scoring article, or its
    newest with ``sort="newest"``.

    Raises:
        ValueError: nothing to search for in ``query``.
        IndexingError: the index cannot be searched.
    """
    tree = parse_query(query)
    filters: list[dict[str, Any]] = []
    if outlet is not None:
        filters.append(outlet.filter())
    if topic is not None:
        filters.append({"term": {"topics": topic}})
    if since is not None or until is not None:
        bounds = {k: iso(v) for k, v in (("gte", since), ("lt", until)) if v is not None}
        filters.append({"range": {"published_at": bounds}})
    body: dict[str, Any] = {
        "query": {"bool": {"must": [compile_query(tree)], "filter": filters}},
        "size": size,
        "_source": SOURCE,
        "track_total_hits": True,
        "highlight": {
            "highlight_query": compile_query(tree, highlight=True),
            "fields": {
                "title": {"number_of_fragments": 0},
                NORMALISED["title"]: {"number_of_fragments": 0},
                "body": {"fragment_size": FRAGMENT, "number_of_fragments": 2},
                NORMALISED["body"]: {"fragment_size": FRAGMENT, "number_of_fragments": 2},
            },
            # Not « »: Arabic text uses those as quotation marks.
            "pre_tags": ["<mark>"],
            "post_tags": ["</mark>"],
        },
    }
    if sort == "newest":
        body["sort"] = [{"published_at": {"order": "desc"}}, "_score"]
    if cluster:
        body["collapse"] = {"field": "cluster_id"}
        body["aggs"] = {"stories": {"cardinality": {"field": "cluster_id"}}}
    with translated(f"searching {alias}", url=alias):
        resp = dict(es.search(index=alias, **body))
        hits = [_hit(raw) for raw in resp["hits"]["hits"]]
        if cluster and hits:
            hits = _with_copies(es, alias, hits)
        unnormalised = _unnormalised(es, alias, filters) if has_phrase(tree) else 0
    aggs = resp.get("aggregations") or {}
    return SearchResult(
        query=query,
        understood=describe(tree),
        total=int(resp["hits"]["total"]["value"]),
        stories=int(aggs["stories"]["value"]) if cluster else None,
        sort=sort,
        cluster=cluster,
        outlet=outlet,
        topic=topic,
        since=iso(since),
        until=iso(until),
        unnormalised=unnormalised,
        hits=tuple(hits),
    )


def _with_copies(es: Elasticsearch, alias: str, hits: list[Hit]) -> list[Hit]:
    """Each story's copies and their outlets, in one filter-only search for all the stories shown."""
    clusters = [hit.cluster_id for hit in hits]
    aggs = {
        "stories": {
            "terms": {"field": "cluster_id", "size": len(clusters)},
            "aggs": {"outlets": {"terms": {"field": "outlet", "size": 50}}},
        }
    }
    resp = es.search(index=alias, size=0, query={"terms": {"cluster_id": clusters}}, aggs=aggs)
    found = {b["key"]: b for b in resp["aggregations"]["stories"]["buckets"]}
    shown = []
    for hit in hits:
        bucket = found.get(hit.cluster_id)
        if bucket is None:
            shown.append(hit)
            continue
        outlets = tuple(str(o["key"]) for o in bucket["outlets"]["buckets"] if o["key"] != hit.outlet)
        shown.append(replace(hit, copies=int(bucket["doc_count"]), other_outlets=outlets))
    return shown


def _unnormalised(es: Elasticsearch, alias: str, filters: list[dict[str, Any]]) -> int:
    """Articles within the filters that quoted phrases cannot find: indexed before the normalised fields."""
    missing = {"bool": {"must_not": [{"exists": {"field": NORMALISED["title"]}}], "filter": filters}}
    return int(es.count(index=alias, query=missing)["count"])


def _hit(raw: dict[str, Any]) -> Hit:
    src = raw.get("_source") or {}
    marks = raw.get("highlight") or {}
    title = str(src.get("title") or "")
    # The original text when the analyzer found the words in it, else the normalised copy's passages.
    title_marked = (marks.get("title") or marks.get(NORMALISED["title"]) or [title])[0]
    snippets = tuple(marks.get("body") or marks.get(NORMALISED["body"]) or ())
    own = str(src.get("outlet") or "")
    return Hit(
        id=str(raw["_id"]),
        title=title,
        title_marked=str(title_marked),
        snippets=tuple(str(s) for s in snippets),
        outlet=own,
        feed_id=str(src.get("feed_id") or ""),
        url=str(src.get("canonical_url") or src.get("url") or ""),
        published_at=src.get("published_at"),
        cluster_id=str(src.get("cluster_id") or raw["_id"]),
        copies=int(src.get("cluster_size") or 1),
        topics=tuple(src.get("topics") or ()),
        score=raw.get("_score"),
    )
