"""GBNF expressions: merging, parenthesising and references decided from the structure give what
the text-scanning helpers they replaced gave (kept below as the slow obvious method), and the
text is GBNF llama.cpp's parser takes."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwenjson.schema import compile_schema
from qwenjson.schema.gbnf import (
    EMPTY,
    JSON_CHAR,
    JSON_CHAR_RULE,
    Alt,
    CharClass,
    Expr,
    Group,
    Literal,
    Ref,
    Seq,
    alt,
    char_class,
    gbnf_escape_char,
    group,
    is_atom,
    optional,
    repeat,
    seq,
    trie_alternation,
)
from tests.grammar_engine import GrammarEngine

# ---- the text-scanning helpers, as they were (the oracle) -----------------------------------

LITERAL = re.compile(r'^"(?:[^"\\]|\\.)*"$')
IDENT = re.compile(r"[a-zA-Z0-9-]+")
_LEADING_LITERAL = re.compile(r'^"(?:[^"\\]|\\.)*"(?=\s|$)')
_TRAILING_LITERAL = re.compile(r'(?:^|(?<=\s))"(?:[^"\\]|\\.)*"$')
PRIMITIVES = [
    "value",
    "object",
    "array",
    "string",
    "number",
    "integer",
    "boolean",
    "json-char",
    "json-escape",
]
_PRIMITIVE_REF = re.compile(
    r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|(?<![a-zA-Z0-9-])('
    + "|".join(sorted(PRIMITIVES, key=len, reverse=True))
    + r")(?![a-zA-Z0-9-])"
)
_GBNF_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t", "]": "]", "[": "["}


def old_literal(text: str) -> str:
    return '"' + "".join(gbnf_escape_char(c) for c in text) + '"'


def old_is_atom(expr: str) -> bool:
    return bool(IDENT.fullmatch(expr) or (expr[:1] == '"' and LITERAL.match(expr)))


def old_seq(*parts: str) -> str:
    out: list[str] = []
    for part in parts:
        if not part:
            continue
        if out and part[0] == '"' and out[-1][-1] == '"':
            head = _LEADING_LITERAL.match(part)
            tail = _TRAILING_LITERAL.search(out[-1])
            if head and tail and not old_has_bar(part) and not old_has_bar(out[-1]):
                out[-1] = out[-1][: tail.start()] + tail.group(0)[:-1] + part[1:]
                continue
        out.append(part)
    return " ".join(out)


def _outside_quotes(expr: str) -> Iterator[tuple[int, str, int]]:
    depth = 0
    in_lit = in_cls = False
    i = 0
    while i < len(expr):
        c = expr[i]
        if in_lit or in_cls:
            if c == "\\":
                i += 2
                continue
            if (in_lit and c == '"') or (in_cls and c == "]"):
                in_lit = in_cls = False
        elif c == '"':
            in_lit = True
        elif c == "[":
            in_cls = True
        else:
            if c == ")":
                depth -= 1
            yield i, c, depth
            if c == "(":
                depth += 1
        i += 1


def old_has_bar(expr: str) -> bool:
    return " | " in expr and any(c == "|" and d == 0 for _, c, d in _outside_quotes(expr))


def old_group(expr: str) -> str:
    if not expr:
        return '""'
    if old_is_atom(expr):
        return expr
    if expr.startswith("(") and expr.endswith(")"):
        last = len(expr) - 1
        if not any(c == ")" and d == 0 and i != last for i, c, d in _outside_quotes(expr)):
            return expr
    return "( " + expr + " )"


def old_alt(alternatives: Iterable[str]) -> str:
    return " | ".join(dict.fromkeys(alternatives))


def old_repeat(atom: str, lo: int, hi: int | None) -> str:
    if hi is not None and hi == lo:
        return "" if lo == 0 else atom if lo == 1 else f"{atom}{{{lo}}}"
    if hi is None:
        return {0: f"{atom}*", 1: f"{atom}+"}.get(lo, f"{atom}{{{lo},}}")
    if lo == 0 and hi == 1:
        return f"{atom}?"
    return f"{atom}{{{lo},{hi}}}"


def old_unliteral(lit: str) -> str:
    body = lit[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        if body[i] == "\\":
            nxt = body[i + 1]
            if nxt == "x":
                out.append(chr(int(body[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append(_GBNF_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(body[i])
        i += 1
    return "".join(out)


def old_trie_alternation(texts: list[str]) -> str:
    def build(group: list[str], depth: int) -> str:
        alts: list[str] = []
        ends = False
        by_char: dict[str, list[str]] = {}
        for t in group:
            if len(t) == depth:
                ends = True
            else:
                by_char.setdefault(t[depth], []).append(t)
        for sub in by_char.values():
            end = depth + 1
            shortest = min(len(t) for t in sub)
            while end < shortest and all(t[end] == sub[0][end] for t in sub):
                end += 1
            head = old_literal(sub[0][depth:end])
            rest = build(sub, end)
            alts.append(old_seq(head, rest) if rest else head)
        if not alts:
            return ""
        body = " | ".join(alts)
        if ends:
            return "( " + body + ' | "" )'
        return body if len(alts) == 1 else "( " + body + " )"

    return build(sorted(set(texts)), 0)


# ---- random expressions, each with the text the old helpers built for it --------------------

PIECES = ["a", "b", " ", '"', "\\", "|", "(", ")", "[", "]", "\n", "\x7f", "中", "*", "?", "\x00"]
TEXT = st.lists(st.sampled_from([*PIECES, '"a" ', " | ", "é"]), max_size=5).map("".join)
NAMES = st.sampled_from([*PRIMITIVES, "string-2", "x--json-char", "root", "object-tail", "a"])
CLASSES = st.sampled_from(
    [
        CharClass("0-9"),
        CharClass('"\\\\bfnrt'),
        CharClass('"\\\\\\x00-\\x1F', negated=True),
        CharClass("\\x5D\\x5B(|)"),
        char_class([(0x22, 0x22), (0x5B, 0x5D), (0x4E2D, 0x4E2D)]),
    ]
)
Pair = tuple[Expr, str]


def leaves() -> st.SearchStrategy[Pair]:
    return st.one_of(
        TEXT.map(lambda t: (Literal(t), old_literal(t))),
        NAMES.map(lambda n: (Ref(n), n)),
        CLASSES.map(lambda c: (c, str(c))),
        st.just((EMPTY, "")),
    )


def _seq(parts: list[Pair]) -> Pair:
    # The old seq left an alternation in a sequence to its callers, who always grouped it.
    parts = [(group(e), old_group(t)) if isinstance(e, Alt) else (e, t) for e, t in parts]
    return seq(*(e for e, _ in parts)), old_seq(*(t for _, t in parts))


def _repeat(pair: Pair, lo: int, extra: int | None) -> Pair:
    hi = None if extra is None else lo + extra
    return repeat(group(pair[0]), lo, hi), old_repeat(old_group(pair[1]), lo, hi)


def _apart(pair: Pair) -> Pair:
    # A hand-built sequence whose literals stay apart (as the regex translator's "\\" "n").
    return Seq((Literal("\\"), pair[0])), old_literal("\\") + " " + pair[1]


def composites(inner: st.SearchStrategy[Pair]) -> st.SearchStrategy[Pair]:
    small = st.integers(0, 3)
    return st.one_of(
        st.lists(inner, max_size=4).map(_seq),
        st.lists(inner, max_size=4).map(
            lambda ps: (alt(e for e, _ in ps), old_alt(t for _, t in ps))
        ),
        inner.map(lambda p: (group(p[0]), old_group(p[1]))),
        st.builds(_repeat, inner, small, st.none() | small),
        inner.map(lambda p: (optional(p[0]), old_group(p[1]) + "?")),
        inner.map(lambda p: (Group(p[0], spaced=False), f"({p[1]})")),
        inner.filter(lambda p: isinstance(p[0], Literal | Ref | CharClass)).map(_apart),
    )


PAIRS = st.recursive(leaves(), composites, max_leaves=12)


@settings(max_examples=1500, deadline=None)
@given(PAIRS)
def test_structure_decides_as_the_text_helpers_did(pair: Pair) -> None:
    expr, text = pair
    # Merging (seq), parenthesising (group, repeat, optional), dedup (alt): the same text.
    assert str(expr) == text
    assert is_atom(expr) == old_is_atom(text)
    assert str(group(expr)) == old_group(text)
    # Which fixed rules a body uses: from its references, not from a regex over its text.
    assert expr.refs & set(PRIMITIVES) == set(_PRIMITIVE_REF.findall(text)) - {""}
    if isinstance(expr, Literal):
        assert old_unliteral(text) == expr.text  # a literal's text is what it holds


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, max_size=30))
def test_trie_alternation_as_before(texts: list[str]) -> None:
    assert str(trie_alternation(texts)) == old_trie_alternation(texts)


@settings(max_examples=300, deadline=None)
@given(PAIRS, PAIRS)
def test_equal_when_written_alike(a: Pair, b: Pair) -> None:
    # Rules are deduplicated by body: two bodies are one rule when llama.cpp would read the same.
    x, y = a[0], b[0]
    copy = _rebuild(x)
    assert copy == x and hash(copy) == hash(x) and copy is not x
    assert (x == y) == (str(x) == str(y))
    if x == y:
        assert hash(x) == hash(y)
    # Written twice (the second time keeps the text): the same text.
    assert str(_rebuild(y)) == str(y) == b[1]


def _rebuild(e: Expr) -> Expr:
    """A structurally equal copy made of new objects."""
    if isinstance(e, Seq | Alt):
        return type(e)(tuple(_rebuild(i) for i in e.items))
    if isinstance(e, Group):
        return Group(_rebuild(e.item), e.spaced)
    if isinstance(e, Literal | Ref | CharClass):
        return replace(e)
    return type(e)(_rebuild(e.item), e.lo, e.hi)


def test_deep_expressions_are_written_while_compiling() -> None:
    # A 3,000-character key is a trie 3,000 levels deep (written by recursion, in the room
    # the compiler makes), and 1,500 optional prefix items nest their tails 1,499 deep.
    name = "k" * 3000
    grammar = compile_schema({"type": "object", "properties": {name: {"type": "integer"}}})
    assert f'"\\"{name}\\":" integer' in grammar and "other-key ::=" in grammar
    items = [{"const": i} for i in range(1500)]
    grammar = compile_schema({"type": "array", "prefixItems": items, "items": False})
    assert grammar.count("( ") == 1499 and grammar.count(",1499") == 1  # the last is an atom


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string"}, "b": {}}, "required": ["b"]},
        {"type": "array", "prefixItems": [{"type": "integer"}, {"const": "x"}], "maxItems": 3},
        {"anyOf": [{"type": "object", "properties": {"a": {"not": {}}}, "required": ["a"]}, {}]},
        {"type": ["object", "string"], "properties": {"a": False}, "required": ["a"]},
    ],
)
def test_a_compile_leaves_no_reference_cycles(schema: dict[str, Any]) -> None:
    # What lets the compiler pause the cyclic collector: refcounting frees everything.
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        compile_schema(schema)
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()


def test_a_part_written_twice_keeps_its_text() -> None:
    shared = Seq((Ref("a"), optional(Literal("b"))))
    body = alt([seq(Literal("x"), Group(shared)), seq(Literal("y"), Group(shared))])
    assert str(body) == '"x" ( a "b"? ) | "y" ( a "b"? )'
    assert shared._text == 'a "b"?'  # kept at the second writing
    assert str(Group(body)) == f"( {body} )"


def test_json_char_rule_is_the_expression() -> None:
    assert f"json-char ::= {JSON_CHAR}" == JSON_CHAR_RULE
    assert JSON_CHAR.refs == frozenset()
    assert seq(Ref("a"), JSON_CHAR, Literal("b")).refs == {"a"}


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        (seq(Literal("a"), Literal("b"), Ref("x"), Literal("c"), Literal("")), '"ab" x "c"'),
        (seq(Literal(""), Ref("x")), '"" x'),
        (seq(Ref("x"), alt([Literal("a"), Ref("y")])), 'x ( "a" | y )'),
        (repeat(CharClass("0-9"), 2, None), "[0-9]{2,}"),
        (repeat(Ref("x"), 0, 0), ""),
        (optional(seq(Ref("x"), Ref("y"))), "( x y )?"),
        (trie_alternation(["ab", "abc", "b"]), '( "ab" ( "c" | "" ) | "b" )'),
    ],
)
def test_examples(expr: Expr, text: str) -> None:
    assert str(expr) == text


def test_rendered_expressions_parse_in_llama_cpp(grammar_engine: GrammarEngine) -> None:
    rules = {
        "root": seq(Literal("{"), optional(seq(Ref("x"), repeat(Ref("x"), 0, 3))), Literal("}")),
        "x": alt([trie_alternation(['a"b', "a\\c", "\n"]), seq(JSON_CHAR, Group(Ref("x"), False))]),
    }
    grammar = "".join(f"{name} ::= {body}\n" for name, body in rules.items())
    assert grammar_engine.grammar_error(grammar) is None, grammar
    assert grammar_engine.accepts(grammar, '{a"ba\\c\n}')
    assert not grammar_engine.accepts(grammar, "{ab}")
