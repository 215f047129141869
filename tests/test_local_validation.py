"""``LocalCheck.still_valid`` against its oracle, validating the whole document: the same verdict
on generated schemas (decomposable or not, behind ``$ref``/``anyOf``-null/``allOf``) and changes
(items appended, members added or replaced) to valid documents."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qwenjson.local_validation import LocalCheck, _still_unique
from qwenjson.validate import make_validator, validation_errors

PathT = tuple[str | int, ...]

WORDS = ["a", "b", "ab", "abcd", "", "名字"]
ROLES = ["cook", "chef"]
# Keywords that look past a container's own keys and length: the check must fall back on them.
DEEP = [
    {"contains": {"const": "a"}},
    {"not": {"required": ["zz"]}},
    {"enum": [[], ["a"], ["a", "b"]]},
    {"oneOf": [{"maxItems": 1}, {"minItems": 3}]},
    {"patternProperties": {"^b": {"type": "integer"}}},
]


@st.composite
def container(draw: Any, kind: str, inner: Any) -> Any:
    """A container schema of ``kind`` with a random set of shallow keywords, sometimes a deep
    one, sometimes behind one of the shapes that lead to it."""
    node: dict[str, Any] = {"type": kind, "description": "x", "x-grounded": True}
    if kind == "array":
        node["items"] = inner
        if draw(st.booleans()):
            node["maxItems"] = draw(st.integers(0, 4))
        if draw(st.booleans()):
            node["uniqueItems"] = True
        if draw(st.booleans()):
            node["minItems"] = draw(st.integers(0, 2))
    else:
        node["properties"] = inner
        if draw(st.booleans()):
            node["additionalProperties"] = draw(st.sampled_from([False, {"type": "string"}]))
        if draw(st.booleans()):
            node["maxProperties"] = draw(st.integers(1, 4))
        if draw(st.booleans()):
            node["required"] = draw(st.lists(st.sampled_from(sorted(inner) or ["q"]), max_size=2))
        if draw(st.booleans()):
            node["propertyNames"] = {"maxLength": 4}
    if draw(st.integers(0, 5)) == 0:
        node.update(draw(st.sampled_from(DEEP)))
    shape = draw(st.sampled_from(["plain", "ref", "nullable", "oneof", "allof", "ref+type"]))
    if shape == "plain":
        return node, None
    name = f"d{draw(st.integers(0, 10**6))}"
    wrapped = {
        "ref": {"$ref": f"#/$defs/{name}", "title": "t"},
        "nullable": {"anyOf": [{"$ref": f"#/$defs/{name}"}, {"type": "null"}]},
        "oneof": {"oneOf": [{"type": "null"}, {"$ref": f"#/$defs/{name}"}]},
        "allof": {"allOf": [{"$ref": f"#/$defs/{name}"}], "description": "d"},
        "ref+type": {"$ref": f"#/$defs/{name}", "maxProperties": 1, "maxItems": 1},
    }[shape]
    return wrapped, (name, node)


@st.composite
def cases(draw: Any) -> tuple[dict[str, Any], Any, list[tuple[PathT, Any]]]:
    defs: dict[str, Any] = {}

    def keep(made: tuple[Any, Any]) -> Any:
        schema, definition = made
        if definition is not None:
            defs[definition[0]] = definition[1]
        return schema

    string = {"type": "string", "maxLength": draw(st.integers(1, 4))}
    person = keep(
        draw(
            container(
                "object",
                {"name": {"type": "string", "minLength": 1}, "role": {"enum": ROLES}},
            )
        )
    )
    root_props = {
        "tags": keep(draw(container("array", string))),
        "people": keep(draw(container("array", person))),
        "meta": keep(draw(container("object", {"n": {"type": "integer"}, "s": string}))),
        "title": {"type": "string"},
    }
    root = keep(draw(container("object", root_props)))
    root["$defs"] = defs

    word = st.sampled_from(WORDS)
    people = st.fixed_dictionaries(
        {"name": word}, optional={"role": st.sampled_from([*ROLES, "x"]), "zz": word}
    )
    meta = st.fixed_dictionaries(
        {}, optional={"n": st.integers(0, 3), "s": word, "bb": st.sampled_from([1, "b"])}
    )
    document = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "tags": st.lists(word, max_size=4),
                "people": st.lists(people, max_size=3),
                "meta": meta,
                "title": word,
            },
        )
    )
    changes: list[tuple[PathT, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["tags", "people", "meta", "root"]))
        if where == "tags" and isinstance(document.get("tags"), list):
            changes.append((("tags",), draw(word)))
        elif where == "people" and isinstance(document.get("people"), list):
            changes.append((("people",), draw(people)))
        elif where == "meta" and isinstance(document.get("meta"), dict):
            key = draw(st.sampled_from(["n", "s", "bb", "zzzzz"]))
            changes.append((("meta", key), draw(st.sampled_from([1, "ab", "abcdef", None]))))
        else:
            key = draw(st.sampled_from(["title", "extra", "meta"]))
            changes.append(((key,), draw(st.sampled_from(["t", 3, {"n": 1}, {"bb": 1}]))))
    return root, document, changes


def apply(document: Any, changes: list[tuple[PathT, Any]]) -> tuple[Any, list[PathT]]:
    """The document with each change made (a one-part path to a list appends to it), and the
    paths of the values put; a change inside a value put before is left out."""
    changed = copy.deepcopy(document)
    paths: list[PathT] = []
    for path, value in changes:
        if any(path[: len(p)] == p for p in paths):
            return changed, []  # inside a value put before (a string, maybe): not a merge's
        parent = changed
        for part in path[:-1]:
            parent = parent[part]
        target = parent.get(path[-1]) if isinstance(parent, dict) else None
        if len(path) == 1 and path[0] in ("tags", "people") and isinstance(target, list):
            target.append(copy.deepcopy(value))
            placed: PathT = (*path, len(target) - 1)
        else:
            parent[path[-1]] = copy.deepcopy(value)
            placed = path
        if any(placed[: len(p)] == p or p[: len(placed)] == placed for p in paths):
            return changed, []  # nested in one another: not a merge's change
        paths.append(placed)
    return changed, paths


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(cases())
def test_the_local_verdict_is_the_whole_documents(case: Any) -> None:
    schema, document, changes = case
    validator = make_validator(schema)
    assume(not validation_errors(document, validator))
    changed, paths = apply(document, changes)
    assume(paths)
    whole = not validation_errors(changed, validator)
    assert LocalCheck(validator).still_valid(changed, paths) == whole


def test_it_asks_only_what_changed_when_the_schema_allows() -> None:
    # Proof that the shortcut is taken (the oracle test would pass with full validation
    # everywhere): an item already in the list that breaks its item schema is not looked at.
    schema = {
        "type": "object",
        "properties": {"tags": {"$ref": "#/$defs/t"}},
        "$defs": {"t": {"type": "array", "items": {"type": "string", "maxLength": 2}}},
    }
    for root_id in ({}, {"$id": "https://example.com/tags.json"}):  # the root's own: fine
        check = LocalCheck(make_validator({**schema, **root_id}))
        document = {"tags": ["too long", "ok"]}
        assert check.still_valid(document, [("tags", 1)])
        assert not check.still_valid({"tags": ["too long", "far too long"]}, [("tags", 1)])


def test_it_validates_everything_where_a_reference_may_resolve_elsewhere() -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"$ref": "#/$defs/t"}},
        "$defs": {"t": {"$id": "t.json", "type": "array", "items": {"type": "string"}}},
    }
    check = LocalCheck(make_validator(schema))
    assert not check.usable
    assert not check.still_valid({"tags": [1, "ok"]}, [("tags", 1)])


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, -1, 2**60])
    | st.sampled_from([0.0, -0.0, 1.0, 1.5, 1e20, 2.0**60])
    | st.sampled_from(["", "a", "1", "true"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("ab"), inner),
    max_leaves=6,
)


@settings(max_examples=500, deadline=None)
@given(st.lists(JSON, min_size=1, max_size=5), st.data())
def test_unique_items_is_judged_as_jsonschema_judges_it(items: list[Any], data: Any) -> None:
    # The oracle: jsonschema's own uniqueItems on the whole list, which was unique before the
    # changed items were put in (drawn so that it was).
    validator = make_validator({"type": "array", "uniqueItems": True})
    changed = set(data.draw(st.sets(st.integers(0, len(items) - 1))))
    before = [x for i, x in enumerate(items) if i not in changed]
    assume(not validation_errors(before, validator))
    assert _still_unique(items, changed) == (not validation_errors(items, validator))
