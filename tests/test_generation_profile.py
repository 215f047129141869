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
