"""The concise syntax → JSON Schema: a recursive-descent parser over ``lexer``'s tokens."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from qwenjson.dsl.lexer import (
    CLOSERS,
    COMMAS,
    DERIVABLE,
    DERIVED,
    DRAFT_2020_12,
    EOF,
    FORMAT_NAMES,
    GROUNDING_NAMES,
    LITERALS,
    MAX_DEPTH,
    NEWLINE,
    NUMBER,
    OPENERS,
    RANGE_KEYS,
    STRING,
    TYPE_NAMES,
    WORD,
    DslError,
    Schema,
    Token,
    describe,
    enum_type,
    first_control,
    looks_typed,
    read_raw,
    scan,
    skip_spaces,
    value_type,
)


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
        self.raw_end: int | None = None  # where the last field's unquoted description ended

    # -- tokens ----------------------------------------------------------------------------

    def peek(self) -> Token:
        return scan(self.text, self.pos)

    def peek_after(self, tok: Token) -> Token:
        return scan(self.text, tok.end)

    def advance(self) -> Token:
        tok = self.peek()
        self.pos = tok.end
        return tok

    def fail(self, problem: str, offset: int) -> DslError:
        return DslError(problem, self.text, offset)

    # -- grammar ---------------------------------------------------------------------------

    def parse(self) -> Schema:
        if not self.text.strip():
            raise self.fail("empty schema: expected fields such as 'name, age int'", 0)
        properties, required = self.fields(None, not _top_level_spans_lines(self.text))
        return {"$schema": DRAFT_2020_12, **_object(properties, required)}

    def fields(self, closer: str | None, one_line: bool) -> tuple[Schema, list[str]]:
        """``fields``, then ``closer`` (or the end): the properties and required names."""
        properties: Schema = {}
        required: list[str] = []
        while True:
            tok = self.peek()
            if tok.kind in (",", NEWLINE):
                self.advance()
                continue
            if tok.kind == closer or (closer is None and tok.kind == EOF):
                if not properties:
                    raise self.fail("expected at least one field", tok.start)
                self.advance()
                self.raw_end = None  # the group's own field, not one inside it, comes next
                return properties, required
            if tok.kind == EOF:
                raise self.fail(f"expected {closer!r} to close the object", tok.start)
            name_tok = tok
            after_raw, self.raw_end = self.raw_end, None
            try:
                name, optional, schema = self.field(one_line)
            except DslError as e:
                raise self._after_description(e, one_line, after_raw, name_tok) from None
            if name in properties:
                raise self.fail(f"duplicate field name {name!r}", name_tok.start)
            if (same := _same_name(name, properties)) is not None:
                raise self.fail(
                    f"field name {name!r} is {same!r} spelled with other Unicode code points "
                    "(the same text after NFC normalization): use one spelling",
                    name_tok.start,
                )
            properties[name] = schema
            if not optional:
                required.append(name)
            after = self.peek()
            if after.kind == WORD and after.text == DERIVED:
                raise self.fail(
                    f"'{DERIVED}' goes right after int, float or date and their '|null', before "
                    f"a range: n int|null {DERIVED} 0..",
                    after.start,
                )
            if after.kind not in (",", NEWLINE, EOF) and after.kind != closer:
                ends = f"',', a line break or {closer!r}" if closer else "',' or a line break"
                raise self.fail(
                    f"expected {ends} after field {name!r}, found {describe(after)}",
                    after.start,
                )

    def _after_description(
        self, error: DslError, one_line: bool, raw_end: int | None, name: Token
    ) -> DslError:
        """``error`` in the field right after an unquoted description of a one-line list, at its
        name or the token after it: most likely a description with a comma in it (``title:
        Mr., Mrs.``); say how to keep one. An error further on (``bio: short, age int 5..1``'s
        range) is about a field that reads as one, and gets no hint."""
        if not one_line or raw_end is None or error.offset < raw_end:
            return error
        try:
            after_name = scan(self.text, name.end).end
        except DslError:
            after_name = len(self.text)  # the error is at the name's end, then
        if error.offset >= after_name:
            return error
        hint = (
            "; a description on a one-line list ends at the next comma (quote it: "
            '"Mr., Mrs.", or write one field per line)'
        )
        return DslError(error.problem + hint, self.text, error.offset)

    def field(self, one_line: bool) -> tuple[str, bool, Schema]:
        tok = self.advance()
        if tok.kind not in (WORD, NUMBER, STRING):
            hint = ""
            if tok.kind == "{" and self.depth == 0:
                hint = " (the top level is already an object: write 'a, b int', not '{a, b int}')"
            raise self.fail(f"expected a field name, found {describe(tok)}{hint}", tok.start)
        if tok.kind == NUMBER and self.peek().kind == "..":
            # `tags [str], 1..5`: a comma too many, and the range would make a field named "1".
            raise self.fail(
                f"a range {tok.text}.. where a field name goes: a range follows its field's type "
                "with no comma in between (n int 1..5)",
                tok.start,
            )
        name: str = tok.value if tok.kind == STRING else tok.text
        optional = False
        if self.peek().kind == "?":
            self.advance()
            optional = True
        schema: Schema = {"type": "string"}
        if self.peek().kind in (WORD, NUMBER, STRING, "{", "[", ".."):
            schema = self.typed()
        nxt = self.peek()
        if nxt.kind == "?":
            raise self.fail(f"'?' goes right after the field name: {tok.text}? …", nxt.start)
        if nxt.kind == ":":
            self.advance()
            schema["description"] = self.description(name, one_line, nxt)
        return name, optional, schema

    def description(self, name: str, one_line: bool, colon: Token) -> str:
        start = skip_spaces(self.text, self.pos)
        if self.text.startswith('"', start):
            tok = self.advance()
            value: str = tok.value
            return value
        value, end = read_raw(self.text, start, commas_end=one_line)
        self.raw_end = end
        if not value:
            raise self.fail("expected a description after ':'", colon.end)
        if not one_line and (swallowed := swallowed_field(value)) is not None:
            raise self.fail(
                f"this description (which runs to the end of its line, as this schema has "
                f"several lines) takes in {swallowed!r}, which reads as a field of its own: "
                "put each field on a line of its own, or quote the description",
                start,
            )
        if _RANGE_ONLY.fullmatch(value.strip()):
            raise self.fail(
                f"{value!r} after ':' would be a description, not a range: a range follows the "
                f"type, with no ':' ('{name} int {value}' for a number, '{name} {value}' for a "
                "string's length), or quote the description",
                start,
            )
        if looks_typed(value) or reads_as_type(value):
            typed = f"{name} {value}"
            if value.endswith(("?", "？")):  # `due: date?`: the '?' goes after the name
                typed = f"{name}? {value[:-1].rstrip()}"
            raise self.fail(
                f"{value!r} after ':' would be a description, not a type: write "
                f"'{typed}' for a typed field, or quote the description",
                start,
            )
        self.pos = end
        return value

    def typed(self) -> Schema:
        tok = self.peek()
        if tok.kind == ".." or (tok.kind == NUMBER and self.peek_after(tok).kind == ".."):
            schema: Schema = {"type": "string"}
            kind = "string"
        else:
            schema, kind = self.type_expr()
        tok = self.peek()
        if tok.kind in (NUMBER, ".."):
            self.apply_range(schema, kind, self.range_expr())
        return schema

    def type_expr(self) -> tuple[Schema, str]:
        """Parse ``type``; return the schema and what a range would bound (or "enum")."""
        tok = self.peek()
        if tok.kind == "{":
            schema, kind = self.object_type(), "object"
        elif tok.kind == "[":
            schema, kind = self.array_type(), "array"
        elif tok.kind == WORD and tok.text in TYPE_NAMES:
            self.advance()
            kind = TYPE_NAMES[tok.text]
            schema = {"type": kind}
        elif tok.kind == WORD and tok.text in FORMAT_NAMES and not self.starts_enum(tok):
            self.advance()
            kind = tok.text  # a range on it is refused, naming it
            schema = {"type": "string", "format": FORMAT_NAMES[tok.text]}
        elif tok.kind == WORD and tok.text in GROUNDING_NAMES and not self.starts_enum(tok):
            self.advance()
            kind = "string"
            schema = {"type": "string", "x-grounded": GROUNDING_NAMES[tok.text]}
        elif tok.kind in (WORD, NUMBER, STRING):
            self.null_first(tok)
            return self.enum_type(), "enum"
        else:
            raise self.fail(f"expected a type, found {describe(tok)}", tok.start)
        bar = self.peek()
        if bar.kind == "|":
            self.advance()
            null = self.advance()
            if not (null.kind == WORD and null.text == "null"):
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
        marker = self.peek()
        if marker.kind == WORD and marker.text == DERIVED:
            if kind not in DERIVABLE:
                hint = " (a string the model writes itself is 'text')" if kind == "string" else ""
                raise self.fail(f"'{DERIVED}' follows int, float or date only{hint}", marker.start)
            self.advance()
            schema["x-grounded"] = False
        return schema, kind

    def null_first(self, tok: Token) -> None:
        """Refuse ``null|date`` (an enum of null and the word "date", where ``date|null`` is a
        date or null): a review found the two orders meaning different things, silently."""
        bar = self.peek_after(tok)
        if not (tok.kind == WORD and tok.text == "null" and bar.kind == "|"):
            return
        other = scan(self.text, bar.end)
        typed = (TYPE_NAMES, FORMAT_NAMES, GROUNDING_NAMES)
        named = other.kind == WORD and any(other.text in names for names in typed)
        if named and scan(self.text, other.end).kind != "|":
            raise self.fail(
                f"'null' goes after the type: {other.text}|null (quote the words for an enum: "
                f'null|"{other.text}")',
                tok.start,
            )

    def starts_enum(self, tok: Token) -> bool:
        """Whether a format name starts an enum: ``email|phone`` (but ``email|null``)."""
        bar = self.peek_after(tok)
        if bar.kind != "|":
            return False
        after = scan(self.text, bar.end)
        return not (after.kind == WORD and after.text == "null")

    def enter(self, tok: Token) -> None:
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
            raise self.fail(f"expected ']', found {describe(close)}", close.start)
        self.depth -= 1
        return {"type": "array", "items": items}

    def skip_newlines(self) -> None:
        while self.peek().kind == NEWLINE:
            self.advance()

    def enum_type(self) -> Schema:
        values: list[object] = []
        seen: set[tuple[str, object]] = set()
        first = self.peek()
        while True:
            tok = self.advance()
            value = self.enum_value(tok)
            # As JSON Schema compares: 1, 1.0 and 1e0 are one value (True is no number).
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            key = ("number" if numeric else value_type(value), value)
            if key in seen:
                raise self.fail(f"duplicate enum value {tok.text}", tok.start)
            seen.add(key)
            values.append(value)
            if self.peek().kind != "|":
                break
            self.advance()
        if len(values) == 1 and first.kind != STRING:
            if first.kind == WORD and first.text not in LITERALS and not first.text[0].isdigit():
                problem = (
                    f"unknown type {first.text!r}: use str int float bool date time datetime "
                    "email uri uuid, {…}, [type], or a|b|c for an enum"
                )
            else:  # `zip 02134`: a value where the type goes
                problem = (
                    f"expected a type, found {first.text}; an enum needs two values (a|b), and "
                    f'one allowed value is written in quotes ("{first.text}")'
                )
            raise self.fail(problem, first.start)
        return {"type": enum_type(values), "enum": values}

    def enum_value(self, tok: Token) -> object:
        if tok.kind in (STRING, NUMBER):
            return tok.value
        if tok.kind == WORD:
            if tok.text in TYPE_NAMES:
                raise self.fail(
                    f"{tok.text!r} is a type name; quote it to use it as an enum value",
                    tok.start,
                )
            return LITERALS.get(tok.text, tok.text)
        raise self.fail(f"expected an enum value, found {describe(tok)}", tok.start)

    def range_expr(self) -> _Range:
        start = self.peek().start
        low = high = None
        low_integral = high_integral = True
        tok = self.advance()
        if tok.kind == NUMBER:
            low, low_integral = tok.value, integral(tok.text)
            tok = self.advance()
            if tok.kind != "..":
                raise self.fail(f"expected '..' after {low} (a range is written lo..hi)", tok.start)
        if self.peek().kind == NUMBER:
            tok = self.advance()
            high, high_integral = tok.value, integral(tok.text)
        elif low is None:
            raise self.fail("expected a number after '..'", self.peek().start)
        return _Range(low, high, low_integral, high_integral, start)

    def apply_range(self, schema: Schema, kind: str, rng: _Range) -> None:
        keys = RANGE_KEYS.get(kind)
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


def _top_level_spans_lines(text: str) -> bool:
    """Whether the top level is written over several lines: a line break between its fields,
    not only inside a ``{…}`` or ``[…]`` written over lines (``people [{⏎ n, role⏎}], name:
    full name, age int`` is a one-line list whose descriptions end at commas). Where the text is
    no tokens throughout (``Mrs.`` after a comma), any line break counts, as it always did."""
    depth = 0
    pos = 0
    try:
        while True:
            tok = scan(text, pos)
            if tok.kind == EOF:
                return False
            pos = tok.end
            # A line break between fields (not a leading or trailing one).
            if (
                tok.kind == NEWLINE
                and depth == 0
                and text[: tok.start].strip()
                and text[pos:].strip()
            ):
                return True
            if tok.kind in OPENERS:
                depth += 1
            elif tok.kind in CLOSERS:
                depth = max(depth - 1, 0)
            elif tok.kind == ":" and not text.startswith('"', skip_spaces(text, pos)):
                pos = read_raw(text, pos, commas_end=True)[1]
    except DslError:
        return "\n" in text.strip()


# A part of a description, after a comma, that reads as a field: a name, then a type no prose
# has after a word (`int`, `float`, `bool`), a type word equal to the
# name (`email email`), an enum (`a|b`), an object (`{…}`), or a type with a range, `?` or
# brackets. "…, work email", "…, due date", "…, phone number", "…, in text" are descriptions,
# and so is a part whose "name" is an article (`…, a bool`). `name: full name, age int` on one
# line of a schema of several lines was one field whose description took `age int` in,
# silently.
# A name (a word, or quoted), an optional '?' (or the full-width one), and the rest.
_FIELD_LIKE = re.compile(r'([^\W\d]\w*(?:-\w+)*|"[^"]+")([?？]?)\s+(.+)', re.DOTALL)
# (`integer` and `boolean` are prose after an adjective: "…, positive integer".)
_CODE_TYPES = frozenset({"int", "float", "bool"})
_ENUM_VALUE = r'(?:"[^"]*"|[^\s|"]+)'
_ENUM_LIKE = re.compile(rf"{_ENUM_VALUE}(?:\s*\|\s*{_ENUM_VALUE})+")
# A range alone (`age: 0..150`).
_RANGE_ONLY = re.compile(r"(-?\d+(\.\d+)?\s*\.\.\s*(-?\d+(\.\d+)?)?|\.\.\s*-?\d+(\.\d+)?)")


def reads_as_type(value: str) -> bool:
    """A description that is an object type, an enum or a range (``address: {street, city}``,
    ``mood: happy|sad``, ``age: 0..150``): meant as the field's type, lost as prose."""
    value = value.strip()
    return (
        (value.startswith("{") and value.endswith("}"))
        or _ENUM_LIKE.fullmatch(value) is not None
        or _RANGE_ONLY.fullmatch(value) is not None
    )


def _head(part: str) -> str:
    """``part`` up to its first ':' (or '：') outside quotes: a field's own description."""
    quoted = False
    for i, ch in enumerate(part):
        if ch == '"':
            quoted = not quoted
        elif ch in ":：" and not quoted:
            return part[:i]
    return part


_NOT_NAMES = frozenset({"a", "an", "the", "as", "in", "of", "no", "or", "and", "any", "some"})


def swallowed_field(description: str) -> str | None:
    """The first part of ``description`` after a comma (outside brackets) that reads as a typed
    field (``age int``, ``born date 1900..``, ``tags [str]``, ``mood happy|sad``), or None."""
    depth = 0
    start = None
    parts: list[str] = []
    for i, ch in enumerate(description):
        if ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
            depth = max(depth - 1, 0)
        elif ch in COMMAS and depth == 0:
            if start is not None:
                parts.append(description[start:i])
            start = i + 1
    if start is not None:
        parts.append(description[start:])
    for part in parts:
        m = _FIELD_LIKE.fullmatch(_head(part).strip())
        if m is None or m.group(1).lower() in _NOT_NAMES:
            continue
        name, optional, rest = m.group(1), m.group(2), m.group(3).strip()
        # `count int derived 0..`: only a field's type is marked so (`due date` may be prose).
        rest, derived = re.subn(r"\s+derived\b", "", rest)
        if (derived or name.startswith('"')) and (rest.startswith("{") or looks_typed(rest)):
            return part.strip()  # nor is a quoted name: `"full name" int`
        word = re.match(r"[\w-]+", rest)
        if rest.startswith("{") or _ENUM_LIKE.fullmatch(rest):
            return part.strip()
        if not looks_typed(rest):
            continue
        if rest.startswith("[") or optional or word is None or rest != word.group():
            return part.strip()  # brackets, '?', or more after the type word (a range, '|')
        if word.group() in _CODE_TYPES or word.group() == name:
            return part.strip()
    return None


def _same_name(name: str, properties: Schema) -> str | None:
    """A name already in ``properties`` that is ``name`` after NFC normalization (``café``
    typed with a combining accent), or None: two fields that print alike are a mistake."""
    key = unicodedata.normalize("NFC", name)
    for other in properties:
        if unicodedata.normalize("NFC", other) == key:
            return str(other)
    return None


def _spans_lines(text: str, pos: int) -> bool:
    """Whether the ``{…}`` group whose body starts at ``pos`` is written over several lines.

    Decides whether commas end descriptions inside it. The group is read as a one-line group
    would be (commas end descriptions, so quoted names after them are tokens); if a line break
    comes before its ``}``, it is a multi-line group. Where that reading stops at something
    that is no token (``Mrs.`` after a comma), the rest is counted character by character: a
    group closed on this line is one-line, and the real parse reports the error there (read
    as multi-line, the description would swallow the fields after it, and exit 0).
    """
    depth = 1
    try:
        while True:
            tok = scan(text, pos)
            if tok.kind in (NEWLINE, EOF):
                return True
            pos = tok.end
            if tok.kind in OPENERS:
                depth += 1
            elif tok.kind in CLOSERS:
                depth -= 1
                if depth == 0:
                    return False
            elif tok.kind == ":" and not text.startswith('"', skip_spaces(text, pos)):
                pos = read_raw(text, pos, commas_end=True)[1]
    except DslError:
        pass
    for ch in text[pos:]:
        if ch == "\n":
            return True
        depth += (ch in OPENERS) - (ch in CLOSERS)
        if depth == 0:
            return False
    return True


def _object(properties: Schema, required: list[str]) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def integral(number_text: str) -> bool:
    return not any(c in number_text for c in ".eE")


def parse_dsl(text: str) -> Schema:
    """Parse the concise schema syntax (see the module docstring) into a JSON Schema.

    Example: ``parse_dsl("name, age int 0..150")`` is an object schema with a required string
    ``name`` and a required integer ``age`` between 0 and 150. Raises :class:`DslError`.
    """
    if (at := first_control(text)) is not None:
        raise DslError(
            f"a control character (U+{ord(text[at]):04X}) in the concise text: lines end with a "
            "line feed, and a description with such characters goes in a JSON Schema",
            text,
            at,
        )
    return _Parser(text).parse()
