"""Transitional: the string-built GBNF helpers, until the compiler builds expressions
(``gbnf.py``). Removed once nothing imports them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from qwenjson.schema.gbnf import class_char, gbnf_escape_char, json_escape_content


def literal(text: str) -> str:
    """A GBNF literal matching exactly ``text`` (raw characters, not JSON-encoded)."""
    return '"' + "".join(gbnf_escape_char(c) for c in text) + '"'


def json_string_literal(value: str) -> str:
    """A GBNF literal for the JSON string ``value``, quotes included, in canonical form."""
    return literal('"' + json_escape_content(value) + '"')


def char_class(ranges: Iterable[tuple[int, int]], negated_base: str = "") -> str:
    """A class of the code point ranges; ``negated_base`` (already escaped) makes it ``[^…]``."""
    body = "".join(
        class_char(lo) if lo == hi else f"{class_char(lo)}-{class_char(hi)}" for lo, hi in ranges
    )
    return f"[^{negated_base}{body}]" if negated_base else f"[{body}]"


# ---- expressions -------------------------------------------------------------------------

QUOTE = '"\\""'  # the literal for one `"`

# One whole literal; a rule name.
LITERAL = re.compile(r'^"(?:[^"\\]|\\.)*"$')

IDENT = re.compile(r"[a-zA-Z0-9-]+")


def is_atom(expr: str) -> bool:
    """A rule name or a single literal: usable anywhere without parentheses."""
    return bool(IDENT.fullmatch(expr) or (expr[:1] == '"' and LITERAL.match(expr)))


def seq(*parts: str) -> str:
    """A GBNF sequence, adjacent literals merged ("a" "b" → "ab"), empty parts dropped."""
    out: list[str] = []
    for part in parts:
        if not part:
            continue
        if out and part[0] == '"' and out[-1][-1] == '"':
            head = _LEADING_LITERAL.match(part)
            tail = _TRAILING_LITERAL.search(out[-1])
            if head and tail and not has_bar(part) and not has_bar(out[-1]):
                out[-1] = out[-1][: tail.start()] + tail.group(0)[:-1] + part[1:]
                continue
        out.append(part)
    return " ".join(out)


_LEADING_LITERAL = re.compile(r'^"(?:[^"\\]|\\.)*"(?=\s|$)')

_TRAILING_LITERAL = re.compile(r'(?:^|(?<=\s))"(?:[^"\\]|\\.)*"$')


def _outside_quotes(expr: str) -> Iterator[tuple[int, str, int]]:
    """(index, character, paren depth) of each character outside literals and classes."""
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


def has_bar(expr: str) -> bool:
    return " | " in expr and _has_top_level_bar(expr)


def _has_top_level_bar(expr: str) -> bool:
    return any(c == "|" and depth == 0 for _, c, depth in _outside_quotes(expr))


def group(expr: str) -> str:
    """``expr`` as one atom (parenthesised unless it already is one)."""
    if not expr:
        return '""'
    if is_atom(expr):
        return expr
    if expr.startswith("(") and expr.endswith(")") and _balanced_outer(expr):
        return expr
    return "( " + expr + " )"


def _balanced_outer(expr: str) -> bool:
    # True when the first "(" closes at the very end (so the whole thing is one group).
    last = len(expr) - 1
    return not any(c == ")" and d == 0 and i != last for i, c, d in _outside_quotes(expr))


def alt(alternatives: Iterable[str]) -> str:
    """An alternation of expressions, duplicates removed, order kept."""
    return " | ".join(dict.fromkeys(alternatives))


def repeat(atom: str, lo: int, hi: int | None) -> str:
    if hi is not None and hi < lo:
        # Never hand llama.cpp `{m,n}` with n < m: its parser runs out of memory on it.
        raise ValueError(f"no count between {lo} and {hi}")
    if hi is not None and hi == lo:
        return "" if lo == 0 else atom if lo == 1 else f"{atom}{{{lo}}}"
    if hi is None:
        return {0: f"{atom}*", 1: f"{atom}+"}.get(lo, f"{atom}{{{lo},}}")
    if lo == 0 and hi == 1:
        return f"{atom}?"
    return f"{atom}{{{lo},{hi}}}"


def trie_alternation(texts: list[str]) -> str:
    """Literal alternatives factored on shared prefixes (llama.cpp then keeps few stacks)."""

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
            # Extend the common prefix as far as the whole subgroup agrees.
            end = depth + 1
            shortest = min(len(t) for t in sub)
            while end < shortest and all(t[end] == sub[0][end] for t in sub):
                end += 1
            head = literal(sub[0][depth:end])
            rest = build(sub, end)
            alts.append(seq(head, rest) if rest else head)
        if not alts:
            return ""
        body = " | ".join(alts)
        if ends:
            # Not `( … )?`: llama.cpp refuses a repetition of a group holding 2,000+ rules.
            return "( " + body + ' | "" )'
        return body if len(alts) == 1 else "( " + body + " )"

    return build(sorted(set(texts)), 0)


_GBNF_ESCAPES = {
    "\\": "\\",
    '"': '"',
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "]": "]",
    "[": "[",
    "-": "-",
    "^": "^",
}


def unliteral(lit: str) -> str:
    """The text a GBNF literal (as :func:`gbnf.literal` writes them) matches."""
    body = lit[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            if nxt == "x":
                out.append(chr(int(body[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append(_GBNF_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)
