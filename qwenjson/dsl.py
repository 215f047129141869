"""Concise schema syntax: a few words in, a JSON Schema (draft 2020-12) object out.

A superset of the syntax of simonw/llm's ``--schema 'name, age int'``::

    name, age int 0..150, bio: a short bio
    sentiment positive|neutral|negative
    nickname? str 1..40
    address {street, city, zip? str: postcode}
    born date, email? email, site? url
    people [{name, role: job title}] 1..
    tags [str] ..10
    score float|null 0..1
    "first name": quoted names take any characters
    姓名: 全名，年龄 int 0..150

Grammar (EBNF; spaces and tabs between tokens are ignored; NEWLINE is a line break)::

    schema      = fields ;
    fields      = { sep } field { sep { sep } field } { sep } ;
    sep         = "," | NEWLINE ;
    field       = name [ "?" ] [ typed ] [ ":" description ] ;
    name        = WORD | NUMBER | STRING ;
    typed       = type [ range ] | range ;               (* a bare range means str *)
    type        = base [ "|" "null" ] | enum ;
    base        = "str" | "int" | "float" | "bool" | "text" | "quote"
                | "string" | "integer" | "number" | "boolean"
                | "date" | "time" | "datetime" | "email" | "uri" | "url" | "uuid"
                | "{" fields "}"
                | "[" { NEWLINE } typed { NEWLINE } "]" ;
    enum        = value "|" value { "|" value } | STRING ;
    value       = WORD | NUMBER | STRING | "null" | "true" | "false" ;
    range       = NUMBER ".." [ NUMBER ] | ".." NUMBER ;
    description = STRING | RAW ;

    WORD   = a letter or "_", then letters, digits, marks, "_" (any script: 姓名, नाम, café),
             with single "-" inside ("first-name"); "1080p" is a WORD too
    NUMBER = JSON number: -?digits[.digits][(e|E)[+|-]digits]
    STRING = a JSON string in double quotes, with JSON escapes
    RAW    = the text after ":" up to the end of the line, or up to a "}" or "]" it didn't
             open; in a field list written on one line (the whole schema, or a "{…}" group
             whose "}" is on the line of its "{"), up to the next "," as well. Stripped.

The full-width "，", "：" and "？" that Chinese keyboards type are the same as ",", ":", "?".

Meaning:

- Every field is required unless its name is followed by ``?``. Property order is the order
  written. Every object has ``additionalProperties: false``. No type means ``str``.
- ``str int float bool`` are ``string integer number boolean`` (the long names work too).
- ``date time datetime email uri uuid`` are strings in that JSON Schema ``format``
  (``datetime`` is ``date-time``, ``url`` is ``uri``). Followed by ``|`` and a value other than
  ``null`` they are plain words of an enum: ``contact email|phone``.
- ``{…}`` is a nested object; ``[T]`` a list of T (any type: ``[{…}]``, ``[a|b]``, ``[[int]]``).
- ``a|b|c`` is an enum. Bare words are strings, numbers are numbers, ``null true false`` are
  JSON literals; quote anything else (``"very good"|bad``, ``"int"|"str"``). A single quoted
  string is a one-value enum. The enum's ``type`` follows its values.
- ``text`` and ``quote`` are strings that ``extract`` writes in its own words (a summary) or
  copies from the input: ``"x-grounded": false`` or ``true`` (without either, extract decides
  by the field, see ``qwenjson.grounding``). ``summary text, code quote 1..20``.
- ``T|null`` also allows null.
- A range ``lo..hi`` is inclusive and either end may be left open. It bounds the value of
  ``int`` (integer bounds) and ``float``, the length of ``str`` and the length of lists
  (non-negative integer bounds): ``age int 0..150``, ``title str 1..80``, ``tags [str] 1..5``.
- A description runs as RAW above. To keep a comma in a one-line schema, quote it
  (``bio: "short, funny"``) or write one field per line (as llm does). ``age: int`` is refused
  (it would make "int" a description; write ``age int``).

Errors raise :class:`DslError` (a :class:`~qwenjson.errors.SchemaError`, exit code 3) whose
message names the line and column and shows the line with a caret under the place.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from qwenjson.errors import SchemaError

DRAFT_2020_12: Final = "https://json-schema.org/draft/2020-12/schema"

# DSL type name → JSON Schema type; llm's four short names first, then the long ones.
TYPE_NAMES: Final[Mapping[str, str]] = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
}
# String formats by DSL name (the compiler enforces them in the grammar or checks them after).
FORMAT_NAMES: Final[Mapping[str, str]] = {
    "date": "date",
    "time": "time",
    "datetime": "date-time",
    "date-time": "date-time",
    "email": "email",
    "uri": "uri",
    "url": "uri",
    "uuid": "uuid",
}
# Strings that say how extract writes them (``qwenjson.grounding``): ``text`` is written by
# the model (a summary), ``quote`` is copied from the input.
GROUNDING_NAMES: Final[Mapping[str, bool]] = {"text": False, "quote": True}
_FORMAT_DSL_NAMES: Final[Mapping[str, str]] = {
    "date": "date",
    "time": "time",
    "date-time": "datetime",
    "email": "email",
    "uri": "uri",
    "uuid": "uuid",
}
_DSL_NAMES: Final[Mapping[str, str]] = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
}
# What a range bounds, per type: the value of numbers, the length of strings and lists.
_RANGE_KEYS: Final[Mapping[str, tuple[str, str]]] = {
    "integer": ("minimum", "maximum"),
    "number": ("minimum", "maximum"),
    "string": ("minLength", "maxLength"),
    "array": ("minItems", "maxItems"),
}
_LITERALS: Final[Mapping[str, object]] = {"null": None, "true": True, "false": False}

# Deep enough for any real schema, shallow enough that Python's recursion limit is never hit.
MAX_DEPTH: Final = 64

# Token kinds besides the punctuation, which is its own kind.
_WORD: Final = "word"
_NUMBER: Final = "number"
_STRING: Final = "string"
_NEWLINE: Final = "newline"
_EOF: Final = "end"

# Full-width forms typed by Chinese (and Japanese) input methods.
_FULL_WIDTH: Final[Mapping[str, str]] = {"，": ",", "：": ":", "？": "?"}
_PUNCT: Final = frozenset(",:?|{}[]")
_COMMAS: Final = frozenset(",，")
_OPENERS: Final = frozenset("{[")
_CLOSERS: Final = frozenset("}]")

Schema = dict[str, Any]


class DslError(SchemaError):
    """A concise schema that doesn't parse; ``line`` and ``column`` are 1-based."""

    def __init__(self, problem: str, text: str, offset: int) -> None:
        # An error at the very end points just after the last visible character, not at an
        # empty line after a trailing newline.
        offset = min(offset, len(text.rstrip()))
        line_start = text.rfind("\n", 0, offset) + 1
        line_end = text.find("\n", offset)
        if line_end == -1:
            line_end = len(text)
        self.problem = problem
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - line_start + 1
        self.source_line = text[line_start:line_end].rstrip("\r")
        where = (
            f"line {self.line}, column {self.column}" if "\n" in text else f"column {self.column}"
        )
        caret = _caret_padding(self.source_line[: self.column - 1]) + "^"
        super().__init__(f"{problem} at {where}\n{self.source_line}\n{caret}")


def _caret_padding(before: str) -> str:
    # Terminals draw CJK characters two cells wide and combining marks zero wide: pad to match
    # so the caret sits under the right character.
    out = []
    for ch in before:
        if ch == "\t":
            out.append("\t")
        elif unicodedata.combining(ch):
            continue
        elif unicodedata.east_asian_width(ch) in ("W", "F"):
            out.append("  ")
        else:
            out.append(" ")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # _WORD, _NUMBER, _STRING, _NEWLINE, _EOF, or the punctuation itself ("..", ",")
    start: int
    end: int
    text: str  # the source text ("," for "，")
    value: Any = None  # the decoded STRING (str), the NUMBER (int | float), the WORD (str)


def _is_word_start(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LN" or cat == "Pc"


def _is_word_char(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LMN" or cat == "Pc"


def _is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] != "\n" and text[pos].isspace():
        pos += 1
    return pos


def _scan(text: str, pos: int) -> _Token:
    """Return the token at ``pos`` (after spaces); pure, so the parser can look ahead freely."""
    n = len(text)
    pos = _skip_spaces(text, pos)
    if pos >= n:
        return _Token(_EOF, n, n, "")
    ch = text[pos]
    if ch == "\n":
        return _Token(_NEWLINE, pos, pos + 1, "\n")
    if ch in _FULL_WIDTH:
        ch = _FULL_WIDTH[ch]
        return _Token(ch, pos, pos + 1, ch)
    if ch in _PUNCT:
        return _Token(ch, pos, pos + 1, ch)
    if ch == ".":
        if text.startswith("..", pos):
            return _Token("..", pos, pos + 2, "..")
        raise DslError("unexpected '.' (a range is written lo..hi)", text, pos)
    if ch == '"':
        return _scan_string(text, pos)
    if _is_digit(ch) or (ch == "-" and pos + 1 < n and _is_digit(text[pos + 1])):
        return _scan_number(text, pos)
    if _is_word_start(ch):
        return _scan_word(text, pos)
    raise DslError(f"unexpected character {ch!r}", text, pos)


def _scan_word(text: str, pos: int) -> _Token:
    n = len(text)
    end = pos + 1
    while end < n:
        if _is_word_char(text[end]):
            end += 1
        elif text[end] == "-" and end + 1 < n and _is_word_char(text[end + 1]):
            end += 2
        else:
            break
    return _Token(_WORD, pos, end, text[pos:end], text[pos:end])


def _digits(text: str, pos: int) -> int:
    while pos < len(text) and _is_digit(text[pos]):
        pos += 1
    return pos


def _scan_number(text: str, start: int) -> _Token:
    pos = start + 1 if text[start] == "-" else start
    pos = _digits(text, pos)
    integral = True
    # "0..5" is 0 then "..": a fraction needs a digit right after the dot.
    if pos + 1 < len(text) and text[pos] == "." and _is_digit(text[pos + 1]):
        pos = _digits(text, pos + 1)
        integral = False
    if pos < len(text) and text[pos] in "eE":
        exp = pos + 1
        if exp < len(text) and text[exp] in "+-":
            exp += 1
        if exp < len(text) and _is_digit(text[exp]):
            pos = _digits(text, exp)
            integral = False
    if pos < len(text) and _is_word_char(text[pos]):
        if integral and text[start] != "-":
            return _scan_word(text, start)  # "1080p", "2nd_place": a word that starts with digits
        raise DslError(f"unexpected character {text[pos]!r} after a number", text, pos)
    source = text[start:pos]
    value: int | float = int(source) if integral else float(source)
    if isinstance(value, float) and not math.isfinite(value):
        raise DslError(f"number {source} is out of range", text, start)
    return _Token(_NUMBER, start, pos, source, value)


def _scan_string(text: str, start: int) -> _Token:
    pos = start + 1
    while pos < len(text):
        ch = text[pos]
        if ch == "\\":
            pos += 2
        elif ch == '"':
            source = text[start : pos + 1]
            try:
                value = json.loads(source, strict=False)
            except json.JSONDecodeError as exc:
                raise DslError(f"bad escape in string: {exc.msg}", text, start + exc.pos) from None
            return _Token(_STRING, start, pos + 1, source, value)
        elif ch == "\n":
            break
        else:
            pos += 1
    raise DslError('unterminated string (a closing " is missing)', text, start)


def _read_raw(text: str, pos: int, commas_end: bool) -> tuple[str, int]:
    """Read a RAW description from ``pos``: return its stripped text and where it stopped."""
    depth = 0
    end = pos
    while end < len(text):
        ch = text[end]
        if ch == "\n":
            break
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            if depth == 0:
                break
            depth -= 1
        elif ch in _COMMAS and commas_end and depth == 0:
            break
        end += 1
    return text[pos:end].strip(), end


def _describe(tok: _Token) -> str:
    if tok.kind == _EOF:
        return "the end"
    if tok.kind == _NEWLINE:
        return "a line break"
    return repr(tok.text)


@dataclass(frozen=True, slots=True)
class _Range:
    low: int | float | None
    high: int | float | None
    low_integral: bool
    high_integral: bool
    start: int


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    # -- tokens ----------------------------------------------------------------------------

    def peek(self) -> _Token:
        return _scan(self.text, self.pos)

    def peek_after(self, tok: _Token) -> _Token:
        return _scan(self.text, tok.end)

    def advance(self) -> _Token:
        tok = self.peek()
        self.pos = tok.end
        return tok

    def fail(self, problem: str, offset: int) -> DslError:
        return DslError(problem, self.text, offset)

    # -- grammar ---------------------------------------------------------------------------

    def parse(self) -> Schema:
        if not self.text.strip():
            raise self.fail("empty schema: expected fields such as 'name, age int'", 0)
        one_line = "\n" not in self.text.strip()
        properties, required = self.fields(None, one_line)
        return {"$schema": DRAFT_2020_12, **_object(properties, required)}

    def fields(self, closer: str | None, one_line: bool) -> tuple[Schema, list[str]]:
        """``fields``, then ``closer`` (or the end): the properties and required names."""
        properties: Schema = {}
        required: list[str] = []
        while True:
            tok = self.peek()
            if tok.kind in (",", _NEWLINE):
                self.advance()
                continue
            if tok.kind == closer or (closer is None and tok.kind == _EOF):
                if not properties:
                    raise self.fail("expected at least one field", tok.start)
                self.advance()
                return properties, required
            if tok.kind == _EOF:
                raise self.fail(f"expected {closer!r} to close the object", tok.start)
            name_tok = tok
            name, optional, schema = self.field(one_line)
            if name in properties:
                raise self.fail(f"duplicate field name {name!r}", name_tok.start)
            properties[name] = schema
            if not optional:
                required.append(name)
            after = self.peek()
            if after.kind not in (",", _NEWLINE, _EOF) and after.kind != closer:
                ends = f"',', a line break or {closer!r}" if closer else "',' or a line break"
                raise self.fail(
                    f"expected {ends} after field {name!r}, found {_describe(after)}",
                    after.start,
                )

    def field(self, one_line: bool) -> tuple[str, bool, Schema]:
        tok = self.advance()
        if tok.kind not in (_WORD, _NUMBER, _STRING):
            hint = ""
            if tok.kind == "{" and self.depth == 0:
                hint = " (the top level is already an object: write 'a, b int', not '{a, b int}')"
            raise self.fail(f"expected a field name, found {_describe(tok)}{hint}", tok.start)
        name: str = tok.value if tok.kind == _STRING else tok.text
        optional = False
        if self.peek().kind == "?":
            self.advance()
            optional = True
        schema: Schema = {"type": "string"}
        if self.peek().kind in (_WORD, _NUMBER, _STRING, "{", "[", ".."):
            schema = self.typed()
        nxt = self.peek()
        if nxt.kind == "?":
            raise self.fail(f"'?' goes right after the field name: {tok.text}? …", nxt.start)
        if nxt.kind == ":":
            self.advance()
            schema["description"] = self.description(name, one_line, nxt)
        return name, optional, schema

    def description(self, name: str, one_line: bool, colon: _Token) -> str:
        start = _skip_spaces(self.text, self.pos)
        if self.text.startswith('"', start):
            tok = self.advance()
            value: str = tok.value
            return value
        value, end = _read_raw(self.text, start, commas_end=one_line)
        if not value:
            raise self.fail("expected a description after ':'", colon.end)
        if value in TYPE_NAMES:
            raise self.fail(
                f"{value!r} after ':' would be a description, not a type: write "
                f"'{name} {value}' for a typed field, or quote the description",
                start,
            )
        self.pos = end
        return value

    def typed(self) -> Schema:
        tok = self.peek()
        if tok.kind == ".." or (tok.kind == _NUMBER and self.peek_after(tok).kind == ".."):
            schema: Schema = {"type": "string"}
            kind = "string"
        else:
            schema, kind = self.type_expr()
        tok = self.peek()
        if tok.kind in (_NUMBER, ".."):
            self.apply_range(schema, kind, self.range_expr())
        return schema

    def type_expr(self) -> tuple[Schema, str]:
        """Parse ``type``; return the schema and what a range would bound (or "enum")."""
        tok = self.peek()
        if tok.kind == "{":
            schema, kind = self.object_type(), "object"
        elif tok.kind == "[":
            schema, kind = self.array_type(), "array"
        elif tok.kind == _WORD and tok.text in TYPE_NAMES:
            self.advance()
            kind = TYPE_NAMES[tok.text]
            schema = {"type": kind}
        elif tok.kind == _WORD and tok.text in FORMAT_NAMES and not self.starts_enum(tok):
            self.advance()
            kind = tok.text  # a range on it is refused, naming it
            schema = {"type": "string", "format": FORMAT_NAMES[tok.text]}
        elif tok.kind == _WORD and tok.text in GROUNDING_NAMES and not self.starts_enum(tok):
            self.advance()
            kind = "string"
            schema = {"type": "string", "x-grounded": GROUNDING_NAMES[tok.text]}
        elif tok.kind in (_WORD, _NUMBER, _STRING):
            return self.enum_type(), "enum"
        else:
            raise self.fail(f"expected a type, found {_describe(tok)}", tok.start)
        bar = self.peek()
        if bar.kind == "|":
            self.advance()
            null = self.advance()
            if not (null.kind == _WORD and null.text == "null"):
                raise self.fail(
                    "only 'null' can follow '|' after a type (for an enum, quote the values)",
                    null.start,
                )
            schema["type"] = [schema["type"], "null"]
            more = self.peek()
            if more.kind == "|":
                raise self.fail(
                    f"a type can only be combined with null; for an enum, quote the values: "
                    f'"{tok.text}"|null|…',
                    more.start,
                )
        return schema, kind

    def starts_enum(self, tok: _Token) -> bool:
        """Whether a format name starts an enum: ``email|phone`` (but ``email|null``)."""
        bar = self.peek_after(tok)
        if bar.kind != "|":
            return False
        after = _scan(self.text, bar.end)
        return not (after.kind == _WORD and after.text == "null")

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} levels deep", tok.start)

    def object_type(self) -> Schema:
        brace = self.advance()
        self.enter(brace)
        one_line = not _spans_lines(self.text, brace.end)
        properties, required = self.fields("}", one_line)
        self.depth -= 1
        return _object(properties, required)

    def array_type(self) -> Schema:
        bracket = self.advance()
        self.enter(bracket)
        self.skip_newlines()
        if self.peek().kind == "]":
            raise self.fail("expected a type inside '[ ]', such as [str]", self.peek().start)
        items = self.typed()
        self.skip_newlines()
        close = self.advance()
        if close.kind != "]":
            raise self.fail(f"expected ']', found {_describe(close)}", close.start)
        self.depth -= 1
        return {"type": "array", "items": items}

    def skip_newlines(self) -> None:
        while self.peek().kind == _NEWLINE:
            self.advance()

    def enum_type(self) -> Schema:
        values: list[object] = []
        seen: set[tuple[str, object]] = set()
        first = self.peek()
        while True:
            tok = self.advance()
            value = self.enum_value(tok)
            key = (_json_type(value), value)
            if key in seen:
                raise self.fail(f"duplicate enum value {tok.text}", tok.start)
            seen.add(key)
            values.append(value)
            if self.peek().kind != "|":
                break
            self.advance()
        if len(values) == 1 and first.kind != _STRING:
            if first.kind == _WORD and first.text not in _LITERALS:
                problem = (
                    f"unknown type {first.text!r}: use str int float bool date time datetime "
                    "email uri uuid, {…}, [type], or a|b|c for an enum"
                )
            else:
                problem = f"expected a type, found {first.text}; an enum needs two values: a|b"
            raise self.fail(problem, first.start)
        return {"type": _enum_type(values), "enum": values}

    def enum_value(self, tok: _Token) -> object:
        if tok.kind in (_STRING, _NUMBER):
            return tok.value
        if tok.kind == _WORD:
            if tok.text in TYPE_NAMES:
                raise self.fail(
                    f"{tok.text!r} is a type name; quote it to use it as an enum value",
                    tok.start,
                )
            return _LITERALS.get(tok.text, tok.text)
        raise self.fail(f"expected an enum value, found {_describe(tok)}", tok.start)

    def range_expr(self) -> _Range:
        start = self.peek().start
        low = high = None
        low_integral = high_integral = True
        tok = self.advance()
        if tok.kind == _NUMBER:
            low, low_integral = tok.value, _integral(tok.text)
            tok = self.advance()
            if tok.kind != "..":
                raise self.fail(f"expected '..' after {low} (a range is written lo..hi)", tok.start)
        if self.peek().kind == _NUMBER:
            tok = self.advance()
            high, high_integral = tok.value, _integral(tok.text)
        elif low is None:
            raise self.fail("expected a number after '..'", self.peek().start)
        return _Range(low, high, low_integral, high_integral, start)

    def apply_range(self, schema: Schema, kind: str, rng: _Range) -> None:
        keys = _RANGE_KEYS.get(kind)
        if keys is None:
            what = "an enum" if kind == "enum" else kind
            raise self.fail(f"a range can't apply to {what}", rng.start)
        if kind != "number" and not (rng.low_integral and rng.high_integral):
            raise self.fail(f"a range on {kind} needs integer bounds", rng.start)
        if kind in ("string", "array") and any(
            b is not None and b < 0 for b in (rng.low, rng.high)
        ):
            raise self.fail(f"a length range on {kind} can't be negative", rng.start)
        if rng.low is not None and rng.high is not None and rng.low > rng.high:
            raise self.fail(f"empty range: {rng.low} is more than {rng.high}", rng.start)
        if rng.low is not None:
            schema[keys[0]] = rng.low
        if rng.high is not None:
            schema[keys[1]] = rng.high


def _spans_lines(text: str, pos: int) -> bool:
    """Whether the ``{…}`` group whose body starts at ``pos`` is written over several lines.

    Decides whether commas end descriptions inside it. The group is read as a one-line group
    would be (commas end descriptions, so quoted names after them are tokens); if a line break
    comes before its ``}``, it is a multi-line group.
    """
    depth = 1
    try:
        while True:
            tok = _scan(text, pos)
            if tok.kind in (_NEWLINE, _EOF):
                return True
            pos = tok.end
            if tok.kind in _OPENERS:
                depth += 1
            elif tok.kind in _CLOSERS:
                depth -= 1
                if depth == 0:
                    return False
            elif tok.kind == ":" and not text.startswith('"', _skip_spaces(text, pos)):
                pos = _read_raw(text, pos, commas_end=True)[1]
    except DslError:
        return True  # the real parse reports the error


def _object(properties: Schema, required: list[str]) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _enum_type(values: list[object]) -> str | list[str]:
    """The ``type`` of an enum: its values' JSON types in order of first use."""
    types: list[str] = []
    for value in values:
        json_type = _json_type(value)
        if json_type not in types:
            types.append(json_type)
    if "integer" in types and "number" in types:
        types.remove("integer")
    return types[0] if len(types) == 1 else types


def _integral(number_text: str) -> bool:
    return not any(c in number_text for c in ".eE")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def parse_dsl(text: str) -> Schema:
    """Parse the concise schema syntax (see the module docstring) into a JSON Schema.

    Example: ``parse_dsl("name, age int 0..150")`` is an object schema with a required string
    ``name`` and a required integer ``age`` between 0 and 150. Raises :class:`DslError`.
    """
    return _Parser(text).parse()


# -- the inverse -------------------------------------------------------------------------------


class _NotRepresentable(Exception):
    """Internal: the schema has a part the concise syntax can't say."""


def schema_to_dsl(schema: Mapping[str, Any]) -> str | None:
    """Render ``schema`` in the concise syntax, or return None if the syntax can't say it.

    Whenever it returns text, ``parse_dsl`` of that text equals ``schema`` (``parse_dsl`` adds
    ``$schema`` if it was missing). Example: the schema of ``"name, age int 0..150"`` renders
    as that same text.
    """
    try:
        if not isinstance(schema, Mapping):
            raise _NotRepresentable
        body = dict(schema)
        if body.pop("$schema", DRAFT_2020_12) != DRAFT_2020_12 or body.get("type") != "object":
            raise _NotRepresentable
        properties = body["properties"] if isinstance(body.get("properties"), Mapping) else {}
        # llm's rule: with one field per line, commas in descriptions are plain text.
        one_line = len(properties) < 2 or not any(
            isinstance(sub, Mapping) and "description" in sub for sub in properties.values()
        )
        return (", " if one_line else "\n").join(_render_fields(body, one_line))
    except _NotRepresentable:
        return None


def _render_fields(schema: Mapping[str, Any], one_line: bool) -> list[str]:
    if set(schema) != {"type", "properties", "required", "additionalProperties"}:
        raise _NotRepresentable
    properties, required = schema["properties"], schema["required"]
    if (
        schema["additionalProperties"] is not False
        or not isinstance(properties, Mapping)
        or not properties
        or not isinstance(required, list)
        # parse_dsl lists required names in property order
        or required != [name for name in properties if name in required]
        or len(set(required)) != len(required)
    ):
        raise _NotRepresentable
    fields = []
    for name, sub in properties.items():
        if not isinstance(name, str) or not isinstance(sub, Mapping):
            raise _NotRepresentable
        sub = dict(sub)
        description = sub.pop("description", None)
        text = _render_name(name) + ("" if name in required else "?")
        if sub != {"type": "string"}:
            text += " " + _render_typed(sub)
        if description is not None:
            if not isinstance(description, str):
                raise _NotRepresentable
            text += ": " + _render_description(description, one_line)
        fields.append(text)
    return fields


def _render_typed(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return _render_enum(schema)
    schema_type: object = schema.get("type")
    nullable = isinstance(schema_type, list)
    if isinstance(schema_type, list):
        if len(schema_type) != 2 or schema_type[1] != "null":
            raise _NotRepresentable
        schema_type = schema_type[0]
    if not isinstance(schema_type, str):
        raise _NotRepresentable
    rest = dict(schema)
    del rest["type"]
    range_type = schema_type
    if schema_type == "string" and "format" in rest:
        range_type = "format"  # no range with a format
    for key in _RANGE_KEYS.get(range_type, ()):
        rest.pop(key, None)
    if range_type == "format":
        text = _FORMAT_DSL_NAMES.get(rest.pop("format"), "")
        if not text:
            raise _NotRepresentable
    elif schema_type == "object":
        text = "{" + ", ".join(_render_fields({**schema, "type": "object"}, True)) + "}"
        rest = {}  # _render_fields checked the keys
    elif schema_type == "array":
        items = rest.pop("items", None)
        if not isinstance(items, Mapping) or "description" in items:
            raise _NotRepresentable
        text = "[" + _render_typed(items) + "]"
    elif schema_type in _DSL_NAMES:
        text = _DSL_NAMES[schema_type]
    else:
        raise _NotRepresentable
    if rest:
        raise _NotRepresentable
    if nullable:
        text += "|null"
    return text + _render_range(schema, range_type)


def _render_range(schema: Mapping[str, Any], schema_type: str) -> str:
    keys = _RANGE_KEYS.get(schema_type)
    if keys is None or (keys[0] not in schema and keys[1] not in schema):
        return ""
    bounds = [schema.get(key) for key in keys]
    for bound in bounds:
        if bound is None:
            continue
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise _NotRepresentable
        if schema_type != "number" and not isinstance(bound, int):
            raise _NotRepresentable
        if schema_type in ("string", "array") and bound < 0:
            raise _NotRepresentable
        if isinstance(bound, float) and not math.isfinite(bound):
            raise _NotRepresentable
    low, high = bounds
    if low is not None and high is not None and low > high:
        raise _NotRepresentable
    return " " + "..".join("" if b is None else json.dumps(b) for b in bounds)


def _render_enum(schema: Mapping[str, Any]) -> str:
    values = schema["enum"]
    if set(schema) != {"type", "enum"} or not isinstance(values, list) or not values:
        raise _NotRepresentable
    seen = set()
    for value in values:
        if not isinstance(value, str | int | float | bool | None):
            raise _NotRepresentable
        if isinstance(value, float) and not math.isfinite(value):
            raise _NotRepresentable
        seen.add((_json_type(value), value))
    if (
        len(seen) != len(values)
        or (len(values) == 1 and not isinstance(values[0], str))
        or schema["type"] != _enum_type(values)
    ):
        raise _NotRepresentable
    if len(values) == 1:
        return json.dumps(values[0], ensure_ascii=False)  # a lone bare word would be a type
    return "|".join(_render_value(v) for v in values)


def _render_value(value: object) -> str:
    if isinstance(value, str):
        reserved = value in TYPE_NAMES or value in FORMAT_NAMES or value in _LITERALS
        reserved = reserved or value in GROUNDING_NAMES
        if _whole_token_kind(value) == _WORD and not reserved:
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def _render_name(name: str) -> str:
    if _whole_token_kind(name) in (_WORD, _NUMBER):
        return name
    return json.dumps(name, ensure_ascii=False)


def _whole_token_kind(text: str) -> str | None:
    """The kind of token ``text`` is, if it is exactly one token; else None."""
    try:
        tok = _scan(text, 0)
    except DslError:
        return None
    return tok.kind if (tok.start, tok.end) == (0, len(text)) else None


def _render_description(text: str, one_line: bool) -> str:
    if (
        text
        and text == text.strip()
        and not text.startswith('"')
        and text not in TYPE_NAMES
        and _read_raw(text, 0, commas_end=one_line) == (text, len(text))
        and _balanced(text)
        and not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)
    ):
        return text
    return json.dumps(text, ensure_ascii=False)


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
            if depth < 0:
                return False
    return depth == 0
