"""Properties of the schema compiler, checked on llama.cpp's own grammar engine (hypothesis).

- Any string in ``enum``/``const``/``pattern``/a property name (quotes, backslashes, control
  characters, emoji, CJK) round-trips exactly: the grammar accepts the value's canonical JSON and
  rejects a different value.
- A random schema built from the supported keywords plus junk never crashes qwenjson's schema
  preparation (metaschema check, compiler, validator): it gives a grammar llama.cpp parses and
  a validator that works, or a clean ``SchemaError``.
- On random instances the grammar and validation agree: the grammar accepts every instance
  jsonschema calls valid, and when the compiler says no validation is needed, everything the
  grammar accepts is valid.
- What the grammar lets through, sampled token by token as a model would write it, is JSON,
  and valid unless the compiler says validation is needed.
"""

from __future__ import annotations

import json
import math
from random import Random
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from qwenjson.errors import SchemaError
from qwenjson.schema import compile_schema as compile_gbnf
from tests.grammar_engine import GrammarEngine, canonical_json, prepare

# Modest example counts: the whole suite must stay fast in CI.
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MORE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The characters that break naive escaping, mixed with anything else Unicode allows in UTF-8.
TRICKY = st.sampled_from(
    ['"', "\\", "/", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f", "\x7f", "\u2028",
     "'", "{", "}", "[", "]", ":", ",", "|", "*", "?", "(", ")", "<|im_end|>",
     "日", "本", "語", "é", "ß", "🎉", "👍🏽", "\U0001f468\u200d\U0001f469", " "]
)  # fmt: skip
# Unassigned code points (Cn) are left out: planes 4-13 need UTF-8 lead bytes F1/F2, for which
# SmolLM2's vocabulary has no token, so no model using it could write them anyway.
CHARS = st.characters(exclude_categories=["Cs", "Cn"])
STRINGS = st.lists(st.one_of(TRICKY, CHARS), max_size=12).map("".join)

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    STRINGS,
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(STRINGS, inner, max_size=4)
    ),
    max_leaves=12,
)


def _differs(value: Any) -> Any:
    """A JSON value that JSON Schema considers different from ``value``."""
    if isinstance(value, str):
        return value + "x"
    return [value]


def _ecma_literal(text: str) -> str:
    """A regex matching exactly ``text`` (ECMA-262 syntax, as JSON Schema's ``pattern``)."""
    return "".join("\\" + c if c in "\\^$.|?*+()[]{}/" else c for c in text)


@FEW
@given(value=STRINGS)
def test_enum_strings_round_trip(grammar_engine: GrammarEngine, value: str) -> None:
    grammar = compile_gbnf({"enum": [value, value + "!"]})
    assert grammar_engine.accepts(grammar, canonical_json(value))
    assert grammar_engine.accepts(grammar, canonical_json(value + "!"))
    assert not grammar_engine.accepts(grammar, canonical_json(value + "x"))
    assert not grammar_engine.accepts(grammar, canonical_json(value) + " ")


@FEW
@given(value=JSON_VALUES)
def test_const_values_round_trip(grammar_engine: GrammarEngine, value: Any) -> None:
    schema = {"const": value}
    grammar = compile_gbnf(schema)
    assert grammar_engine.accepts(grammar, canonical_json(value, schema))
    assert not grammar_engine.accepts(grammar, canonical_json(_differs(value), schema))


@FEW
@given(name=STRINGS, other=STRINGS)
def test_property_names_round_trip(grammar_engine: GrammarEngine, name: str, other: str) -> None:
    assume(name != other)
    schema = {
        "type": "object",
        "properties": {name: {"type": "integer"}},
        "required": [name],
        "additionalProperties": False,
    }
    grammar = compile_gbnf(schema)
    assert grammar_engine.accepts(grammar, canonical_json({name: 7}, schema))
    assert not grammar_engine.accepts(grammar, canonical_json({other: 7}, schema))
    assert not grammar_engine.accepts(grammar, canonical_json({name: 7, other: 7}, schema))


@FEW
@given(value=STRINGS)
def test_pattern_literals_round_trip(grammar_engine: GrammarEngine, value: str) -> None:
    schema = {"type": "string", "pattern": "^" + _ecma_literal(value) + "$"}
    grammar = compile_gbnf(schema)
    assert grammar_engine.accepts(grammar, canonical_json(value))
    assert not grammar_engine.accepts(grammar, canonical_json(value + "x"))


# -- random schemas --------------------------------------------------------------------------

TYPES = st.sampled_from(["null", "boolean", "integer", "number", "string", "array", "object"])
NAMES = st.one_of(st.sampled_from(["a", "b", "name", "x y", "ü", '"q"']), STRINGS)
SMALL = st.integers(min_value=-3, max_value=6)  # numeric bounds
COUNTS = st.integers(min_value=0, max_value=6)  # lengths, item and property counts
PATTERNS = st.sampled_from(
    ["^a", "b$", "^[a-z]+$", "\\d{2,3}", "^(ab|cd)*$", "^\\w+@\\w+\\.com$", "x?y+", "^.{0,3}$",
     "[", "(a", "^\\p{L}$"]
)  # fmt: skip
FORMATS = st.sampled_from(["date", "time", "date-time", "email", "uuid", "ipv4", "uri", "bogus"])
# Things no schema compiler should choke on: unknown keywords, wrong types, odd values.
JUNK = st.one_of(
    st.dictionaries(st.sampled_from(["x-junk", "title", "$comment", "examples"]), JSON_VALUES),
    st.fixed_dictionaries({"type": st.sampled_from(["nonsense", 3, [], ["string", "string"]])}),
    st.fixed_dictionaries({"minimum": st.sampled_from(["1", None, math.pi])}),
    st.fixed_dictionaries({"$ref": st.sampled_from(["#/nowhere", "http://example.com/s", "#"])}),
    st.fixed_dictionaries({"enum": st.sampled_from([[], [1, 1], "x"])}),
)
LEAVES = st.one_of(
    st.booleans(),
    st.just({}),
    st.fixed_dictionaries({"type": TYPES}),
    st.fixed_dictionaries({"type": st.lists(TYPES, min_size=1, max_size=3, unique=True)}),
    st.fixed_dictionaries({"enum": st.lists(JSON_VALUES, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"const": JSON_VALUES}),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["integer", "number"])},
        optional={
            "minimum": SMALL,
            "maximum": SMALL,
            "exclusiveMinimum": SMALL,
            "multipleOf": st.sampled_from([1, 2, 0.5, 3]),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("string")},
        optional={"minLength": COUNTS, "maxLength": COUNTS, "pattern": PATTERNS, "format": FORMATS},
    ),
)


def _composites(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    children = st.lists(inner, min_size=1, max_size=3)
    return st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("object"), "properties": st.dictionaries(NAMES, inner, max_size=3)},
            optional={
                "required": st.lists(NAMES, max_size=2),
                "additionalProperties": st.one_of(st.booleans(), inner),
                "patternProperties": st.dictionaries(PATTERNS, inner, max_size=1),
                "minProperties": COUNTS,
                "maxProperties": COUNTS,
            },
        ),
        st.fixed_dictionaries(
            {"type": st.just("array")},
            optional={
                "items": inner,
                "prefixItems": children,
                "minItems": COUNTS,
                "maxItems": COUNTS,
                "uniqueItems": st.booleans(),
                "contains": inner,
            },
        ),
        st.builds(lambda k, v: {k: v}, st.sampled_from(["anyOf", "oneOf", "allOf"]), children),
        st.builds(lambda v: {"not": v}, inner),
        st.builds(lambda a, b, c: {"if": a, "then": b, "else": c}, inner, inner, inner),
    )


def _with_defs(body: Any, d: Any, v: Any) -> Any:
    """A root schema: ``body`` plus the ``$defs`` its ``$ref``s point to."""
    node = {
        "anyOf": [
            {"type": "null"},
            # A linked list: recursion through "next", with null as the way out.
            {"type": "object", "properties": {"v": v, "next": {"$ref": "#/$defs/node"}}},
        ]
    }
    root = body if isinstance(body, dict) else {"allOf": [body]}
    return {**root, "$defs": {"d": d, "node": node}}


REFS = st.sampled_from([{"$ref": "#/$defs/d"}, {"$ref": "#/$defs/node"}])


def _schemas(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    body = st.recursive(st.one_of(leaves, REFS), _composites, max_leaves=8)
    inner = st.recursive(leaves, _composites, max_leaves=4)  # what the $defs hold
    return st.builds(_with_defs, body, inner, inner)


# Mostly well-formed schemas (to exercise the compiler), one in four with junk somewhere.
SCHEMAS = st.one_of(
    _schemas(LEAVES), _schemas(LEAVES), _schemas(LEAVES), _schemas(st.one_of(LEAVES, JUNK))
)


# Instances that walk validation through every kind of branch of a random schema.
PROBES: list[Any] = [None, True, 0, -1.5, "", "a", [], [None, 1], {}, {"a": "b", "(a": 1, "v": []}]


def _validation_trouble(validator: Any) -> str | None:
    """Why qwenjson's post-generation validator breaks on the probes, or None if it doesn't."""
    try:
        for probe in PROBES:
            validator.is_valid(probe)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # an endless $ref loop panics in jsonschema's Rust registry
        return f"{type(e).__name__}: {str(e)[:300]}"
    return None


@MORE
# Found by this test: schemas the compiler took whose validation then raised or panicked.
@example(schema={"not": {"$ref": "#/nowhere"}})
@example(schema={"dependentSchemas": {"a": {"$ref": "#/x"}}})
@example(schema={"not": {"$ref": "#"}})
@given(schema=SCHEMAS)
def test_random_schemas_give_a_usable_grammar_or_a_clean_refusal(
    grammar_engine: GrammarEngine, schema: Any
) -> None:
    try:
        compiled, validator = prepare(schema)  # what qwenjson does before generating
    except SchemaError as e:
        assert str(e)
        return
    assert grammar_engine.grammar_error(compiled.grammar) is None
    assert _validation_trouble(validator) is None


@MORE
@example(  # 2.0**53 is an integer to JSON Schema; its canonical form must say so
    schema={"type": "object", "additionalProperties": {"type": "integer"}},
    instances=[{"": 9007199254740992.0}, -1e300, {"a": 1e300}],
    spaced=False,
)
@given(
    schema=SCHEMAS,
    instances=st.lists(JSON_VALUES, min_size=1, max_size=4),
    spaced=st.booleans(),
)
def test_grammar_and_validation_agree_on_random_instances(
    grammar_engine: GrammarEngine, schema: Any, instances: list[Any], spaced: bool
) -> None:
    # Both separator styles: compact, and extract's spaced one (", " and ": ").
    try:
        compiled, validator = prepare(schema, spaced=spaced)
    except SchemaError:
        return
    assume(_validation_trouble(validator) is None)  # the test above reports those
    for instance in instances:
        text = canonical_json(instance, schema, spaced=spaced)
        valid = validator.is_valid(instance)
        accepted = grammar_engine.accepts(compiled.grammar, text)
        if valid:
            assert accepted, f"valid instance rejected by the grammar: {text}"
        elif accepted:
            assert compiled.needs_validation, f"invalid, accepted, unchecked: {text}"


@pytest.mark.slow
@MORE
@given(
    schema=SCHEMAS,
    closed=st.booleans(),
    spaced=st.booleans(),
    rnd=st.randoms(use_true_random=False),
)
def test_what_the_grammar_lets_through_is_valid_or_checked(
    grammar_engine: GrammarEngine, schema: Any, closed: bool, spaced: bool, rnd: Random
) -> None:
    # Soundness, the other half: texts sampled token by token under the grammar (as a model
    # would write them) are JSON, valid unless the compiler said validation is needed. (A key
    # written twice is read as json.loads reads it, the last one wins, as qwenjson does: GBNF
    # can't keep free-form keys apart, so validation has to count what is really there.)
    # Every profile: the exact grammar, extract's closed objects, and either separator style.
    try:
        compiled, validator = prepare(schema, closed_objects=closed, spaced=spaced)
    except SchemaError:
        return
    assume(_validation_trouble(validator) is None)
    for _ in range(3):
        text = grammar_engine.sample(compiled.grammar, rnd)
        if text is None:  # the walk didn't end: nothing to judge
            continue
        document = json.loads(text)
        if not compiled.needs_validation:
            errors = [e.message for e in validator.iter_errors(document)]
            assert not errors, f"the grammar let through an invalid document {text}: {errors}"


def test_a_key_written_twice_counts_once(grammar_engine: GrammarEngine) -> None:
    # GBNF can't keep free-form keys apart, so '{"x":1,"x":2}' may get through; json.loads
    # (and qwenjson) read it as one property. Then minProperties isn't enforced by the
    # grammar alone, and the compiler must say validation is needed.
    compiled, _ = prepare({"type": "object", "minProperties": 2})
    if grammar_engine.accepts(compiled.grammar, '{"x":1,"x":2}'):
        assert compiled.needs_validation
