"""regex_to_gbnf: JSON Schema patterns as GBNF over JSON-encoded string content.

Every verdict on a string comes from llama.cpp's own grammar engine (tests/grammar_engine.py):
the expression is wrapped as ``root ::= "\\"" expr "\\""`` with the ``json-char`` rule, and the
string is offered as ``json.dumps(s, ensure_ascii=False)``, the canonical form qwenjson writes.
Where ECMA-262 and Python agree, the same strings are cross-checked with ``re.search``.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwenjson.errors import SchemaError, UnsupportedKeywordError
from qwenjson.schema.gbnf import JSON_CHAR_RULE
from qwenjson.schema.regex import (
    MAX_REPEAT_BOUND,
    is_ecma_regex,
    regex_to_gbnf,
    to_python_regex,
)


def string_grammar(pattern: str, prefix: str = "pat-") -> str:
    """A whole grammar: one JSON string whose value matches ``pattern``."""
    expr, rules = regex_to_gbnf(pattern, prefix)
    lines = [f'root ::= "\\"" {expr} "\\""', JSON_CHAR_RULE]
    lines += [f"{name} ::= {body}" for name, body in rules.items()]
    return "\n".join(lines) + "\n"


def encoded(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def accepts(engine: Any, grammar: str, text: str) -> bool:
    """llama.cpp's verdict on ``text``, the same whether it comes as the vocabulary tokenizes it
    or one byte per token (a character split across tokens must not change the answer)."""
    natural = engine.tokenize(text)
    verdict = bool(engine.accepts_tokens(grammar, natural))
    assert engine.accepts_tokens(grammar, engine.byte_by_byte(text)) == verdict, (grammar, text)
    return verdict


# (pattern, strings that match, strings that don't, Python pattern with the same meaning for the
# cross-check, or None where Python can't say it: \p{…}, \cX).
SAME = "same"
CASES: list[tuple[str, list[str], list[str], str | None]] = [
    # literals and containment: unanchored means "contains"
    ("abc", ["abc", "xabcx", "abcabc", '"abc"'], ["", "ab", "acb", "ABC"], SAME),
    ("^abc", ["abc", "abcd"], ["xabc", ""], SAME),
    ("abc$", ["abc", "xabc"], ["abcx", "abc\n"], "abc\\Z"),
    ("^abc$", ["abc"], ["abc\n", "xabc", "abcx", ""], "^abc\\Z"),
    ("^$", [""], [" ", "\n"], "^\\Z"),
    ("", ["", "anything", '"\\'], [], SAME),
    # JSON's escapes: the decoded value is matched, the encoded form is generated
    ('^"$', ['"'], ["", '\\"', "'"], SAME),
    ("^\\\\$", ["\\"], ["", "\\\\", "/"], SAME),
    ('^a"b\\\\c$', ['a"b\\c'], ['a"bc', "ab\\c"], SAME),
    ("^\\n\\t\\r\\f\\x08$", ["\n\t\r\f\b"], ["\\n\\t\\r\\f\\b", "\n\t\r\f"], SAME),
    ("^\\x00\\x1f\\x0b$", ["\x00\x1f\x0b"], ["\x00\x1f", "\\u0000\\u001f\\u000b"], SAME),
    ("^\\u00e9t\\u00E9$", ["été"], ["ete", "\\u00e9t\\u00e9"], SAME),
    ("^\\u{1F600}$", ["😀"], ["\\u{1F600}", ""], "^\\U0001F600\\Z"),
    ("^\\ud83d\\ude00$", ["😀"], ["\\ud83d\\ude00", ""], "^\\U0001F600\\Z"),
    ("^\\cC\\cc$", ["\x03\x03"], ["\\cC\\cc"], None),
    ("^\\/$", ["/"], ["\\/"], "^/\\Z"),
    # classes
    ("^[a-c]+$", ["a", "abcabc"], ["", "abcd", "A"], "^[a-c]+\\Z"),
    (
        "^[^a]$",
        ["b", '"', "\\", "\n", "\x00", "\x1f", "\x7f", "é", "😀", "\u2028"],
        ["a", ""],
        "^[^a]\\Z",
    ),
    ('^[^"\\\\]+$', ["abc", "é\n"], ['a"', "a\\b"], '^[^"\\\\]+\\Z'),
    ('^["\\\\\\n]$', ['"', "\\", "\n"], ["n", "a"], '^["\\\\\\n]\\Z'),
    ("^[\\x00-\\x1f]+$", ["\x00\x01\x08\x0b\x1f", "\n"], [" ", "a"], "^[\\x00-\\x1f]+\\Z"),
    ("^[-a]$", ["-", "a"], ["b"], "^[-a]\\Z"),
    ("^[a\\-z]$", ["-", "a", "z"], ["b"], "^[a\\-z]\\Z"),
    ("^[\\^x]$", ["^", "x"], ["y"], "^[\\^x]\\Z"),
    ("^[\\]\\[]$", ["]", "["], ["\\"], "^[\\]\\[]\\Z"),
    ("^[一-龥]{2}$", ["中文", "李明"], ["中", "ab", "中文字"], "^[一-龥]{2}\\Z"),
    ("^[😀-😂]$", ["😁"], ["😃"], "^[😀-😂]\\Z"),
    ("^[^]$", ["a", "\n"], ["", "ab"], "^[\\s\\S]\\Z"),
    # ECMA's \d \w \s and . are not Python's
    ("^\\d+$", ["0", "42"], ["", "৪২", "٣", "a"], "^[0-9]+\\Z"),
    ("^\\D$", ["a", "৪", "\n"], ["5"], "^[^0-9]\\Z"),
    ("^\\w+$", ["a_Z9"], ["é", "-", "ǅ"], "^[A-Za-z0-9_]+\\Z"),
    ("^\\W$", ["é", "-", '"'], ["a", "_"], "^[^A-Za-z0-9_]\\Z"),
    (
        "^\\s$",
        [" ", "\t", "\n", "\x0b", "\f", "\r", "\xa0", "\u2028", "\ufeff", "\u3000", "\u202f"],
        ["\x01", "\x1c", "\u200b", "\u2013", "a", ""],
        "^[\\t\\n\\x0b\\f\\r \\xa0\\u1680\\u2000-\\u200a"
        "\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]\\Z",
    ),
    ("^\\S+$", ["a\x01\x1c"], [" ", "a b", "\ufeff"], None),
    (
        "^.$",
        ["a", '"', "\\", "\t", "\x00", "é", "→", "😀", "\u2027"],
        ["\n", "\r", "\u2028", "\u2029", ""],
        None,
    ),
    ("^[\\d\\s]+$", ["1 2\n"], ["1a"], "^[0-9\\s]+\\Z"),
    ("^[^\\d]$", ["a", "৪"], ["1"], "^[^0-9]\\Z"),
    # Unicode properties (u flag semantics)
    ("\\p{Letter}cole", ["école", "ecole", "l'école"], ["ÉCOLE", "1cole", "cole"], None),
    ("^\\p{digit}+$", ["42", "৪২"], ["-%#", ""], None),
    ("^\\P{L}$", ["1", " "], ["a", "é"], None),
    ("^[\\p{Lu}\\d]+$", ["AÉ1"], ["a"], None),
    # groups, alternation, quantifiers
    ("^(ab|cd)+$", ["ab", "abcdab"], ["", "abc", "ac"], "^(ab|cd)+\\Z"),
    ("^(?:a|bc)?d$", ["d", "ad", "bcd"], ["abcd", "bd"], "^(?:a|bc)?d\\Z"),
    ("^a{3}$", ["aaa"], ["aa", "aaaa"], "^a{3}\\Z"),
    ("^a{2,}$", ["aa", "aaaaa"], ["a"], "^a{2,}\\Z"),
    ("^(a|b){1,3}$", ["a", "bab"], ["", "abab"], "^(a|b){1,3}\\Z"),
    ("^a{0,2}b$", ["b", "ab", "aab"], ["aaab"], "^a{0,2}b\\Z"),
    ("^a*?b+?$", ["b", "aabb"], ["ba"], "^a*?b+?\\Z"),
    ("^(a*)*b$", ["b", "aab"], ["a"], "^(a*)*b\\Z"),
    ("^(a?|b*)+c$", ["c", "abbc", "bbac"], ["cc"], "^(a?|b*)+c\\Z"),
    ("^(a*b*)*$", ["", "abba"], ["c"], "^(a*b*)*\\Z"),
    ("^(?<year>\\d{4})-(\\d{2})$", ["2024-01"], ["2024-1"], "^(?P<year>[0-9]{4})-([0-9]{2})\\Z"),
    ("^\\(\\)\\{\\}\\*\\+\\?\\.$", ["(){}*+?."], ["(){}*+?a"], "^\\(\\)\\{\\}\\*\\+\\?\\.\\Z"),
    # anchors in alternatives and groups
    ("^a|b$", ["a", "ax", "b", "xb"], ["xa", "bx", ""], "^a|b\\Z"),
    ("(^|x)y", ["y", "yz", "xy", "axy"], ["ay", ""], SAME),
    ("^(a$|b)", ["a", "b", "bc"], ["ac", "cb"], "^(a\\Z|b)"),
    ("(^a|b)$", ["a", "cb"], ["ab_", "ca"], "(^a|b)\\Z"),
    ("x*^y", ["y", "yy"], ["xy", "zy"], SAME),
    ("(?:^a)?b", ["ab", "b", "xb"], ["a", ""], SAME),
    # anchors inside repetitions
    ("^([^,]+(,|$)){3,}$", ["a,b,c", "a,b,c,", "a,b,c,d"], ["a,b", "a,b,", "a,,c"], None),
    ("(^a)*b", ["b", "ab", "xab", "aab"], ["a", ""], SAME),
    ("(^|x)+y", ["y", "xy", "zxxy"], ["zy", "x"], SAME),
    ("(^a|b)+$", ["a", "ab", "abb", "cb"], ["ac", "ca", "aba"], "(^a|b)+\\Z"),
    ("^(a$|b){2}", ["ba", "bb", "bbc"], ["ab", "a", "b"], "^(a\\Z|b){2}"),
    (
        "^(\\/?([a-z]*)($|\\/))*$",
        ["", "a/b", "/a/", "a"],
        ["a.b", "A/"],
        "^(/?([a-z]*)(\\Z|/))*\\Z",
    ),
    # case-insensitive flag, Python style
    ("(?i)^abc$", ["abc", "ABC", "aBc"], ["abd"], "(?i)^abc\\Z"),
    ("^(?i:k)x$", ["kx", "Kx", "\u212ax"], ["kX"], "^(?i:k)x\\Z"),
    ("(?i)^[^a]$", ["b"], ["a", "A"], "(?i)^[^a]\\Z"),
    # common real-world patterns
    ("^[A-Z]{2}-\\d{3}$", ["AB-123"], ["AB-12", "ab-123", "AB-1234"], "^[A-Z]{2}-[0-9]{3}\\Z"),
    (
        "^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$",
        ["a.b@example.com"],
        ["a@b", "@x.com", "a b@x.com"],
        "^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}\\Z",
    ),
    ("^\\+?[1-9]\\d{1,14}$", ["+8613800138000", "12"], ["+0123", "1"], "^\\+?[1-9][0-9]{1,14}\\Z"),
    (
        "^(\\([0-9]{3}\\))?[0-9]{3}-[0-9]{4}$",
        ["(888)555-1212", "555-1212"],
        ["(888)-555-1212"],
        SAME,
    ),
]


def _python(case_pattern: str, python: str | None) -> str | None:
    return case_pattern if python == SAME else python


@pytest.mark.parametrize(("pattern", "good", "bad", "python"), CASES, ids=[c[0] for c in CASES])
def test_pattern_table(
    grammar_engine: Any, pattern: str, good: list[str], bad: list[str], python: str | None
) -> None:
    grammar = string_grammar(pattern)
    assert grammar_engine.grammar_error(grammar) is None, grammar
    reference = _python(pattern, python)
    for s in good:
        assert accepts(grammar_engine, grammar, encoded(s)), (pattern, s, grammar)
        if reference is not None:
            assert re.search(reference, s), ("the table is wrong", reference, s)
    for s in bad:
        assert not accepts(grammar_engine, grammar, encoded(s)), (pattern, s, grammar)
        if reference is not None:
            assert not re.search(reference, s), ("the table is wrong", reference, s)


@pytest.mark.parametrize(("pattern", "good", "bad", "python"), CASES, ids=[c[0] for c in CASES])
def test_to_python_regex_has_ecma_semantics(
    pattern: str, good: list[str], bad: list[str], python: str | None
) -> None:
    # The same table, through Python's matcher: what validation after generation relies on.
    compiled = re.compile(to_python_regex(pattern))
    for s in good:
        assert compiled.search(s), (pattern, s, compiled.pattern)
    for s in bad:
        assert not compiled.search(s), (pattern, s, compiled.pattern)


def test_to_python_regex_keeps_what_grammars_refuse() -> None:
    assert re.search(to_python_regex("^(?=.*\\d)\\w+$"), "a1")
    assert not re.search(to_python_regex("^(?=.*\\d)\\w+$"), "é1")
    assert re.search(to_python_regex("(?<q>['\"]).*\\k<q>"), "'a'")
    assert not re.search(to_python_regex("(?<q>['\"]).*\\k<q>"), "'a\"")
    assert re.search(to_python_regex("\\bé"), "xé")  # ASCII word boundary: é is not a word char
    assert not re.search(to_python_regex("\\Bé"), "xé")
    with pytest.raises(SchemaError):
        to_python_regex("(")


def test_no_case_mappings_above_the_scanned_limit() -> None:
    # _cased_code_points scans only below _CASED_LIMIT to stay fast; this Python's Unicode agrees.
    from qwenjson.schema.regex_charsets import _CASED_LIMIT

    assert not [
        cp
        for cp in range(_CASED_LIMIT, 0x110000)
        if chr(cp).lower() != chr(cp) or chr(cp).upper() != chr(cp)
    ]


ECMA_VALIDITY = [
    ("(?<name>x)\\k<name>", True),
    ("(?<=a+)b", True),  # variable-width lookbehind: ECMA-262 yes, Python no
    ("[]", True),
    ("[^]", True),
    ("\\cA\\u{1F600}\\p{Lu}\\P{N}", True),
    ("a*?b+?c??d{2,3}?", True),
    ("[\\-\\b]", True),
    ("^\\/\\.\\*$", True),
    ("(?i)abc", False),
    ("(?P<n>a)", False),
    ("(?#c)", False),
    ("(?>a)", False),
    ("a*+", False),
    ("a{2}+", False),
    ("\\a", False),
    ("\\-", False),  # only inside a class with the u flag
    ("\\A\\Z", False),
    ("\\01", False),
    ("a{,2}", False),
    ("(", False),
    ("^(abc]", False),
]


@pytest.mark.parametrize(("pattern", "valid"), ECMA_VALIDITY, ids=[p for p, _ in ECMA_VALIDITY])
def test_is_ecma_regex(pattern: str, valid: bool) -> None:
    assert is_ecma_regex(pattern) is valid


@pytest.mark.corpus
def test_is_ecma_regex_on_the_suite(shared_dir: Path) -> None:
    base = shared_dir / "corpus/json-schema-test-suite/draft2020-12/optional/format"
    checked = 0
    for name in ("regex.json", "ecmascript-regex.json"):
        for group in json.loads((base / name).read_text(encoding="utf-8")):
            for case in group["tests"]:
                if isinstance(case["data"], str):
                    assert is_ecma_regex(case["data"]) is case["valid"], case["description"]
                    checked += 1
    assert checked >= 10


def test_only_the_canonical_encoding_is_generated(grammar_engine: Any) -> None:
    # \u escapes for characters JSON writes as themselves, or \/ for /, would be wasted tokens.
    grammar = string_grammar("^[^a]$")
    assert accepts(grammar_engine, grammar, '"/"')
    assert not accepts(grammar_engine, grammar, '"\\/"')
    assert not accepts(grammar_engine, grammar, '"\\u0062"')
    assert not accepts(grammar_engine, grammar, '"\\u000a"')  # the canonical form is \n
    assert accepts(grammar_engine, grammar, '"\\u000b"')
    assert not accepts(grammar_engine, grammar, '"\\u000B"')  # json.dumps writes lowercase hex
    assert not accepts(grammar_engine, grammar, '"\n"')  # a raw control character is not JSON


REFUSED = [
    ("^(?=.*\\d)\\w+$", "lookahead"),
    ("(?!a)b", "lookahead"),
    ("(?<=a)b", "lookbehind"),
    ("(?<!a)b", "lookbehind"),
    ("(a)\\1", "backreference"),
    ("(?<n>a)\\k<n>", "backreference"),
    ("\\bword\\b", "word boundary"),
    ("a\\B", "word boundary"),
    ("a*+", "possessive"),
    ("(?>a)", "atomic"),
    (f"^a{{{MAX_REPEAT_BOUND + 1}}}$", "repetition bound"),
    (f"^a{{1,{MAX_REPEAT_BOUND + 1}}}$", "repetition bound"),
    ("(?m)^a$", "multiline"),
    ("^\\p{Script=Greek}$", "Unicode property"),
    ("[]", "never matches"),
    ("^(a$|b){17}", "more than 16 copies"),
    ("a^b", "matches no string"),
    ("^a{,2}$", "{,n}"),
    ("^[^\\s\\S]$", "matches no string"),
]


@pytest.mark.parametrize(("pattern", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refusals_are_typed_and_say_why(pattern: str, reason: str) -> None:
    with pytest.raises(UnsupportedKeywordError) as info:
        regex_to_gbnf(pattern, "p-")
    assert info.value.keyword == "pattern"
    assert reason.lower() in str(info.value).lower()


@pytest.mark.parametrize(
    "pattern", ["(", "a)", "[a", "a**", "x{2,1}", "\\", "\\q", "\\A", "\\Z", "\\u{110000}"]
)
def test_invalid_regex_is_a_schema_error(pattern: str) -> None:
    with pytest.raises(SchemaError) as info:
        regex_to_gbnf(pattern, "p-")
    assert not isinstance(info.value, UnsupportedKeywordError)
    assert "invalid regular expression" in str(info.value)


def test_no_warnings_from_python_only_syntax() -> None:
    # Python warns about "possible nested sets"; ECMA has none, so the plain reading is right.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        regex_to_gbnf("^[[a]--]$", "p-")


def test_pathological_sizes_end_cleanly() -> None:
    # Big inputs give a grammar or a typed refusal, never a crash or a quadratic stall.
    expr, rules = regex_to_gbnf("^" + "ab" * 50_000 + "$", "p-")
    assert (expr + "".join(rules.values())).count("ab") == 50_000
    expr, rules = regex_to_gbnf("^" + "[a-z0-9]" * 5_000 + "$", "p-")
    assert len(rules) <= 1
    with pytest.raises(UnsupportedKeywordError, match="nested too deeply"):
        regex_to_gbnf("(" * 5_000 + "a" + ")" * 5_000, "p-")


def test_rules_carry_the_prefix_and_output_is_deterministic() -> None:
    pattern = '^[^a"]+ [^\\s]* .$'
    expr, rules = regex_to_gbnf(pattern, "root-3-pattern")
    assert rules
    assert all(name.startswith("root-3-pattern") for name in rules)
    assert (expr, rules) == regex_to_gbnf(pattern, "root-3-pattern")
    # One rule per distinct character set, referenced wherever the set recurs.
    expr2, rules2 = regex_to_gbnf("^[^a]x[^a]y[^a]$", "p-")
    assert len(rules2) == 1
    assert expr2.count(next(iter(rules2))) == 3


def test_simple_patterns_stay_simple() -> None:
    assert regex_to_gbnf("^[0-9]{3}$", "p") == ("[0-9]{3}", {})
    assert regex_to_gbnf("abc", "p") == ('json-char* "abc" json-char*', {})
    assert regex_to_gbnf("^$", "p") == ('""', {})


@pytest.mark.parametrize(
    "pattern",
    ["^([a-z]{1,100}\\.){1,100}$", "^(a{0,999}b{0,999})*$", "^((x{0,50}){0,50}){2,20}$"],
)
def test_nested_counted_repetitions_fit_llama_cpp(grammar_engine: Any, pattern: str) -> None:
    # llama.cpp refuses a quantified group once (rules generated inside) × count reaches 2,000.
    grammar = string_grammar(pattern)
    assert grammar_engine.grammar_error(grammar) is None, grammar
    good = {"^([a-z]{1,100}\\.){1,100}$": "abc." * 100, "^(a{0,999}b{0,999})*$": "ab" * 600}
    if pattern in good:
        assert accepts(grammar_engine, grammar, encoded(good[pattern]))
        assert not accepts(grammar_engine, grammar, encoded(good[pattern] + "!"))


def test_expr_composes_in_a_sequence(grammar_engine: Any) -> None:
    # The compiler puts expr between other symbols; a top-level alternation must not leak.
    expr, rules = regex_to_gbnf("^a$|^b$", "p-")
    grammar = f'root ::= "\\"" {expr} "\\"" "!"\n{JSON_CHAR_RULE}\n' + "".join(
        f"{n} ::= {b}\n" for n, b in rules.items()
    )
    assert accepts(grammar_engine, grammar, '"a"!')
    assert accepts(grammar_engine, grammar, '"b"!')
    assert not accepts(grammar_engine, grammar, '"a"')


def test_the_parser_shapes_this_module_relies_on() -> None:
    # Pins the private re._parser behaviour regex_tree.py builds on (see the comment there).
    import re._constants as c  # type: ignore[import-not-found]
    import re._parser as p  # type: ignore[import-not-found]

    assert list(p.parse("a|b")) == [(c.IN, [(c.LITERAL, 97), (c.LITERAL, 98)])]
    assert list(p.parse("[^a-c\\d]")) == [
        (c.IN, [(c.NEGATE, None), (c.RANGE, (97, 99)), (c.CATEGORY, c.CATEGORY_DIGIT)])
    ]
    tree = p.parse("(?i:x)y{2,}?z*+")
    assert [op for op, _ in tree] == [
        c.SUBPATTERN,
        c.MIN_REPEAT,
        c.POSSESSIVE_REPEAT,
    ]
    assert tree[0][1][1] == c.SRE_FLAG_IGNORECASE
    assert tree[1][1][:2] == (2, c.MAXREPEAT)
    assert p.parse("(?i)a").state.flags & c.SRE_FLAG_IGNORECASE
    assert [op for op, _ in p.parse("^(?=a)(?<!b)(a)\\1\\b$")] == [
        c.AT,
        c.ASSERT,
        c.ASSERT_NOT,
        c.SUBPATTERN,
        c.GROUPREF,
        c.AT,
        c.AT,
    ]


# Characters that stress the encoding: JSON escapes, controls, line separators, emoji, CJK.
# (Up to U+3FFFF: SmolLM2's vocabulary has no token for the UTF-8 lead bytes of planes 4-16.)
_TRICKY = st.sampled_from(
    [
        *['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x0b", "\x1f", "\x7f"],
        *["/", "\u2028", "\u2029", "\ufeff", "😀", "👩", "\u200d", "中", "文", "é", "-", "^"],
        *["]", "[", "$", "."],
    ]
)
_TEXT = st.text(
    st.one_of(_TRICKY, st.characters(exclude_categories=["Cs"], max_codepoint=0x3FFFF)),
    min_size=0,
    max_size=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(s=_TEXT)
def test_escaped_literal_round_trips(grammar_engine: Any, s: str) -> None:
    grammar = string_grammar("^" + re.escape(s) + "$")
    assert accepts(grammar_engine, grammar, encoded(s))
    assert not accepts(grammar_engine, grammar, encoded(s + "x"))
    if s:
        assert not accepts(grammar_engine, grammar, encoded(s[:-1]))
        # The same value spelled with \u escapes is not the canonical form.
        ascii_form = json.dumps(s, ensure_ascii=True)
        if ascii_form != encoded(s):
            assert not accepts(grammar_engine, grammar, ascii_form)


# Patterns whose meaning is the same in ECMA-262 and Python (given strings without "\n" before
# the end, where Python's $ differs): random strings must get the same verdict from both.
_AGREEING = ["a+b", "^(ab|b)*$", '^[^a"]*\\\\', "(^|b)a$", '^a?b{1,2}$|^"', "[\\x00-\\x08]"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pattern=st.sampled_from(_AGREEING), s=st.text('ab"\\\x01\x05 ', max_size=6))
def test_agrees_with_python_re(grammar_engine: Any, pattern: str, s: str) -> None:
    grammar = string_grammar(pattern)
    assert accepts(grammar_engine, grammar, encoded(s)) == bool(re.search(pattern, s))


# Random regexes built only from constructs that mean the same in ECMA-262 and Python (with `$`
# written as Python's `\Z`), over a small alphabet that includes JSON's escaped characters.
_ATOMS = st.sampled_from(["a", "b", '"', "\\\\", "\\n", ".", "[ab]", "[^a]", '[a-c"]', "\\d"])


def _regex_strategy() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        quantified = st.tuples(
            inner, st.sampled_from(["*", "+", "?", "{2}", "{0,2}", "{1,}", "*?"])
        ).map(lambda t: f"(?:{t[0]}){t[1]}")
        sequence = st.lists(inner, min_size=2, max_size=3).map("".join)
        alternation = st.lists(inner, min_size=2, max_size=3).map(lambda xs: f"(?:{'|'.join(xs)})")
        anchored = st.tuples(
            st.sampled_from(["^", "$", ""]), inner, st.sampled_from(["^", "$", ""])
        )
        return quantified | sequence | alternation | anchored.map("".join)

    return st.recursive(_ATOMS | st.just(""), extend, max_leaves=6)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pattern=_regex_strategy(),
    strings=st.lists(st.text('ab"\\\n1c', max_size=5), min_size=1, max_size=6),
)
def test_random_regexes_agree_with_python(
    grammar_engine: Any, pattern: str, strings: list[str]
) -> None:
    python = re.compile(pattern.replace("$", "\\Z"))
    try:
        grammar = string_grammar(pattern)
    except UnsupportedKeywordError as e:
        # The only refusal such a pattern can earn: it matches nothing at all.
        assert "matches no string" in str(e)
        assert not any(python.search(s) for s in strings)
        return
    for s in strings:
        assert accepts(grammar_engine, grammar, encoded(s)) == bool(python.search(s)), (pattern, s)
