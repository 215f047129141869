"""GBNF for the schema compiler, the regex translator and the formats: the expressions grammars
are built from, and the one escaper that writes them out.

GBNF is llama.cpp's grammar format. Everything here produces text that llama.cpp's own parser
(``llama_grammar_init_impl``) accepts: literals in double quotes, character classes in brackets,
rule names made of ``[a-zA-Z0-9-]``.

Strings inside JSON are produced in canonical form, the form ``json.dumps(ensure_ascii=False)``
writes: every character stands for itself except ``"`` and ``\\`` and the control characters
U+0000–U+001F, which are escaped (``\\n`` and friends where JSON has a short escape, ``\\u00XX``
otherwise). One encoding per character keeps the model from wasting tokens on ``\\u`` escapes
and makes the grammar's length counts exact: one ``char`` is one character of the decoded string.

An expression is a value (``Literal``, ``Ref``, ``CharClass``, ``Seq``, ``Alt``, ``Repeat``,
``Group``) built by the helpers here (``seq``, ``alt``, ``group``, ``repeat``, ``optional``,
``trie_alternation``), which merge literals and add parentheses by looking at the structure, never
at text; it knows the rule names it refers to (``refs``) and whether it is an atom. ``str(expr)``
is its GBNF text, written once, when first needed (to deduplicate rules by body, or to write the
grammar out), and never read back. Literal text is escaped by ``_escape`` alone, computed class
members by ``class_char`` alone (fixed classes, like ``[0-9]``, are written in their GBNF
spelling where they are defined).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Final

_SHORT_ESCAPES = {"\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", '"': '"', "\\": "\\"}


def gbnf_escape_char(ch: str, in_class: bool = False) -> str:
    """Escape one code point for use inside a GBNF literal (or a character class)."""
    cp = ord(ch)
    if 0xD800 <= cp <= 0xDFFF:
        # A lone surrogate can't be in UTF-8 text; llama.cpp would reject the literal.
        raise ValueError(f"lone surrogate U+{cp:04X} cannot appear in generated text")
    if in_class:
        return class_char(cp)
    if ch == "\\":
        return "\\\\"
    if ch == '"':
        return '\\"'
    if cp < 0x20 or cp == 0x7F:
        return f"\\x{cp:02X}"
    return ch


def _escape(text: str) -> str:
    """``text`` as written between a GBNF literal's quotes."""
    if text.isprintable():
        # No controls, DEL or surrogates: only `\` and `"` to escape (a key's `"name":`).
        return text.replace("\\", "\\\\").replace('"', '\\"')
    return "".join(gbnf_escape_char(c) for c in text)


def json_escape_content(value: str) -> str:
    """The canonical JSON encoding of ``value``'s content, without the surrounding quotes."""
    if value.isprintable() and '"' not in value and "\\" not in value:
        return value  # the common case (a key, an enum value): nothing JSON escapes
    out = []
    for ch in value:
        if ch in _SHORT_ESCAPES:
            out.append("\\" + _SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


_RULE_NAME_BAD = re.compile(r"[^a-zA-Z0-9-]+")

IDENT = re.compile(r"[a-zA-Z0-9-]+")


def rule_name(hint: str) -> str:
    """A valid GBNF rule name derived from ``hint`` (which may be any text)."""
    name = _RULE_NAME_BAD.sub("-", hint).strip("-")
    return name or "r"


def class_char(cp: int) -> str:
    """One code point inside a GBNF character class, escaped where llama.cpp's parser needs it
    (the one class escaper: the compiler, the regex translator and the formats use it)."""
    ch = chr(cp)
    if cp < 0x80:
        # llama.cpp knows only \x \u \U \t \r \n \\ \" \[ \] as escapes: \x for all punctuation.
        return ch if ch.isalnum() else f"\\x{cp:02X}"
    if unicodedata.category(ch)[0] in "LNPS":
        return ch
    return f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}"


# ---- expressions ---------------------------------------------------------------------------

_NO_REFS: frozenset[str] = frozenset()


class _Expr:
    """What every expression has: ``str()`` gives its GBNF text."""

    __slots__ = ()

    def _write(self, out: list[str]) -> None:
        # Recursion through _write alone (never str() inside): Python 3.11 runs it without the
        # C stack, so only the recursion limit bounds the depth (the compiler raises it).
        out.append(str(self))


# Expressions are values, never changed once built: their fields are Final (mypy refuses an
# assignment). Not frozen dataclasses: those set each field through object.__setattr__ (one
# field 188 ns against 91, three 359 against 98, Python 3.11 here), and a grammar is built of
# up to hundreds of thousands of parts; composites also keep their text once written.


@dataclass(slots=True, eq=True)
class Literal(_Expr):
    """Exactly ``text`` (raw characters; escaped when written)."""

    text: Final[str]
    refs: ClassVar[frozenset[str]] = _NO_REFS

    def __hash__(self) -> int:
        return hash(self.text)

    def __str__(self) -> str:
        return '"' + _escape(self.text) + '"'

    def _write(self, out: list[str]) -> None:
        out.append('"' + _escape(self.text) + '"')  # not str(self): the commonest part, a call less


@dataclass(slots=True, eq=True)
class Ref(_Expr):
    """The rule called ``name``."""

    name: Final[str]
    refs: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.refs = frozenset((self.name,))

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name

    def _write(self, out: list[str]) -> None:
        out.append(self.name)


@dataclass(slots=True, eq=True)
class CharClass(_Expr):
    """One character of a class; ``body`` is the GBNF text between the brackets."""

    body: Final[str]
    negated: Final[bool] = False
    refs: ClassVar[frozenset[str]] = _NO_REFS

    def __hash__(self) -> int:
        return hash(self.body) ^ self.negated

    def __str__(self) -> str:
        return ("[^" if self.negated else "[") + self.body + "]"


class _Composite(_Expr):
    """An expression made of others.

    Two are equal when their GBNF texts are: rules are deduplicated by what llama.cpp will read
    (comparing the structures instead measured slower: hashing every part as it is built, and
    walking equal bodies apart). The text is written the first time it is needed (a rule body's
    when it is looked up, an alternative's when alternatives are deduplicated) and kept there;
    a part written a second time keeps its text too (a key trie's tails, shared by many rules).
    References are collected as the parts are put together.
    """

    __slots__ = ("_text", "refs")
    refs: frozenset[str]  # every rule name used inside
    _text: str | bool  # False: never written; True: written once; then the text

    def _seal(self, children: tuple[Expr, ...]) -> None:
        refs = _NO_REFS
        for child in children:
            more = child.refs
            if more and not more <= refs:
                refs = refs | more if refs else more  # shared, not copied, where it can be
        self.refs = refs
        self._text = False

    def __str__(self) -> str:
        text = self._text
        if type(text) is not str:
            out: list[str] = []
            self._emit(out)
            self._text = text = "".join(out)
        return text

    def _write(self, out: list[str]) -> None:
        text = self._text
        if text is False:
            self._text = True
            self._emit(out)
        else:
            out.append(text if type(text) is str else str(self))

    def _emit(self, out: list[str]) -> None:
        raise NotImplementedError

    def __hash__(self) -> int:
        text = self._text
        return hash(text if type(text) is str else str(self))

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, _Composite) and str(self) == str(other))


@dataclass(slots=True, eq=False)
class _Items(_Composite):
    """Expressions written one after another, ``_BETWEEN`` them."""

    items: Final[tuple[Expr, ...]]
    _BETWEEN: ClassVar[str]

    def __post_init__(self) -> None:
        self._seal(self.items)

    def _emit(self, out: list[str]) -> None:
        items = self.items
        if items:
            items[0]._write(out)
            for item in items[1:]:
                out.append(self._BETWEEN)
                item._write(out)


class Seq(_Items):
    """``items`` one after the other; ``Seq(())`` matches the empty text."""

    __slots__ = ()
    _BETWEEN = " "


class Alt(_Items):
    """One of ``items`` (an Alt among them is written without parentheses: same language)."""

    __slots__ = ()
    _BETWEEN = " | "


@dataclass(slots=True, eq=False)
class Repeat(_Composite):
    """``item`` from ``lo`` to ``hi`` times (``hi`` None: unbounded); ``item`` must be one
    symbol (a literal, rule, class or group)."""

    item: Final[Expr]
    lo: Final[int]
    hi: Final[int | None]

    def __post_init__(self) -> None:
        self._seal((self.item,))

    def _emit(self, out: list[str]) -> None:
        self.item._write(out)
        lo, hi = self.lo, self.hi
        if hi is None:
            out.append({0: "*", 1: "+"}.get(lo, f"{{{lo},}}"))
        elif (lo, hi) == (0, 1):
            out.append("?")
        else:
            out.append(f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}")


@dataclass(slots=True, eq=False)
class Group(_Composite):
    """``item`` in parentheses: ``( item )``, or ``(item)`` when not ``spaced`` (the regex
    translator's and the formats' spelling)."""

    item: Final[Expr]
    spaced: Final[bool] = True

    def __post_init__(self) -> None:
        self._seal((self.item,))

    def _emit(self, out: list[str]) -> None:
        out.append("( " if self.spaced else "(")
        self.item._write(out)
        out.append(" )" if self.spaced else ")")


Expr = Literal | Ref | CharClass | Seq | Alt | Repeat | Group

EMPTY = Seq(())  # the empty text: no symbol at all (dropped from sequences)
QUOTE = Literal('"')


def literal(text: str) -> Literal:
    """A literal matching exactly ``text`` (raw characters, not JSON-encoded)."""
    return Literal(text)


def json_string_literal(value: str) -> Literal:
    """A literal for the JSON string ``value``, quotes included, in canonical form."""
    return Literal('"' + json_escape_content(value) + '"')


def char_class(ranges: Iterable[tuple[int, int]], negated_base: str = "") -> CharClass:
    """A class of the code point ranges; ``negated_base`` (already escaped) makes it ``[^…]``."""
    body = "".join(
        class_char(lo) if lo == hi else f"{class_char(lo)}-{class_char(hi)}" for lo, hi in ranges
    )
    return CharClass(negated_base + body, negated=bool(negated_base))


# One character of a JSON string's content, in canonical form; its escaped forms alone.
JSON_CHAR = Alt(
    (
        CharClass('"\\\\\\x00-\\x1F', negated=True),
        Seq((Literal("\\"), CharClass('"\\\\bfnrt'))),
        Seq((Literal("\\u00"), CharClass("01"), CharClass("0-9a-f"))),
    )
)
JSON_ESCAPE = Alt(JSON_CHAR.items[1:])
JSON_CHAR_RULE = f"json-char ::= {JSON_CHAR}"


def walk(expr: Expr) -> Iterator[Expr]:
    """``expr`` and every expression inside it (not into the rules it refers to)."""
    stack = [expr]
    while stack:
        e = stack.pop()
        yield e
        if isinstance(e, Seq | Alt):
            stack.extend(e.items)
        elif isinstance(e, Repeat | Group):
            stack.append(e.item)


def is_atom(expr: Expr) -> bool:
    """A rule name or a single literal: usable anywhere without parentheses, and never worth a
    rule of its own."""
    return isinstance(expr, Literal | Ref)


def group(expr: Expr) -> Expr:
    """``expr`` as one atom (parenthesised unless it already is one)."""
    if isinstance(expr, Seq) and not expr.items:
        return Literal("")
    if is_atom(expr) or isinstance(expr, Group):
        return expr
    return Group(expr)


def seq(*parts: Expr) -> Expr:
    """A sequence, the literals where two parts meet merged (``"a" "b"`` → ``"ab"``), empty
    parts dropped, an alternation parenthesised."""
    items: list[Expr] = []
    for part in parts:
        if type(part) is Seq:
            new = part.items
            if not new:
                continue
            first = new[0]
            if items and type(first) is Literal and type(items[-1]) is Literal:
                items[-1] = Literal(items[-1].text + first.text)
                items += new[1:]
            else:
                items += new
        elif type(part) is Literal and items and type(items[-1]) is Literal:
            items[-1] = Literal(items[-1].text + part.text)
        else:
            items.append(Group(part) if type(part) is Alt else part)
    return items[0] if len(items) == 1 else Seq(tuple(items))


def alt(alternatives: Iterable[Expr]) -> Expr:
    """An alternation of expressions, duplicates removed, order kept."""
    items = tuple(dict.fromkeys(alternatives))
    if len(items) <= 1:
        return items[0] if items else EMPTY
    return Alt(items)


def repeat(item: Expr, lo: int, hi: int | None) -> Expr:
    """``item`` from ``lo`` to ``hi`` times (``hi`` None: unbounded)."""
    if hi is not None and hi < lo:
        # Never hand llama.cpp `{m,n}` with n < m: its parser runs out of memory on it.
        raise ValueError(f"no count between {lo} and {hi}")
    if hi == lo and lo <= 1:
        return item if lo == 1 else EMPTY
    if not isinstance(item, Literal | Ref | CharClass | Group):
        item = group(item)
    return Repeat(item, lo, hi)


def optional(expr: Expr) -> Expr:
    """``expr`` or nothing: ``expr?``, parenthesised unless an atom."""
    return repeat(group(expr), 0, 1)


def trie_alternation(texts: list[str]) -> Expr:
    """Literal alternatives factored on shared prefixes (llama.cpp then keeps few stacks)."""
    trie = _trie(sorted(set(texts)), 0)
    return EMPTY if trie is None else trie


def _trie(group: list[str], depth: int) -> Expr | None:
    # The alternatives for ``group``'s texts (sorted) past their common ``depth`` characters.
    alts: list[Expr] = []
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
        head = Literal(sub[0][depth:end])
        rest = _trie(sub, end)
        alts.append(head if rest is None else seq(head, rest))
    if not alts:
        return None
    if ends:
        # Not `( … )?`: llama.cpp refuses a repetition of a group holding 2,000+ rules.
        return Group(Alt((*alts, Literal(""))))
    return alts[0] if len(alts) == 1 else Group(Alt(tuple(alts)))
