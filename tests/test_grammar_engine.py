"""The harness itself: llama.cpp's grammar engine parses, accepts, rejects as it should."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qwenjson.schema import compile_schema
from tests.grammar_engine import GrammarEngine, GrammarParseError, canonical_json

DIGITS = 'root ::= "ab" [0-9]+'


def test_accepts_a_matching_text(grammar_engine: GrammarEngine) -> None:
    assert grammar_engine.accepts(DIGITS, "ab12")


@pytest.mark.parametrize("text", ["ax1", "ab1x", "b12", " ab1", "ab1 "])
def test_rejects_a_text_that_leaves_the_grammar(grammar_engine: GrammarEngine, text: str) -> None:
    assert not grammar_engine.accepts(DIGITS, text)


@pytest.mark.parametrize("text", ["", "a", "ab"])
def test_rejects_an_unfinished_text(grammar_engine: GrammarEngine, text: str) -> None:
    # Every token is allowed, but the grammar may not end here: EOS is masked.
    assert not grammar_engine.accepts(DIGITS, text)


def test_may_end_while_a_longer_alternative_is_still_open(grammar_engine: GrammarEngine) -> None:
    grammar = 'root ::= "a" | "ab"'
    assert grammar_engine.accepts(grammar, "a")
    assert grammar_engine.accepts(grammar, "ab")


def test_a_good_grammar_has_no_error(grammar_engine: GrammarEngine) -> None:
    assert grammar_engine.grammar_error(DIGITS) is None


@pytest.mark.parametrize(
    ("grammar", "said"),
    [
        ('root ::= ("a"', "expecting ')'"),
        ("root ::= [a-", "unexpected end of input"),
        ('root ::= "a" undefined-rule', "undefined-rule"),
        ('other ::= "a"', "root"),
        ('root ::= root "a" | "a"', "left recursion"),
        ("", "empty grammar"),
        ('root ::= "a\x00"', "NUL"),
        ('root ::= "a"{2,0}', "maximum below its minimum"),  # llama.cpp would eat all memory
    ],
)
def test_an_unparsable_grammar_gets_llama_cpp_s_reason(
    grammar_engine: GrammarEngine, grammar: str, said: str
) -> None:
    error = grammar_engine.grammar_error(grammar)
    assert error is not None
    assert said in error
    with pytest.raises(GrammarParseError):
        grammar_engine.accepts(grammar, "a")


def test_llama_cpp_says_nothing_on_stderr(
    grammar_engine: GrammarEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    grammar_engine.grammar_error('root ::= ("a"')
    grammar_engine.accepts(DIGITS, "ab1")
    grammar_engine.accepts(DIGITS, "zz")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_tokens_spell_the_text_and_special_text_stays_text(grammar_engine: GrammarEngine) -> None:
    text = '{"a":"<|im_end|>"}'
    tokens = grammar_engine.tokenize(text)
    assert b"".join(grammar_engine.piece(t) for t in tokens) == text.encode()
    assert grammar_engine.eos not in tokens
    assert grammar_engine.accepts('root ::= "{\\"a\\":\\"<|im_end|>\\"}"', text)


OBJECT = r"""
root ::= "{" key ":" value "}"
key ::= "\"" [a-z]+ "\""
value ::= [0-9]+ | "\"" [^"]* "\""
"""


def test_tokens_that_straddle_rule_boundaries_are_fine(grammar_engine: GrammarEngine) -> None:
    text = '{"name":12}'
    tokens = grammar_engine.tokenize(text)
    pieces = [grammar_engine.piece(t) for t in tokens]
    # The real tokenizer glues grammar pieces together ('{"' spans "{" and the key's quote).
    assert any(len(p) > 1 and not p.isalnum() for p in pieces), pieces
    assert grammar_engine.accepts(OBJECT, text)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ('{"name":12}', True),
        ('{"name":"日本語 🎉 ü"}', True),
        ('{"名":1}', False),  # a CJK key is outside [a-z]
        ('{"name":"🎉"', False),
        ('{"name":"a"b"}', False),
    ],
)
def test_every_tokenization_gets_the_same_verdict(
    grammar_engine: GrammarEngine, text: str, ok: bool
) -> None:
    # Byte by byte splits multi-byte UTF-8 characters across tokens: llama.cpp's grammar keeps
    # the partial character between tokens, so the verdict doesn't depend on the tokenization.
    whole = grammar_engine.tokenize(text)
    per_char = [t for ch in text for t in grammar_engine.tokenize(ch)]
    per_byte = grammar_engine.byte_by_byte(text)
    assert len(per_byte) == len(text.encode())
    verdicts = {grammar_engine.accepts_tokens(OBJECT, t) for t in (whole, per_char, per_byte)}
    assert verdicts == {ok}


SCHEMA = {
    "$defs": {"point": {"properties": {"x": {}, "y": {}}}},
    "properties": {
        "b": {"$ref": "#/$defs/point"},
        "a": {"type": "array", "items": {"properties": {"z": {}, "w": {}}}},
    },
}


def test_canonical_json_orders_keys_as_the_schema_lists_them() -> None:
    instance = {"extra": 1, "a": [{"w": 1, "z": 2, "v": 3}], "b": {"y": 1.0, "x": 0.5}}
    assert canonical_json(instance, SCHEMA) == (
        '{"b":{"x":0.5,"y":1},"a":[{"z":2,"w":1,"v":3}],"extra":1}'
    )


def test_canonical_json_follows_the_matching_branch() -> None:
    schema = {
        "anyOf": [
            {"properties": {"p": {"type": "string"}, "q": {}}, "required": ["p"]},
            {"properties": {"q": {}, "p": {}}},
        ]
    }
    assert canonical_json({"q": 1, "p": "s"}, schema) == '{"p":"s","q":1}'
    assert canonical_json({"q": 1, "p": 2}, schema) == '{"q":1,"p":2}'


def test_canonical_json_escapes_only_what_json_must() -> None:
    value = 'q"b\\n\n\x1f\x7f日🎉'
    text = canonical_json(value)
    assert text == '"q\\"b\\\\n\\n\\u001f\x7f日🎉"'
    assert json.loads(text) == value


def test_canonical_json_merges_ref_and_all_of_depth_first() -> None:
    schema = {
        "$defs": {"one": {"properties": {"a": {}}}},
        "properties": {"c": {}},
        "allOf": [{"$ref": "#/$defs/one"}, {"properties": {"b": {}}}],
    }
    assert canonical_json({"b": 1, "a": 2, "x": 3, "c": 4}, schema) == '{"c":4,"a":2,"b":1,"x":3}'


def test_canonical_json_writes_listed_values_as_the_schema_does() -> None:
    schema = {"enum": [{"z": 1.0, "a": [2.0]}, 9007199254740992]}
    assert canonical_json({"a": [2], "z": 1}, schema) == '{"z":1.0,"a":[2.0]}'
    assert canonical_json(9007199254740992.0, schema) == "9007199254740992"
    assert canonical_json(9007199254740992.0) == "9007199254740992"
    assert canonical_json(1e300) == str(int(1e300))  # its 301 exact digits, no exponent


def test_canonical_json_ignores_ref_siblings_before_2019() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"p": {"properties": {"b": {}, "a": {}}}},
        "properties": {"a": {}, "b": {}},
        "$ref": "#/definitions/p",
    }
    assert canonical_json({"a": 1, "b": 2}, schema) == '{"b":2,"a":1}'


def test_canonical_json_writes_the_listed_value_equal_to_the_instance_in_draft_4() -> None:
    # Draft 4 has no `const`: a listed value must be matched some other way than {"const": v},
    # which draft 4 reads as the empty schema (it wrote every "Developer" as the first, null).
    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "properties": {"role": {"type": "string", "enum": [None, "Developer"]}},
    }
    assert canonical_json({"role": "Developer"}, schema) == '{"role":"Developer"}'


def _judged(grammar_engine: GrammarEngine, instance: Any, schema: Any) -> str:
    """``instance``'s canonical form, which the schema's exact grammar must accept."""
    text = canonical_json(instance, schema)
    assert grammar_engine.accepts(compile_schema(schema), text), text
    return text


def test_canonical_json_puts_branch_properties_after_the_merged_ones(
    grammar_engine: GrammarEngine,
) -> None:
    # The compiler merges $ref and allOf first and distributes anyOf/oneOf over the result,
    # so a branch's properties come after every merged one (Github_easy o78062, o64859).
    branches = [{"properties": {"s": {}}, "required": ["s"]}, {"properties": {"t": {}}}]
    schema = {"allOf": [{"oneOf": branches}, {"properties": {"b": {}}}]}
    assert _judged(grammar_engine, {"s": 1, "b": 2}, schema) == '{"b":2,"s":1}'


def test_canonical_json_puts_required_undeclared_names_after_the_declared_ones(
    grammar_engine: GrammarEngine,
) -> None:
    schema = {"properties": {"a": {}}, "required": ["c", "b"]}
    instance = {"x": 0, "b": 1, "c": 2, "a": 3}
    assert _judged(grammar_engine, instance, schema) == '{"a":3,"c":2,"b":1,"x":0}'


def test_canonical_json_orders_by_the_first_group_alone_past_the_compiler_s_limit(
    grammar_engine: GrammarEngine,
) -> None:
    # 9 × 9 combinations are past MAX_ALTERNATIVES_PRODUCT (64): the compiler keeps the first
    # group and leaves the second to validation, so its names are undeclared keys.
    first = [{"properties": {"p": {"const": i}, "x": {}}} for i in range(9)]
    second = [{"properties": {"q": {"const": i}, "z": {}}} for i in range(9)]
    schema = {"allOf": [{"anyOf": first}, {"anyOf": second}]}
    instance = {"z": 1, "x": 2, "q": 0, "p": 0}
    assert _judged(grammar_engine, instance, schema) == '{"p":0,"x":2,"z":1,"q":0}'
