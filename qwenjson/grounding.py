"""Grounded values: strings the model may only copy from the input text.

A small model asked for ``city`` writes "New York" whether or not the text names a city, and
copies the schema's own descriptions into values. Here a *grounded* string is constrained while
it is generated, beside the grammar: its content must stay a span of the input, written as
JSON writes it (``json.dumps`` escapes, the text's own case and inner whitespace), so a value
that isn't in the text can't be written. Which strings are grounded is decided per field from
the schema (``qwenjson.fields``); ``Grounding`` is the constraint the engine checks each chosen
token against, as it checks the grammar.

Abstaining instead of inventing: when the model's own first choice for a grounded value is
refused (it "wanted" something the text doesn't contain), a field that may be absent is closed
empty instead (the caller then leaves it out, sets it to null, or drops the list item: see
``FieldRule.abstain``); a required one gets the best grounded value and is marked unsupported.

A list that repeats an item it already holds is ended there (the next ``,`` is refused): the
0.5B otherwise loops, writing the same span dozens of times until the budget runs out.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from qwenjson.fields import GROUNDED_KEY, FieldRule, Path, Pattern, grounding_rules, required_keys

__all__ = [
    "GROUNDED_KEY",
    "FieldRule",
    "Grounding",
    "SourceText",
    "ValueRecord",
    "grounding_rules",
    "required_keys",
]

_QUOTE, _BACKSLASH, _COMMA = 0x22, 0x5C, 0x2C
_SPACE = b" \t\r\n"
# The longest number written: a double needs at most 24 characters ("-1.2345678901234567e-308")
# and an int64 20. Measured on the dev set's receipts: the 0.5B, unsure of a total, wrote
# digits until the token budget ran out (a 300-digit "total", 470 s). A longer number is
# refused here (never by the grammar: if the schema needs one, the grammar alone decides).
_MAX_NUMBER_BYTES = 24


# -- the input text, as a grounded value may spell it ----------------------------------------------


def _escaped(char: str) -> bytes:
    return json.dumps(char, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")


def _in_word(char: str) -> bool:
    """A letter or digit of a script that separates words with blanks (not CJK, where any
    character boundary is a word boundary)."""
    return char.isalnum() and unicodedata.east_asian_width(char) not in ("W", "F")


class SourceText:
    """The input text as JSON string content, with where each of its characters starts.

    A grounded value's content (the bytes between its quotes) must be a run of whole
    characters of this escaped form that neither starts nor ends inside a word ("Osl" is not
    a value of "Oslo"; in Chinese any character boundary will do); offsets map back to code
    points of the text.
    """

    def __init__(self, text: str, offset: int = 0) -> None:
        self.text = text
        self.offset = offset  # code points before ``text`` in the input as the user gave it
        pieces = [_escaped(c) for c in text]
        self.data = b"".join(pieces)
        # boundary byte offset -> code point index, at each place a value may start or end
        self._index: dict[int, int] = {}
        pos = 0
        for i, piece in enumerate(pieces):
            if i == 0 or not (_in_word(text[i - 1]) and _in_word(text[i])):
                self._index[pos] = i
            pos += len(piece)
        self._index[pos] = len(pieces)

    def occurrences(self, content: bytes) -> Iterator[int]:
        """Byte offsets where ``content`` occurs starting at a boundary (a character's start,
        not inside a word)."""
        data, index = self.data, self._index
        start = data.find(content)
        while start >= 0:
            if start in index:
                yield start
            start = data.find(content, start + 1)

    def has(self, content: bytes) -> bool:
        """Whether ``content`` can still grow into a span (it occurs at a boundary)."""
        return next(self.occurrences(content), None) is not None

    def span(self, content: bytes, after: int = 0) -> tuple[int, int] | None:
        """Code point offsets ``[start, end)`` in the input of the first whole-character
        occurrence of ``content`` (preferring one starting at or after ``after``), or None."""
        first: tuple[int, int] | None = None
        for start in self.occurrences(content):
            found = self.span_at(start, len(content))
            if found is None:
                continue
            if found[0] >= after:
                return found
            if first is None:
                first = found
        return first

    def span_at(self, start: int, length: int) -> tuple[int, int] | None:
        """Code point offsets of the ``length`` escaped bytes at ``start``, if they start and
        end at boundaries."""
        first, end = self._index.get(start), self._index.get(start + length)
        if first is None or end is None:
            return None
        return first + self.offset, end + self.offset

    def continuations(self, content: bytes, limit: int) -> Iterator[bytes]:
        """For each place ``content`` occurs, the next ``limit`` bytes of the text."""
        if not content:
            for start in self._index:
                yield self.data[start : start + limit]
            return
        for start in self.occurrences(content):
            end = start + len(content)
            yield self.data[end : end + limit]


# -- the constraint --------------------------------------------------------------------------------


@dataclass
class ValueRecord:
    """One grounded string as generated: where it sits in the output and in the input.

    ``status``: ``grounded`` (a span the model chose), ``abstained`` (closed empty: no source),
    ``unsupported`` (the model's first choice was refused and a required field got the best
    grounded value instead; its ``span`` is where that value occurs, not a source).
    """

    path: Path
    out_start: int  # byte offset of the opening quote in the output
    out_end: int  # byte offset just past the closing quote
    status: Literal["grounded", "abstained", "unsupported"]
    span: tuple[int, int] | None
    rule: FieldRule


class _Frame:
    """One open object or array; ``seen`` holds the string items a list has written."""

    __slots__ = ("ended", "index", "key", "keys", "kind", "phase", "seen")

    def __init__(self, kind: int) -> None:
        self.kind = kind  # ord("{") or ord("[")
        self.key: str | None = None
        self.index = 0
        self.phase = 0  # objects: 0 key next, 1 colon, 2 value, 3 after; arrays: 2, 3
        self.seen: frozenset[bytes] = frozenset()
        self.ended = False  # a list that repeated an item: only its end may follow
        self.keys: frozenset[str] = frozenset()  # an object's keys written so far

    def copy(self) -> _Frame:
        twin = _Frame.__new__(_Frame)
        twin.kind, twin.key, twin.index, twin.phase = self.kind, self.key, self.index, self.phase
        twin.seen, twin.ended, twin.keys = self.seen, self.ended, self.keys
        return twin


@dataclass
class _Open:
    """The grounded string being written."""

    path: Path
    rule: FieldRule
    out_start: int
    content: bytearray = field(default_factory=bytearray)
    refused_first: bool = False


class Grounding:
    """The span constraint, fed the output bytes as the engine emits them.

    ``allows(piece)`` says whether a token's bytes may come next (the grammar is checked
    separately; a token both admit is allowed); ``accept(piece)`` commits them. Forked copies
    (``fork``) check drafts without touching this one.
    """

    def __init__(
        self,
        source: SourceText,
        rules: Mapping[Pattern, FieldRule],
        required: Mapping[Pattern, tuple[str, ...]] | None = None,
    ) -> None:
        self.source = source
        self.rules = dict(rules)
        self.required = dict(required or {})
        self.records: list[ValueRecord] = []
        self.dedupe = True
        self._stack: list[_Frame] = []
        self._pos = 0  # output bytes accepted so far
        self._in_str = False
        self._is_key = False
        self._esc = False
        self._buf = bytearray()  # the current key, or string item of a list
        self._scalar = 0  # bytes of the number (or literal) being written
        self._open: _Open | None = None
        self._refusal_pending = False
        self._log = True  # forks keep no records

    # -- forks -------------------------------------------------------------------------------------

    def fork(self) -> Grounding:
        """An independent copy of the state (no records)."""
        twin = Grounding.__new__(Grounding)
        twin.source, twin.rules, twin.dedupe = self.source, self.rules, self.dedupe
        twin.required = self.required
        twin.records = []
        twin._stack = [f.copy() for f in self._stack]
        twin._pos, twin._in_str, twin._is_key, twin._esc = (
            self._pos,
            self._in_str,
            self._is_key,
            self._esc,
        )
        twin._buf = bytearray(self._buf)
        twin._scalar = self._scalar
        o = self._open
        twin._open = None if o is None else _Open(o.path, o.rule, o.out_start, bytearray(o.content))
        twin._refusal_pending = False
        twin._log = False
        return twin

    # -- what the engine asks ----------------------------------------------------------------------

    @property
    def in_grounded(self) -> bool:
        """Whether a grounded string's content is being written."""
        return self._open is not None

    def allows(self, piece: bytes) -> bool:
        """Whether ``piece`` may come next."""
        if not piece:
            return True
        o = self._open
        if o is not None and not self._esc and _QUOTE not in piece and _BACKSLASH not in piece:
            return self.source.has(bytes(o.content) + piece)  # the common case, no fork
        if (
            o is None
            and not self._in_str
            and _QUOTE not in piece
            and _COMMA not in piece
            and self._scalar + len(piece) <= _MAX_NUMBER_BYTES
        ):
            return True
        if o is None and self._in_str and _QUOTE not in piece and _BACKSLASH not in piece:
            return True
        return self.fork()._feed(piece)

    def accept(self, piece: bytes) -> None:
        """Commit ``piece`` (already allowed, or forced by the grammar)."""
        self._feed(piece, force=True)
        self._refusal_pending = False

    def would_abstain(self, piece: bytes) -> bool:
        """Whether the refused ``piece`` is a first choice for a value that may be left out:
        refused before any of that value's content was accepted."""
        refused_in = self.fork()._first_refusal(piece)
        return refused_in is not None and refused_in.rule.abstain != "none"

    def closes_empty(self, piece: bytes) -> bool:
        """Whether ``piece`` closes the current (or about to open) grounded value empty."""
        twin = self.fork()
        twin._log = True
        if not twin._feed(piece):
            return False
        return any(r.status == "abstained" for r in twin.records)

    def refused(self, piece: bytes) -> None:
        """The model's first choice ``piece`` was refused: if it began a grounded value, that
        value has no source the model would pick (it's marked when written)."""
        if self.fork()._first_refusal(piece) is None:
            return
        if self._open is not None:
            self._open.refused_first = True
        else:
            self._refusal_pending = True

    def _first_refusal(self, piece: bytes) -> _Open | None:
        """Feed ``piece`` byte by byte; the grounded value it is refused in while still empty
        (its first choice), else None (accepted, or refused elsewhere)."""
        for byte in piece:
            before = self._open
            empty = before is not None and not before.content
            ok = self._step(byte)
            if ok and self._open is not None and self._open.content and not self._esc:
                ok = self.source.has(bytes(self._open.content))
            if not ok:
                return before if empty else None
        return None

    def blank_continuations(self, piece: bytes) -> list[bytes]:
        """Where the model wrote a blank the text doesn't have here, the text's own next bytes
        when they are a line break or tab (escaped): the model joins lines with a space where
        the text breaks them (an address over three lines of a receipt), and closing the value
        there instead would cut it short. Empty when that isn't the case."""
        o = self._open
        if o is None or not piece[:1].isspace() or self._esc:
            return []
        return [
            ahead
            for ahead in self.source.continuations(bytes(o.content), 48)
            if ahead[:2] in (b"\\n", b"\\r", b"\\t")
        ]

    def refine(
        self,
        mask: Any,
        piece: Callable[[int], bytes],
        prefix_ids: Callable[[bytes], list[int]],
        sensitive: Any,
    ) -> Any:
        """``mask`` (a boolean array over the vocabulary) narrowed to the tokens allowed here.

        Inside a grounded value only the tokens that spell the text's next bytes from a place
        the content occurs, or that hold a quote (``sensitive``), can pass, so only those are
        checked; elsewhere only tokens with a quote or comma can be refused.
        """
        out = mask.copy()
        if self._open is None:
            for t in sensitive:
                if out[t] and not self.allows(piece(int(t))):
                    out[t] = False
            return out
        out[:] = False
        candidates: set[int] = {int(t) for t in sensitive}
        for ahead in self.source.continuations(bytes(self._open.content), 48):
            candidates.update(prefix_ids(ahead))
        for t in candidates:
            if mask[t] and self.allows(piece(t)):
                out[t] = True
        return out

    def closing_reserve(self) -> int:
        """Tokens the document needs at least to close from here, beyond the brackets: the
        required members of open objects not written yet (``, "key": []``, at two bytes a
        token, rounded up, measured as an upper bound for Qwen2's tokenizer on ASCII keys
        and CJK keys at three bytes a character). Budget steering reserves them."""
        cost = 0
        for depth, frame in enumerate(self._stack):
            if frame.kind != 0x7B:
                continue
            pattern = tuple(None if f.kind == 0x5B else (f.key or "") for f in self._stack[:depth])
            for key in self.required.get(pattern, ()):
                if key not in frame.keys and key != frame.key:
                    cost += (len(json.dumps(key, ensure_ascii=False).encode()) + 8) // 2
        return cost

    # -- the byte machine --------------------------------------------------------------------------

    def _feed(self, piece: bytes, force: bool = False) -> bool:
        for byte in piece:
            if not self._step(byte) and not force:
                return False
        o = self._open
        return not (o is not None and not force and not self.source.has(bytes(o.content)))

    def _path(self) -> Path:
        return tuple((f.key or "") if f.kind == 0x7B else f.index for f in self._stack)

    def _rule(self, path: Path) -> FieldRule | None:
        pattern = tuple(None if isinstance(p, int) else p for p in path)
        return self.rules.get(pattern)

    def _step(self, byte: int) -> bool:
        """Take one output byte; False if the constraint refuses it (state then undefined)."""
        self._pos += 1
        if self._in_str:
            return self._string_byte(byte)
        top = self._stack[-1] if self._stack else None
        if byte in b' \t\r\n",:{}[]':
            self._scalar = 0
        if byte in _SPACE:
            return True
        if byte == _QUOTE:
            self._in_str, self._esc = True, False
            self._buf.clear()
            if top is not None and top.kind == 0x7B and top.phase == 0:
                self._is_key = True
                return True
            self._is_key = False
            path = self._path()
            rule = self._rule(path)
            if rule is not None and rule.grounded:
                self._open = _Open(path, rule, self._pos - 1, refused_first=self._refusal_pending)
                self._refusal_pending = False
            return True
        if byte == _COMMA:
            if top is None:
                return True
            if top.kind == 0x5B:
                top.index += 1
                top.phase = 2
            else:
                top.phase = 0
            return not top.ended
        if byte == 0x3A:  # colon
            if top is not None:
                top.phase = 2
            return True
        if byte in b"{[":
            self._stack.append(_Frame(byte))
            if byte == 0x5B:
                self._stack[-1].phase = 2
            return True
        if byte in b"}]":
            if self._stack:
                self._stack.pop()
            if self._stack:
                self._stack[-1].phase = 3
            return True
        if top is not None:
            top.phase = 3  # a number, true, false or null
        self._scalar += 1
        return self._scalar <= _MAX_NUMBER_BYTES

    def _string_byte(self, byte: int) -> bool:
        o = self._open
        if self._esc:
            self._esc = False
        elif byte == _BACKSLASH:
            self._esc = True
        elif byte == _QUOTE:
            self._in_str = False
            return self._close_string()
        if o is not None:
            o.content.append(byte)
        else:
            self._buf.append(byte)
        return True

    def _close_string(self) -> bool:
        top = self._stack[-1] if self._stack else None
        if self._is_key:
            if top is not None:
                try:
                    top.key = json.loads(b'"' + bytes(self._buf) + b'"')
                except ValueError:
                    top.key = self._buf.decode("utf-8", "replace")
                top.keys = top.keys | {top.key or ""}
                top.phase = 1
            return True
        o = self._open
        self._open = None
        content = bytes(o.content) if o is not None else bytes(self._buf)
        if top is not None:
            top.phase = 3
            if top.kind == 0x5B and self.dedupe and content:
                if content in top.seen:
                    top.ended = True
                top.seen = top.seen | {content}
        if o is None:
            return True
        span = self.source.span(content) if content else None
        status: Literal["grounded", "abstained", "unsupported"]
        if not content:
            ok, status = o.rule.abstain != "none", "abstained"
        else:
            ok = span is not None
            status = "unsupported" if o.refused_first or not ok else "grounded"
        if self._log:
            self.records.append(ValueRecord(o.path, o.out_start, self._pos, status, span, o.rule))
        return ok
