"""extract's grammar profile: no invented keys, still only valid documents."""

from __future__ import annotations

from typing import Any

import pytest

from qwenjson.schema import compile_schema
from tests.grammar_engine import GrammarEngine

PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.mark.parametrize(
    ("schema", "closed_accepts", "closed_rejects"),
    [
        (PERSON, ['{"name":"a"}'], ['{"name":"a","note":"x"}']),
        # Nothing declared: free-form keys are the only way to write anything.
        ({"type": "object"}, ['{"k":1}', "{}"], []),
        # minProperties beyond the declared ones needs undeclared keys.
        (
            {"type": "object", "properties": {"a": {"type": "integer"}}, "minProperties": 2},
            ['{"a":1,"b":2}'],
            [],
        ),
        # An explicit additionalProperties is the schema's word, kept as it is.
        (
            {
                "type": "object",
                "properties": {"a": {}},
                "additionalProperties": {"type": "integer"},
            },
            ['{"a":1,"b":2}'],
            ['{"a":1,"b":"x"}'],
        ),
    ],
)
def test_closed_objects(
    grammar_engine: GrammarEngine,
    schema: dict[str, Any],
    closed_accepts: list[str],
    closed_rejects: list[str],
) -> None:
    closed = compile_schema(schema, closed_objects=True)
    exact = compile_schema(schema)
    for doc in closed_accepts:
        assert grammar_engine.accepts(closed, doc), doc
        assert grammar_engine.accepts(exact, doc), doc
    for doc in closed_rejects:
        assert not grammar_engine.accepts(closed, doc), doc
    # The default grammar takes every valid document, undeclared keys included.
    if schema is PERSON:
        assert grammar_engine.accepts(exact, '{"name":"a","note":"x"}')


SPACED_CASES: list[tuple[dict[str, Any], list[str], list[str]]] = [
    (
        {**PERSON, "properties": {**PERSON["properties"], "tags": {"type": "array"}}},
        ['{"name": "a"}', '{"name": "a", "tags": [1, "x", {"k": [true, null]}]}'],
        ['{"name":"a"}', '{"name": "a","tags": []}', '{"name": "a", "tags": [1,2]}'],
    ),
    # Enum and const values are written in the same style.
    (
        {"enum": [{"a": [1, 2]}, "x"]},
        ['{"a": [1, 2]}', '"x"'],
        ['{"a":[1,2]}'],
    ),
    # Free-form objects, patternProperties and tuples.
    (
        {"type": "object", "patternProperties": {"^n": {"type": "integer"}}},
        ['{"n1": 1, "n2": 2}', "{}"],
        ['{"n1":1}'],
    ),
    (
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
        ['[1, "a"]', "[1]"],
        ['[1,"a"]'],
    ),
]


@pytest.mark.parametrize(("schema", "accepts", "rejects"), SPACED_CASES)
def test_spaced_separators(
    grammar_engine: GrammarEngine,
    schema: dict[str, Any],
    accepts: list[str],
    rejects: list[str],
) -> None:
    # extract's profile writes ", " and ": " (as json.dumps does by default): a 0.5B model
    # chose "keywords":[] under the compact style where the spaced one got the list filled.
    spaced = compile_schema(schema, closed_objects=True, spaced=True)
    for doc in accepts:
        assert grammar_engine.accepts(spaced, doc), doc
    for doc in rejects:
        assert not grammar_engine.accepts(spaced, doc), doc
    # The default grammar stays compact (the spaced texts are not its canonical form).
    compact = compile_schema(schema, closed_objects=True)
    assert not grammar_engine.accepts(compact, accepts[0])
