"""Kibana's saved objects (schemas/kibana/*.ndjson): importable NDJSON, every field they use present in
the index mappings, and the dashboard, saved searches and data views analysts asked for."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

import yaml
from test_compose import env_example

from pipeline.alerts.decisions import Reason
from pipeline.ops import setup
from pipeline.settings import PROJECT_ROOT

KIBANA_DIR = PROJECT_ROOT / "schemas" / "kibana"


# --- Kibana's saved objects -------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    type: str
    nested: str | None  # the nested path it lives under, if any


def flatten(properties: dict[str, Any], prefix: str = "", nested: str | None = None) -> dict[str, Field]:
    out: dict[str, Field] = {}
    for name, spec in properties.items():
        path = prefix + name
        kind = spec.get("type", "object")
        if kind == "nested":
            out[path] = Field(kind, nested)
            out.update(flatten(spec["properties"], path + ".", path))
            continue
        if "properties" in spec:
            out.update(flatten(spec["properties"], path + ".", nested))
            continue
        out[path] = Field(kind, nested)
        for sub, sub_spec in spec.get("fields", {}).items():
            out[f"{path}.{sub}"] = Field(sub_spec["type"], nested)
    return out


def article_fields() -> dict[str, Field]:
    template = json.loads((PROJECT_ROOT / "schemas" / "index-template.json").read_text(encoding="utf-8"))
    return flatten(template["template"]["mappings"]["properties"])


def state_fields(key: str) -> dict[str, Field]:
    state = json.loads((PROJECT_ROOT / "schemas" / "state-indices.json").read_text(encoding="utf-8"))
    return flatten(state[key]["mappings"]["properties"])


def saved_objects() -> list[dict[str, Any]]:
    out = []
    for path in sorted(KIBANA_DIR.glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            out.append(json.loads(line))
    return out


def by_id(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in objects}


def data_view_fields(view: dict[str, Any]) -> dict[str, Field]:
    """The fields a data view offers: the mapping of the index it names, plus its runtime fields."""
    title = view["attributes"]["title"]
    state = {"news-articles-alerts": "alerts", "news-articles-feeds": "feeds"}
    assert title in {"news-articles", *state}, title
    fields = state_fields(state[title]) if title in state else article_fields()
    for name, spec in json.loads(view["attributes"]["runtimeFieldMap"]).items():
        fields[name] = Field(spec["type"], None)
    return fields


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_KQL_FIELD = re.compile(r"(?:^|[\s(])(?:not\s+)?([A-Za-z_][\w.]*)\s*(?::|<=|>=|<|>)")


def kql_fields(query: str) -> set[str]:
    return set(_KQL_FIELD.findall(_QUOTED.sub('""', query)))


def source_fields(node: Any) -> Iterator[str]:
    """Every ``sourceField``/``sortField`` in a Lens column, its rank-by metric included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"sourceField", "sortField"} and value != "___records___":
                yield value
            else:
                yield from source_fields(value)
    elif isinstance(node, list):
        for item in node:
            yield from source_fields(item)


def fields_used(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(data view id, field, how it is used) for every field an object names."""
    attrs = obj["attributes"]
    refs = {r["name"]: r["id"] for r in obj["references"]}
    used: list[tuple[str, str, str]] = []
    if obj["type"] == "index-pattern":
        used.append((obj["id"], attrs["timeFieldName"], "time"))
        used += [(obj["id"], f, "format") for f in json.loads(attrs.get("fieldFormatMap") or "{}")]
        used += [(obj["id"], f["value"], "source filter") for f in json.loads(attrs.get("sourceFilters") or "[]")]
        used += [(obj["id"], f, "label") for f in json.loads(attrs.get("fieldAttrs") or "{}")]
        for runtime in json.loads(attrs["runtimeFieldMap"]).values():
            script = runtime["script"]["source"]
            for path in re.findall(r"params\._source\.(\w+)", script):
                used.append((obj["id"], path, "runtime script"))
            for inner in re.findall(r"\bm\.(\w+)", script):  # the loop variable over topic_matches
                used.append((obj["id"], f"topic_matches.{inner}", "runtime script"))
    elif obj["type"] == "search":
        view = refs["kibanaSavedObjectMeta.searchSourceJSON.index"]
        source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
        used += [(view, c, "column") for c in attrs["columns"]]
        used += [(view, s[0], "sort") for s in attrs["sort"]]
        used += [(view, f, "query") for f in kql_fields(source["query"]["query"])]
        used += [(view, f["meta"]["key"], "filter") for f in source["filter"]]
    elif obj["type"] == "lens":
        state = attrs["state"]
        for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
            view = refs[f"indexpattern-datasource-layer-{layer_id}"]
            for column in layer["columns"].values():
                kind = column["operationType"]
                used += [(view, f, f"lens {kind}") for f in source_fields(column)]
            used += [(view, f, "query") for f in kql_fields(state["query"]["query"])]
    return used


def test_saved_objects_are_importable_ndjson() -> None:
    lines = [line for p in sorted(KIBANA_DIR.glob("*.ndjson")) for line in p.read_text("utf-8").splitlines()]
    assert all(line.strip() for line in lines)
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) and {"type", "id", "attributes", "references"} <= o.keys() for o in objects)
    keys = [(o["type"], o["id"]) for o in objects]
    assert len(keys) == len(set(keys))
    assert {o["type"] for o in objects} == {"index-pattern", "search", "lens", "dashboard"}
    # Kibana refuses an object from a newer Kibana than itself: stay at or below the stack's version.
    stack = tuple(int(x) for x in env_example()["STACK_VERSION"].split("."))
    for o in objects:
        assert tuple(int(x) for x in o["typeMigrationVersion"].split(".")) <= stack, o["id"]
        assert o["coreMigrationVersion"] == "8.8.0"
    # The JSON-in-JSON attributes parse; every reference names an object that is imported with it.
    index_of = {(o["type"], o["id"]) for o in objects}
    for o in objects:
        attrs = o["attributes"]
        for key in ("runtimeFieldMap", "fieldFormatMap", "sourceFilters", "panelsJSON", "optionsJSON"):
            if key in attrs:
                json.loads(attrs[key])
        if "kibanaSavedObjectMeta" in attrs:
            json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in index_of, f"{o['id']} references missing {ref}"
    # Each Lens layer has its data view reference; each dashboard panel its saved object.
    for o in objects:
        if o["type"] == "lens":
            names = {r["name"] for r in o["references"]}
            for layer in o["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]:
                assert f"indexpattern-datasource-layer-{layer}" in names
        if o["type"] == "dashboard":
            refs = {r["name"]: r for r in o["references"]}
            for panel in json.loads(o["attributes"]["panelsJSON"]):
                ref = refs[f"{panel['panelIndex']}:{panel['panelRefName']}"]
                assert ref["type"] == panel["type"]


def test_every_field_the_saved_objects_use_exists_in_the_index_mappings() -> None:
    objects = saved_objects()
    views = {o["id"]: data_view_fields(o) for o in objects if o["type"] == "index-pattern"}
    checked = 0
    for obj in objects:
        for view, name, how in fields_used(obj):
            fields = views[view]
            assert name in fields, f"{obj['type']} {obj['id']} uses {name!r} ({how}), absent from {view}"
            kind = fields[name].type
            if how == "time" or how == "lens date_histogram":
                assert kind == "date", (obj["id"], name)
            if how in {"lens terms", "lens unique_count", "lens last_value", "sort"}:
                assert kind in {"keyword", "date", "integer", "float"}, f"{obj['id']}: {name} ({kind}) not aggregatable"
            if how.startswith("lens") or how == "sort":
                # Lens and Discover's sort cannot reach inside nested documents.
                assert fields[name].nested is None, f"{obj['id']}: {name} is inside a nested field"
            checked += 1
    assert checked >= 40
    # The runtime field reads the nested matches: only real fields, and the field is a keyword.
    articles = views["news-articles"]
    assert articles["matched_terms"].type == "keyword"
    assert articles["topic_matches.terms"].nested == "topic_matches"


def test_the_dashboard_shows_what_analysts_asked_for() -> None:
    objects = by_id(saved_objects())
    dashboard = objects["news-dashboard-coverage"]
    panels = [objects[r["id"]] for r in dashboard["references"]]
    titles = {p["attributes"]["title"] for p in panels}
    assert {
        "Stories over time by outlet",
        "Top matched terms",
        "Largest clusters (most widely carried stories)",
        "Outlets per cluster",
        "Alert volume",
        "Newest Arabic stories",
        "Feed health",
    } == titles
    fields = {p["attributes"]["title"]: {f for _, f, _ in fields_used(p)} for p in panels}
    assert {"published_at", "outlet"} <= fields["Stories over time by outlet"]
    assert fields["Top matched terms"] == {"matched_terms"}
    assert {"cluster_id", "outlet", "title.raw"} <= fields["Largest clusters (most widely carried stories)"]
    assert {"cluster_id", "outlet"} <= fields["Outlets per cluster"]
    assert {"sent_at", "profile"} <= fields["Alert volume"]
    alert = objects["news-lens-alert-volume"]
    assert {r["id"] for r in alert["references"]} == {"news-articles-alerts"}
    # Operators: every feed's state, failures, last success, newest item and schedule, from <alias>-feeds.
    assert {"feed_id", "state", "consecutive_failures", "last_success", "newest_item_at", "next_poll_at"} <= fields[
        "Feed health"
    ]
    health = objects["news-lens-feed-health"]
    assert {r["id"] for r in health["references"]} == {"news-articles-feeds"}
    grid = [json.loads(dashboard["attributes"]["panelsJSON"])[i]["gridData"] for i in range(len(panels))]
    assert all(g["x"] + g["w"] <= 48 for g in grid)


def test_saved_searches_cover_the_seed_topic_the_newest_stories_and_one_story() -> None:
    objects = by_id(saved_objects())

    def query(oid: str) -> str:
        source = json.loads(objects[oid]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        return str(source["query"]["query"])

    profile = yaml.safe_load((PROJECT_ROOT / "seeds" / "profiles" / "iran-russia-assad.yaml").read_text("utf-8"))
    assert query("news-search-seed-topic") == f'topics : "{profile["id"]}"'
    assert "not duplicate_of : *" in query("news-search-newest-stories")
    assert objects["news-search-newest-stories"]["attributes"]["sort"] == [["published_at", "desc"]]
    story = objects["news-search-story-cluster"]["attributes"]
    # Copies of a story together, first publisher first.
    assert story["sort"][-2:] == [["cluster_id", "asc"], ["published_at", "asc"]]
    assert "cluster_id" in story["columns"] and "outlet" in story["columns"]


def test_alert_decisions_are_a_saved_search_on_the_ledger_by_decision_time() -> None:
    objects = by_id(saved_objects())
    search = objects["news-search-alert-decisions"]["attributes"]
    assert search["title"] == "Alert decisions" and search["sort"] == [["decided_at", "desc"]]
    assert {"profile", "reason", "score", "threshold", "message_id"} <= set(search["columns"])
    source = json.loads(search["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert source["query"]["query"] == 'kind : "decision"'
    # The ledger's own data view keys time on sent_at, which a decision has no reason to carry: this one
    # reads the same index by decision time.
    view = objects["news-articles-alert-decisions"]["attributes"]
    assert (
        view["title"] == objects["news-articles-alerts"]["attributes"]["title"]
        and view["timeFieldName"] == "decided_at"
    )
    assert all(reason in search["description"] for reason in get_args(Reason))


def test_another_alias_repoints_the_data_views_and_nothing_else() -> None:
    original = setup.saved_objects()
    assert original == b"".join(p.read_bytes() for p in sorted(KIBANA_DIR.glob("*.ndjson")))
    moved = [json.loads(line) for line in setup.saved_objects("press-ar").decode().splitlines()]
    titles = {o["id"]: o["attributes"]["title"] for o in moved if o["type"] == "index-pattern"}
    assert titles == {
        "news-articles": "press-ar",
        "news-articles-alerts": "press-ar-alerts",
        "news-articles-feeds": "press-ar-feeds",
        "news-articles-alert-decisions": "press-ar-alerts",
    }
    same = [json.loads(line) for line in original.decode().splitlines()]
    for before, after in zip(same, moved, strict=True):
        if before["type"] != "index-pattern":
            assert before == after
