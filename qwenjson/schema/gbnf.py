"""GBNF building blocks shared by the schema compiler, the regex translator and the formats.

GBNF is llama.cpp's grammar format. Everything here produces text that llama.cpp's own parser
(``llama_grammar_init_impl``) accepts: literals in double quotes, character classes in brackets,
rule names made of ``[a-zA-Z0-9-]``.

Strings inside JSON are produced in canonical form, the form ``json.dumps(ensure_ascii=False)``
writes: every character stands for itself except ``"`` and ``\\`` and the control characters
U+0000–U+001F, which are escaped (``\\n`` and friends where JSON has a short escape, ``\\u00XX``
otherwise). One encoding per character keeps the model from wasting tokens on ``\\u`` escapes
and makes the grammar's length counts exact: one ``char`` is one character of the decoded string.
"""

from __future__ import annotations

import re

_SHORT_ESCAPES = {"\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", '"': '"', "\\": "\\"}

# One character of a JSON string's content, in canonical form.
JSON_CHAR_RULE = 'json-char ::= [^"\\\\\\x00-\\x1F] | "\\\\" ["\\\\bfnrt] | "\\\\u00" [01] [0-9a-f]'


def gbnf_escape_char(ch: str, in_class: bool = False) -> str:
    """Escape one code point for use inside a GBNF literal (or a character class)."""
    cp = ord(ch)
    if ch == "\\":
        return "\\\\"
    if ch == '"' and not in_class:
        return '\\"'
    if in_class and ch in "]^-[":
        # llama.cpp knows no `\^` or `\-` escape: hex escapes are what it parses.
        return f"\\x{cp:02X}"
    if cp < 0x20 or cp == 0x7F:
        return f"\\x{cp:02X}"
    if 0xD800 <= cp <= 0xDFFF:
        # A lone surrogate can't be in UTF-8 text; llama.cpp would reject the literal.
        raise ValueError(f"lone surrogate U+{cp:04X} cannot appear in generated text")
    return ch


def literal(text: str) -> str:
    """A GBNF literal matching exactly ``text`` (raw characters, not JSON-encoded)."""
    return '"' + "".join(gbnf_escape_char(c) for c in text) + '"'


def json_escape_content(value: str) -> str:
    """The canonical JSON encoding of ``value``'s content, without the surrounding quotes."""
    out = []
    for ch in value:
        if ch in _SHORT_ESCAPES:
            out.append("\\" + _SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def json_string_literal(value: str) -> str:
    """A GBNF literal for the JSON string ``value``, quotes included, in canonical form."""
    return literal('"' + json_escape_content(value) + '"')


_RULE_NAME_BAD = re.compile(r"[^a-zA-Z0-9-]+")


def rule_name(hint: str) -> str:
    """A valid GBNF rule name derived from ``hint`` (which may be any text)."""
    name = _RULE_NAME_BAD.sub("-", hint).strip("-")
    return name or "r"
