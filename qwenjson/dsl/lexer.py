"""The concise syntax's tokens: names, numbers, quoted strings, punctuation (full-width too),
and the error that points at a place in the text. The syntax is described in ``qwenjson.dsl``."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from qwenjson.errors import SchemaError
from qwenjson.jsontypes import json_type_of

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
# After a number or date type: a value the model works out rather than reads from the text
# ("x-grounded": false). Numbers and dates are otherwise read from the text (a count of items
# the text lists one by one is in it nowhere).
DERIVED: Final = "derived"
DERIVABLE: Final = frozenset({"integer", "number", "date"})
FORMAT_DSL_NAMES: Final[Mapping[str, str]] = {
    "date": "date",
    "time": "time",
    "date-time": "datetime",
    "email": "email",
    "uri": "uri",
    "uuid": "uuid",
}
DSL_NAMES: Final[Mapping[str, str]] = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
}
# What a range bounds, per type: the value of numbers, the length of strings and lists.
RANGE_KEYS: Final[Mapping[str, tuple[str, str]]] = {
    "integer": ("minimum", "maximum"),
    "number": ("minimum", "maximum"),
    "string": ("minLength", "maxLength"),
    "array": ("minItems", "maxItems"),
}
LITERALS: Final[Mapping[str, object]] = {"null": None, "true": True, "false": False}

# Deep enough for any real schema, shallow enough that Python's recursion limit is never hit.
MAX_DEPTH: Final = 64

# Token kinds besides the punctuation, which is its own kind.
WORD: Final = "word"
NUMBER: Final = "number"
STRING: Final = "string"
NEWLINE: Final = "newline"
EOF: Final = "end"

# Full-width forms typed by Chinese (and Japanese) input methods.
FULL_WIDTH: Final[Mapping[str, str]] = {"，": ",", "：": ":", "？": "?"}
PUNCT: Final = frozenset(",:?|{}[]")
COMMAS: Final = frozenset(",，")
OPENERS: Final = frozenset("{[")
CLOSERS: Final = frozenset("}]")


Schema = dict[str, Any]


class DslError(SchemaError):
    """A concise schema that doesn't parse; ``line`` and ``column`` are 1-based."""

    def __init__(self, problem: str, text: str, offset: int) -> None:
        # An error at the very end points just after the last visible character, not at an
        # empty line after a trailing newline.
        offset = min(offset, len(text.rstrip()))
        # Nor at the line break of a CRLF line: at its carriage return, the line's end.
        while offset > 0 and text[offset - 1] == "\r" and text[offset : offset + 1] in ("\n", ""):
            offset -= 1
        line_start = text.rfind("\n", 0, offset) + 1
        line_end = text.find("\n", offset)
        if line_end == -1:
            line_end = len(text)
        self.offset = offset
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - line_start + 1
        self.source_line = text[line_start:line_end].rstrip("\r")
        where = (
            f"line {self.line}, column {self.column}" if "\n" in text else f"column {self.column}"
        )
        # Shown with its control characters escaped: an ESC would colour the terminal.
        shown = shown_line(self.source_line)
        caret = _caret_padding(shown_line(self.source_line[: self.column - 1])) + "^"
        super().__init__(f"{problem} at {where}\n{shown}\n{caret}")
        self.problem = problem  # (SchemaError's: the message without its place)


def is_control(ch: str) -> bool:
    """Whether ``ch`` is a control character or a line or paragraph separator (U+2028/9)."""
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def shown_line(line: str) -> str:
    """``line`` with its control and line-separating characters escaped (a tab kept)."""
    return "".join(ascii(ch)[1:-1] if ch != "\t" and is_control(ch) else ch for ch in line)


def first_control(text: str) -> int | None:
    """Where ``text`` has a control character other than a tab, a line feed or the CR of a
    CRLF, or a line or paragraph separator (U+2028/9), or None. Read as blanks, they hid line
    breaks: ``name: full name\\rage int`` made ``age`` part of a description."""
    for i, ch in enumerate(text):
        if ch in "\t\n" or (ch == "\r" and text[i + 1 : i + 2] == "\n"):
            continue
        if is_control(ch):
            return i
    return None


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
class Token:
    kind: str  # WORD, NUMBER, STRING, NEWLINE, EOF, or the punctuation itself ("..", ",")
    start: int
    end: int
    text: str  # the source text ("," for "，")
    value: Any = None  # the decoded STRING (str), the NUMBER (int | float), the WORD (str)


def is_word_start(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LN" or cat == "Pc"


def is_word_char(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LMN" or cat == "Pc"


def is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] != "\n" and text[pos].isspace():
        pos += 1
    return pos


def scan(text: str, pos: int) -> Token:
    """Return the token at ``pos`` (after spaces); pure, so the parser can look ahead freely."""
    n = len(text)
    pos = skip_spaces(text, pos)
    if pos >= n:
        return Token(EOF, n, n, "")
    ch = text[pos]
    if ch == "\n":
        return Token(NEWLINE, pos, pos + 1, "\n")
    if ch in FULL_WIDTH:
        ch = FULL_WIDTH[ch]
        return Token(ch, pos, pos + 1, ch)
    if ch in PUNCT:
        return Token(ch, pos, pos + 1, ch)
    if ch == ".":
        if text.startswith("..", pos):
            return Token("..", pos, pos + 2, "..")
        raise DslError("unexpected '.' (a range is written lo..hi)", text, pos)
    if ch == '"':
        return scan_string(text, pos)
    if is_digit(ch) or (ch == "-" and pos + 1 < n and is_digit(text[pos + 1])):
        return scan_number(text, pos)
    if is_word_start(ch):
        return scan_word(text, pos)
    if ch == "#":
        raise DslError("unexpected character '#' (the concise syntax has no comments)", text, pos)
    raise DslError(f"unexpected character {ch!r}", text, pos)


def scan_word(text: str, pos: int) -> Token:
    n = len(text)
    end = pos + 1
    while end < n:
        if is_word_char(text[end]):
            end += 1
        elif text[end] == "-" and end + 1 < n and is_word_char(text[end + 1]):
            end += 2
        else:
            break
    return Token(WORD, pos, end, text[pos:end], text[pos:end])


def _digits(text: str, pos: int) -> int:
    while pos < len(text) and is_digit(text[pos]):
        pos += 1
    return pos


def scan_number(text: str, start: int) -> Token:
    pos = start + 1 if text[start] == "-" else start
    pos = _digits(text, pos)
    integral = True
    # "0..5" is 0 then "..": a fraction needs a digit right after the dot.
    if pos + 1 < len(text) and text[pos] == "." and is_digit(text[pos + 1]):
        pos = _digits(text, pos + 1)
        integral = False
    if pos < len(text) and text[pos] in "eE":
        exp = pos + 1
        if exp < len(text) and text[exp] in "+-":
            exp += 1
        if exp < len(text) and is_digit(text[exp]):
            pos = _digits(text, exp)
            integral = False
    if pos < len(text) and is_word_char(text[pos]):
        if integral and text[start] != "-":
            return scan_word(text, start)  # "1080p", "2nd_place": a word that starts with digits
        raise DslError(f"unexpected character {text[pos]!r} after a number", text, pos)
    source = text[start:pos]
    digits = source.lstrip("-")
    if integral and len(digits) > 1 and digits[0] == "0":
        if text[start] != "-":
            return scan_word(text, start)  # "02134", "007": a code, not a number (JSON's rule)
        raise DslError(f"number {source} has a leading zero (quote it as text)", text, start)
    try:
        value: int | float = int(source) if integral else float(source)
    except ValueError:  # Python's limit on the digits of an int (4300)
        raise DslError(f"number {source[:20]}… has too many digits", text, start) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise DslError(f"number {source} is out of range", text, start)
    mantissa = source.split("e")[0].split("E")[0]
    if value == 0 and any(c in "123456789" for c in mantissa):
        # 1e-400 is 0.0 as a double: `x float 1e-400..` would allow 0, which it says it doesn't.
        raise DslError(f"number {source} is too small for a double (it would be 0)", text, start)
    return Token(NUMBER, start, pos, source, value)


def scan_string(text: str, start: int) -> Token:
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
            if any(_surrogate(c) for c in value):  # "\ud800": a schema must be UTF-8 text
                raise DslError(_SURROGATE_PROBLEM, text, start)
            return Token(STRING, start, pos + 1, source, value)
        elif ch == "\n":
            break
        else:
            pos += 1
    raise DslError('unterminated string (a closing " is missing)', text, start)


_SURROGATE_PROBLEM = "a lone surrogate (a schema must be UTF-8 text)"


def _surrogate(ch: str) -> bool:
    return "\ud800" <= ch <= "\udfff"


def read_raw(text: str, pos: int, commas_end: bool) -> tuple[str, int]:
    """Read a RAW description from ``pos``: return its stripped text and where it stopped.

    A comma inside brackets doesn't end it (``in [0, 1]``); where commas end descriptions, a
    bracket left open would hide every later field of the line in the description, so it is
    refused (quote such a description)."""
    opened: list[int] = []  # where each bracket still open was opened
    end = pos
    while end < len(text):
        ch = text[end]
        if ch == "\n":
            break
        if ch in OPENERS:
            opened.append(end)
        elif ch in CLOSERS:
            if not opened:
                break
            opened.pop()
        elif ch in COMMAS and commas_end and not opened:
            break
        elif _surrogate(ch):
            raise DslError(_SURROGATE_PROBLEM, text, end)
        end += 1
    if opened and commas_end:
        raise DslError(
            f"{text[opened[0]]!r} is not closed in this description (which would run to the end "
            'of the line): close it, or quote the description ("…")',
            text,
            opened[0],
        )
    return text[pos:end].strip(), end


def describe(tok: Token) -> str:
    if tok.kind == EOF:
        return "the end"
    if tok.kind == NEWLINE:
        return "a line break"
    return repr(tok.text)


def enum_type(values: list[object]) -> str | list[str]:
    """The ``type`` of an enum: its values' JSON types in order of first use."""
    types: list[str] = []
    for value in values:
        json_type = value_type(value)
        if json_type not in types:
            types.append(json_type)
    if "integer" in types and "number" in types:
        types.remove("integer")
    return types[0] if len(types) == 1 else types


def value_type(value: object) -> str:
    # A number written with a point or an exponent stays "number", as written (1.0 too).
    return "number" if isinstance(value, float) else json_type_of(value)


# A range's low end as the lexer reads numbers (`1e3..`, `-0.5..`), or none (`..5`).
_RANGE_START = re.compile(r"(-?\d+(\.\d+)?([eE][-+]?\d+)?\s*)?\.\.")
_TYPE_WORD = re.compile(r"(\[\s*)?([\w-]+)\s*(.*)", re.DOTALL)


def looks_typed(description: str) -> bool:
    """Whether a description reads as a type the user meant (``age: int 0..150``, ``born:
    date``, ``tags: [str]``, ``mood: str|null``): a type, format or grounding name alone, in
    brackets, or followed by a range, ``|`` or ``?``. ``born: date of birth`` is a description."""
    m = _TYPE_WORD.fullmatch(description)
    if m is None or m.group(2) not in _TYPE_WORDS:
        return False
    bracket, rest = m.group(1), m.group(3)
    if bracket or not rest or rest[0] in "|?？]":  # (？: the full-width '?' a Chinese IME types)
        return True
    # A range, not any digit: `summary: text 3 sentences at most` is a description.
    return _RANGE_START.match(rest) is not None


_TYPE_WORDS = frozenset(TYPE_NAMES) | frozenset(FORMAT_NAMES) | frozenset(GROUNDING_NAMES)
