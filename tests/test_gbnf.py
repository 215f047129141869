"""The shared GBNF primitives, checked on llama.cpp's own parser and grammar engine."""

from __future__ import annotations

import json

import pytest

from qwenjson.schema.gbnf import (
    JSON_CHAR_RULE,
    gbnf_escape_char,
    json_string_literal,
    literal,
    rule_name,
)
from tests.grammar_engine import GrammarEngine


@pytest.mark.parametrize("ch", [*']^-[\\"a中', "\n", "\x7f"])
def test_escaped_class_member(grammar_engine: GrammarEngine, ch: str) -> None:
    grammar = f"root ::= [{gbnf_escape_char(ch, in_class=True)}]"
    assert grammar_engine.grammar_error(grammar) is None
    assert grammar_engine.accepts(grammar, ch)
    assert not grammar_engine.accepts(grammar, "b")


@pytest.mark.parametrize("text", ['a"b\\c', "line\nbreak\ttab", "中文 😀", "\x01\x1f"])
def test_literals(grammar_engine: GrammarEngine, text: str) -> None:
    assert grammar_engine.accepts(f"root ::= {literal(text)}", text)
    as_json = json.dumps(text, ensure_ascii=False)
    assert grammar_engine.accepts(f"root ::= {json_string_literal(text)}", as_json)


def test_json_char_rule_takes_canonical_escapes_and_no_raw_controls(
    grammar_engine: GrammarEngine,
) -> None:
    grammar = 'root ::= "\\"" json-char* "\\""\n' + JSON_CHAR_RULE
    for value in ["plain", 'q"uote', "back\\slash", "\n\t\x00", "中文😀"]:
        assert grammar_engine.accepts(grammar, json.dumps(value, ensure_ascii=False))
    assert not grammar_engine.accepts(grammar, '"raw\nnewline"')
    assert not grammar_engine.accepts(grammar, '"bad \\q escape"')


def test_rule_names() -> None:
    assert rule_name("a b/c") == "a-b-c"
    assert rule_name("中文") == "r"
