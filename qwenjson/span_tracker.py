"""Following a JSON document as it is written: which grounded value is open, and whether its
content is still a span of the input text.

``SpanTracker`` is the byte machine under ``qwenjson.grounding.Grounding``: fed the output bytes
as the engine emits them, it knows the path of every value, opens a grounded string or number
where its field's rule (``qwenjson.fields``) says so, refuses a byte that would take the content
off the text, and records each value with where it sits in the output and in the input. What
the engine does with a refusal (abstain, respell) is ``Grounding``'s part.

A list that repeats an item it already holds is ended there (the next ``,`` is refused): the
0.5B otherwise loops, writing the same span dozens of times until the budget runs out. A
grounded string repeated is a loop only where the text doesn't say it again: each place the
text says it serves one item ("Paris, London, Paris, Rome" is four stops; ended at the second
"Paris", Rome and the rest were lost), and its evidence points there. Items that are objects or
lists count too when a grounded value can sit inside them: SmolLM2 under ``--each -s 'name:
full name of a person'`` wrote ``{"name": "Keller"}`` 30 times for a paragraph naming two
people (``scripts/bench_long_memory.py``'s short text: 34 items).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Self

import numpy as np

from qwenjson.fields import FieldRule, Path, Pattern, SchemaFields, dense_bytes, pattern_of
from qwenjson.readings import MAX_NUMBER_BYTES, Readings
from qwenjson.source import SourceText

_QUOTE, _BACKSLASH, _COMMA = 0x22, 0x5C, 0x2C
_SPACE = b" \t\r\n"
_ENDS_SCALAR = b' \t\r\n",:{}[]'
_NUMBER_START = b"-0123456789"
# -- what is tracked -------------------------------------------------------------------------------


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
    """One open object or array; ``seen`` holds the whole text of the object or list items a
    list has written that hold grounded values (``item``); ``used``, the places of the text its
    grounded strings took."""

    __slots__ = (
        "ended", "index", "item", "key", "keys", "kind", "phase", "place", "seen", "texted",
        "used",
    )  # fmt: skip

    def __init__(self, kind: int) -> None:
        self.kind = kind  # ord("{") or ord("[")
        self.key: str | None = None
        self.index = 0
        self.phase = 0  # objects: 0 key next, 1 colon, 2 value, 3 after; arrays: 2, 3
        self.seen: frozenset[bytes] = frozenset()
        self.place = -1  # where the text says the list's latest grounded string
        self.used: frozenset[tuple[int, int]] = frozenset()  # the places its strings took
        self.ended = False  # a list that repeated an item: only its end may follow
        self.keys: frozenset[str] = frozenset()  # an object's keys written so far
        # This frame's output text so far, when it is a list item to compare with the others.
        self.item: bytes | None = None
        # A grounded text value was written inside it: only then is a repeat of the item a
        # loop (as the evidence judges it, from the values written, not the schema).
        self.texted = False

    def copy(self) -> _Frame:
        twin = _Frame.__new__(_Frame)
        twin.kind, twin.key, twin.index, twin.phase = self.kind, self.key, self.index, self.phase
        twin.seen, twin.ended, twin.keys, twin.item = self.seen, self.ended, self.keys, self.item
        twin.texted, twin.place, twin.used = self.texted, self.place, self.used
        return twin


@dataclass
class OpenValue:
    """The grounded value being written: a string's content, or a number's bytes.

    ``free``: not checked (a date or number whose text has none to read: the grammar alone
    decides, and evidence finds no source). ``refused_first`` and ``case_changed`` are
    ``Grounding``'s marks: the model's first choice here was refused; a piece was respelled."""

    path: Path
    rule: FieldRule
    out_start: int
    source: SourceText | Readings
    content: bytearray = field(default_factory=bytearray)
    refused_first: bool = False
    case_changed: bool = False
    number: bool = False
    free: bool = False

    def copy(self) -> OpenValue:
        return replace(self, content=bytearray(self.content))

    def holds(self) -> bool:
        """Whether the content so far can still grow into a value."""
        return self.grows(bytes(self.content))

    def grows(self, content: bytes) -> bool:
        """Whether ``content`` can still grow into a value (within the field's maxLength)."""
        if self.free:
            return True
        if self.rule.max_chars is not None and isinstance(self.source, SourceText):
            return self.source.has_within(content, self.rule.max_chars)
        return self.source.has(content)


class SpanTracker:
    """The span check, fed the output bytes as the engine emits them.

    ``allows(piece)`` says whether a token's bytes may come next (the grammar is checked
    separately; a token both admit is allowed); ``accept(piece)`` commits them. Forked copies
    (``fork``) check drafts without touching this one.
    """

    def __init__(
        self,
        source: SourceText,
        rules: Mapping[Pattern, FieldRule],
        required: Mapping[Pattern, tuple[str, ...]] | None = None,
        floors: Mapping[Pattern, int] | None = None,
        *,
        dense: Mapping[Pattern, int] | None = None,
        min_items: Mapping[Pattern, int] | None = None,
    ) -> None:
        self.source = source
        self.rules = dict(rules)
        self.required = dict(required or {})
        self.floors = dict(floors or {})  # ``fields.value_floors``
        # ``SchemaFields.dense`` and ``.min_items``: what closing costs beyond the floors' bytes.
        self.dense = dict(dense or {})
        self.min_items = dict(min_items or {})
        self.records: list[ValueRecord] = []
        self.dedupe = True
        # The path patterns under which some text value is grounded (a list item under one of
        # them is checked for repeats as a whole; dates and numbers repeat as data: two
        # purchases of one price on one day are two).
        self._grounded_under = frozenset(
            pattern[:k]
            for pattern, rule in self.rules.items()
            if rule.grounded and rule.kind == "text"
            for k in range(len(pattern) + 1)
        )
        self._stack: list[_Frame] = []
        self._capturing = 0  # frames in the stack with an ``item`` being recorded
        # Where the text says the latest value with a source: a list opened after it takes its
        # places from there on (as evidence reads on from the last value's source), not from
        # the text's start (Team B's "Ann" pointed at Team A's).
        self._last_place = -1
        self._pos = 0  # output bytes accepted so far
        self._in_str = False
        self._is_key = False
        self._esc = False
        self._buf = bytearray()  # the current key, or string item of a list
        self._scalar = 0  # bytes of the number (or literal) being written
        self._open: OpenValue | None = None
        # Marks for the next grounded value to open, set by ``Grounding`` (its first choice was
        # refused; its first piece was respelled) and taken by ``_start_value``.
        self._refusal_pending = False
        self._case_pending = False
        self._log = True  # forks keep no records
        # The model's own count of a required key's tokens (``measure_with``), shared by forks.
        self._count: Callable[[bytes], int] | None = None
        self._key_tokens: dict[str, int] = {}

    # -- forks -------------------------------------------------------------------------------------

    @classmethod
    def from_fields(cls, source: SourceText, fields: SchemaFields) -> Self:
        """The tracker for ``source`` with all that ``schema_fields`` found in a schema."""
        return cls(
            source,
            fields.rules,
            fields.required,
            fields.floors,
            dense=fields.dense,
            min_items=fields.min_items,
        )

    def fork(self) -> Self:
        """An independent copy of the state (no records)."""
        twin = type(self).__new__(type(self))
        twin.source, twin.rules, twin.dedupe = self.source, self.rules, self.dedupe
        twin.required, twin._grounded_under = self.required, self._grounded_under
        twin.floors, twin.dense, twin.min_items = self.floors, self.dense, self.min_items
        twin._capturing, twin._last_place = self._capturing, self._last_place
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
        twin._open = None if self._open is None else self._open.copy()
        twin._refusal_pending = twin._case_pending = False
        twin._log = False
        twin._count, twin._key_tokens = self._count, self._key_tokens
        return twin

    def measure_with(self, count: Callable[[bytes], int]) -> None:
        """Count the required keys still to come with the model's tokenizer (``count``: the
        tokens of some bytes), not at two bytes a token: letters in no word (``xQzJkWpVbNmRtY``,
        17 tokens for the member's 22 bytes) and scripts split below a character (Runic,
        Bopomofo) took more, and a document ran out of a budget it fitted
        (``scripts/steering_reserve.py``)."""
        self._count = count

    # -- what the engine asks ----------------------------------------------------------------------

    @property
    def in_grounded(self) -> bool:
        """Whether a grounded value's content is being written."""
        return self._open is not None

    def allows(self, piece: bytes) -> bool:
        """Whether ``piece`` may come next."""
        if not piece:
            return True
        o = self._open
        if (
            o is not None
            and not o.number
            and not self._esc
            and _QUOTE not in piece
            and _BACKSLASH not in piece
        ):
            return o.grows(bytes(o.content) + piece)  # the common case, no fork
        if (
            o is None
            and not self._in_str
            and _QUOTE not in piece
            and _COMMA not in piece
            and self._scalar + len(piece) <= MAX_NUMBER_BYTES
            and (self._scalar > 0 or not any(b in _NUMBER_START for b in piece))
        ):
            return True
        if o is None and self._in_str and _QUOTE not in piece and _BACKSLASH not in piece:
            return True
        return self.fork()._feed(piece)

    def accept(self, piece: bytes) -> None:
        """Commit ``piece`` (already allowed, or forced by the grammar)."""
        self._feed(piece, force=True)
        self._refusal_pending = self._case_pending = False

    def refine(
        self,
        mask: Any,
        piece: Callable[[int], bytes],
        prefix_ids: Callable[[bytes], list[int]],
        sensitive: Any,
    ) -> Any:
        """``mask`` (a boolean array over the vocabulary) narrowed to the tokens allowed here.

        Inside a grounded value only the tokens that spell the text's next bytes from a place
        the content occurs, or that hold a quote (``sensitive``, with the longest pieces), can
        pass, so only those are checked. Elsewhere (or in a number, or a value left free) every
        token the grammar admits is checked: a number's first byte can be refused besides quotes
        and commas.
        """
        out = mask.copy()
        o = self._open
        if o is None or o.number or o.free:
            for admitted in np.flatnonzero(mask):
                if not self.allows(piece(int(admitted))):
                    out[admitted] = False
            return out
        out[:] = False
        candidates: set[int] = {int(t) for t in sensitive}
        for ahead in o.source.continuations(bytes(o.content), 48):
            candidates.update(prefix_ids(ahead))
        for t in candidates:
            if mask[t] and self.allows(piece(t)):
                out[t] = True
        return out

    def closing_reserve(self) -> int:
        """Tokens the document needs at least to close from here, beyond the open brackets:
        the required members of open objects not written yet (``, "key": VALUE`` with the
        shortest value the schema allows: ``""``, an enum's longest label, a date's ten
        characters, an object with its own required members), the value of a key just
        written, and the items an open list still owes its ``minItems``. Counted at two bytes
        a token, a digit and the characters next to it at a byte a token (``dense_bytes``),
        rounded up: an upper bound for Qwen2's tokenizer on ASCII keys, CJK keys at three
        bytes a character, dates and digits in keys (``scripts/steering_reserve.py`` measures
        it). Budget steering reserves them."""
        cost = 0
        top = len(self._stack) - 1
        for depth, frame in enumerate(self._stack):
            pattern = tuple(None if f.kind == 0x5B else (f.key or "") for f in self._stack[:depth])
            if frame.kind == 0x5B:
                cost += self._owed_items(frame, pattern, depth == top)
                continue
            for key in self.required.get(pattern, ()):
                if key not in frame.keys and key != frame.key:
                    name = json.dumps(key, ensure_ascii=False)
                    if self._count is not None:
                        member = self._member_tokens(name, self._count)
                        cost += member + self._tokens((*pattern, key), 1, 2)
                        continue
                    dense = dense_bytes(name)
                    extra = len(name.encode()) - dense + 6
                    cost += self._tokens((*pattern, key), extra, 2) + dense
            if depth == top and frame.phase in (1, 2) and not self._in_str:
                # A key written, its value not begun (one begun is open: a frame or a string).
                cost += self._tokens((*pattern, frame.key or ""), 1, 1)
        return cost

    def _member_tokens(self, name: str, count: Callable[[bytes], int]) -> int:
        """The model's tokens for a member's ``, "key": `` (``name``: the key as JSON)."""
        tokens = self._key_tokens.get(name)
        if tokens is None:
            tokens = self._key_tokens[name] = count(f", {name}: ".encode())
        return tokens

    def _tokens(self, pattern: Pattern, extra: int, default: int) -> int:
        """Tokens for the floor at ``pattern`` and ``extra`` bytes around it, at most."""
        dense = self.dense.get(pattern, 0)
        return (self.floors.get(pattern, default) - dense + extra) // 2 + dense

    def _owed_items(self, frame: _Frame, pattern: Pattern, top: bool) -> int:
        """Tokens for the items an open list still owes its ``minItems`` (each with ``, ``),
        and the one a ``,`` just written commits to."""
        least = self.min_items.get(pattern, 0)
        # Begun items count as written: what an open one still needs, its frames count.
        waiting = top and frame.phase == 2 and not self._in_str  # after "[" or ",": none begun
        if waiting and frame.index:
            # After "," an item must come: with three required members, steering that starts
            # there ran out inside it (a budget 3 tokens larger failed where the smaller passed).
            least = max(least, frame.index + 1)
        if not least:
            return 0
        owed = max(least - frame.index - (0 if waiting else 1), 0)
        if not owed:
            return 0
        commas = owed - 1 if waiting else owed  # ", " two tokens each: after "[" or "," one less
        return owed * self._tokens((*pattern, None), 0, 1) + 2 * commas

    # -- the byte machine --------------------------------------------------------------------------

    def _feed(self, piece: bytes, force: bool = False) -> bool:
        for byte in piece:
            if not self._step(byte) and not force:
                return False
        o = self._open
        return force or o is None or o.holds()

    def _path(self) -> Path:
        return tuple((f.key or "") if f.kind == 0x7B else f.index for f in self._stack)

    def _rule(self, path: Path) -> FieldRule | None:
        return self.rules.get(pattern_of(path))

    def _step(self, byte: int) -> bool:
        """Take one output byte; False if the constraint refuses it (state then undefined)."""
        self._pos += 1
        if self._capturing:
            for frame in self._stack:
                if frame.item is not None:
                    frame.item += bytes((byte,))
        if self._in_str:
            return self._string_byte(byte)
        o = self._open
        if o is not None and o.number and byte in _ENDS_SCALAR:
            self._open = None
            closed = self._close(o, bytes(o.content), self._pos - 1)
            return self._structure(byte) and closed
        return self._structure(byte)

    def _structure(self, byte: int) -> bool:
        top = self._stack[-1] if self._stack else None
        if byte in _ENDS_SCALAR:
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
            self._start_value(number=False)
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
            frame = _Frame(byte)
            frame.place = self._last_place
            if top is not None and top.kind == 0x5B and self.dedupe:
                # The item's own pattern: the list's frame already stands for its index.
                pattern = tuple(None if f.kind == 0x5B else (f.key or "") for f in self._stack)
                if pattern in self._grounded_under:
                    frame.item = bytes((byte,))
                    self._capturing += 1
            self._stack.append(frame)
            if byte == 0x5B:
                frame.phase = 2
            return True
        if byte in b"}]":
            if self._stack:
                done = self._stack.pop()
                if done.item is not None:
                    self._capturing -= 1
                    if self._stack and done.texted:
                        self._seen_item(self._stack[-1], done.item)
            if self._stack:
                self._stack[-1].phase = 3
            return True
        if top is not None:
            top.phase = 3  # a number, true, false or null
        self._scalar += 1
        if self._scalar == 1 and byte in _NUMBER_START:
            self._start_value(number=True)
        if self._open is not None:
            self._open.content.append(byte)
        return self._scalar <= MAX_NUMBER_BYTES

    def _start_value(self, number: bool) -> None:
        """Open the value starting here if its field is grounded: a string (its content comes
        next) or a number (this is its first byte)."""
        path = self._path()
        rule = self._rule(path)
        if rule is None or not rule.grounded or number != (rule.kind in ("number", "integer")):
            return
        source = self.source.values(rule.kind)
        if rule.bounds is not None and isinstance(source, Readings):
            source = source.within(rule.bounds.admits)
        self._open = OpenValue(
            path,
            rule,
            self._pos - 1,
            source,
            refused_first=self._refusal_pending,
            case_changed=self._case_pending,
            number=number,
        )
        self._open.free = not source
        self._refusal_pending = self._case_pending = False

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
        span: tuple[int, int] | None = None
        if top is not None:
            top.phase = 3
            # Only a grounded text repeated is a loop (as evidence._ended_list_at reads it): the
            # same label, date or written string twice in a list is data.
            text = o is not None and o.rule.kind == "text"
            if top.kind == 0x5B and self.dedupe and content and text and o is not None:
                span = self._item_span(top, o.source, content)
            if text and content and self._capturing:
                for frame in self._stack:
                    if frame.item is not None:
                        frame.texted = True
        if o is None:
            return True
        return self._close(o, content, self._pos, span)

    @staticmethod
    def _seen_item(lst: _Frame, item: bytes) -> None:
        """``item`` (an object or list) was written into the list ``lst``: a repeat ends it."""
        if item in lst.seen:
            lst.ended = True
        lst.seen = lst.seen | {item}

    @staticmethod
    def _item_span(
        lst: _Frame, source: SourceText | Readings, item: bytes
    ) -> tuple[int, int] | None:
        """Where the text says ``item``, a grounded string written into the list ``lst``. Each
        place the text says it serves one item of the list: the item takes the first place no
        item took, at or after the list's latest item's (else before it, the list written out
        of the text's order), and a repeat with no place left ends the list (a loop). "Paris,
        London, Paris": two items "Paris", not three."""
        if not isinstance(source, SourceText):
            return source.span(item)
        places = source.spans(item)
        at = bisect.bisect_left(places, (lst.place, -1))
        place = next((s for s in (*places[at:], *places[:at]) if s not in lst.used), None)
        if place is None:
            if places:  # every place taken by its earlier copies: a loop
                lst.ended = True
            return source.span(item)
        lst.used = lst.used | {place}
        lst.place = place[0]
        return place

    def _close(
        self,
        o: OpenValue,
        content: bytes,
        out_end: int,
        span: tuple[int, int] | None = None,
    ) -> bool:
        """Record the value ``o`` ending at ``out_end`` (from ``span`` if given, else the
        first place the text says it); False if it may not end here (not a whole span or
        reading, or empty where the field can't be left out)."""
        if span is None and content:
            span = o.source.span(content)
        if span is not None:
            self._last_place = span[0]
        status: Literal["grounded", "abstained", "unsupported"]
        if not content:
            ok, status = o.rule.abstain != "none", "abstained"
        else:
            ok = span is not None or o.free
            status = "unsupported" if o.refused_first or span is None else "grounded"
        if self._log:
            self.records.append(ValueRecord(o.path, o.out_start, out_end, status, span, o.rule))
        return ok
