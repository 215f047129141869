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
A choice refused only for the case of its letters is written in the text's case instead
(``Grounding.respelled``).

The byte machine underneath (paths, spans, records, ended lists) is
``qwenjson.span_tracker``.
"""

from __future__ import annotations

from qwenjson.fields import (
    GROUNDED_KEY,
    FieldRule,
    grounding_rules,
    required_keys,
    value_floors,
)
from qwenjson.source import SourceText
from qwenjson.span_tracker import OpenValue, SpanTracker, ValueRecord
from qwenjson.utf8 import characters, other_cases

__all__ = [
    "GROUNDED_KEY",
    "FieldRule",
    "Grounding",
    "SourceText",
    "ValueRecord",
    "grounding_rules",
    "required_keys",
    "value_floors",
]


class Grounding(SpanTracker):
    """The span constraint, with what the engine asks when the model's own choice is refused:
    abstain (``would_abstain``, ``closes_empty``, ``refused``) or respell (``respelled``)."""

    def would_abstain(self, piece: bytes) -> bool:
        """Whether the refused ``piece`` is a first choice for a value that may be left out:
        refused before any of that value's content was accepted."""
        refused_in = self._first_refusal(piece)
        # A number can't be closed empty: it is written from the readings, and evidence
        # takes out one the model didn't choose.
        if refused_in is None or refused_in.number:
            return False
        return refused_in.rule.abstain != "none"

    def closes_empty(self, piece: bytes) -> bool:
        """Whether ``piece`` closes the current (or about to open) grounded value empty."""
        twin = self.fork()
        twin._log = True
        if not twin._feed(piece):
            return False
        return any(r.status == "abstained" for r in twin.records)

    def refused(self, piece: bytes) -> None:
        """The model's first choice ``piece`` was refused: if it began a grounded value, that
        value has no source the model would pick (it's marked when written). So has a value
        whose case was changed (``case_changed``) when a choice inside it is refused."""
        o = self._open
        # A new word the text doesn't have here, after a respelled one: the model meant other
        # words ("The Beatles" where the text says "the greg raposo songs"). A refusal inside
        # a word proves less: after a respelled "lon", SmolLM2 wants "a", then "ada", for
        # "london". A blank where the text breaks the line is written as the break.
        if o is not None and o.case_changed and piece[:1] == b" " and self._refused_inside(piece):
            if not self.blank_continuations(piece):
                o.refused_first = True
            return
        refused_in = self._first_refusal(piece)
        if refused_in is None:
            return
        if o is None:
            self._refusal_pending = True
        elif refused_in.out_start == o.out_start:  # not a value the piece opens after this one
            o.refused_first = True

    def _refusal(self, piece: bytes) -> tuple[OpenValue | None, bool, OpenValue | None] | None:
        """Feed ``piece`` byte by byte into a fork; where it is refused, the value open before
        that byte, whether it was still empty, and the value open after it (None: accepted)."""
        twin = self.fork()
        for byte in piece:
            before = twin._open
            empty = before is not None and not before.content
            ok = twin._step(byte)
            after = twin._open
            if ok and after is not None and after.content and not twin._esc:
                ok = after.holds()
            if not ok:
                return before, empty, after
        return None

    def _refused_inside(self, piece: bytes) -> bool:
        """Whether ``piece`` is refused at a byte of the value open now (its content or its
        closing quote), not after it."""
        found, o = self._refusal(piece), self._open
        before = found[0] if found is not None else None
        return before is not None and o is not None and before.out_start == o.out_start

    def _first_refusal(self, piece: bytes) -> OpenValue | None:
        """The grounded value ``piece`` is refused in while still empty (its first choice),
        else None (accepted, or refused elsewhere)."""
        found = self._refusal(piece)
        if found is None:
            return None
        before, empty, after = found
        if empty:
            return before
        # A number opens with its first byte: refused there, it was the first choice.
        if before is None and after is not None and after.number:
            return after if len(after.content) == 1 else None
        return None

    def respelled(self, piece: bytes) -> bytes | None:
        """``piece`` as the text spells it, when a grounded text value refused it only for the
        case of its letters (``Greg`` where the text says ``greg raposo``), else None.

        A model capitalises names, and lowercase transcripts of speech or all-caps datelines
        don't: in the first 8 of the dev set's voice commands, 9 of the 16 refused first
        choices were refused for their case alone (``Greg`` for "greg raposo", ``O`` for
        "oxford") and the values closed empty; ``scripts/quality.py`` measured the voice
        commands at 24.9% before this and 27.7% after. Only the case of a letter changes;
        each character keeps the model's case where the text allows it, and the search goes
        back where a choice leads nowhere ("Greg" in "Great, play greg raposo": "Gre" fits
        "Great" first). Only the first grounded value the piece writes in is respelled, so the
        places searched are bounded by the text's occurrences of that value's prefixes (one
        per place and length).
        """
        chars = characters(piece)

        def search(twin: Grounding, i: int, value: int | None) -> tuple[bytes, bool] | None:
            if i == len(chars):
                return b"", False
            char, o = chars[i], twin._open
            options = [(char, False)]
            if o is not None and not o.number and not o.free and o.rule.kind == "text":
                value = o.out_start if value is None else value
                if o.out_start == value and not twin._esc:
                    options += [(other, True) for other in other_cases(char)]
            for spelled, changed in options:
                step = twin.fork()
                if step._feed(spelled):
                    rest = search(step, i + 1, value)
                    if rest is not None:
                        return spelled + rest[0], changed or rest[1]
            return None

        found = search(self.fork(), 0, None)
        return found[0] if found is not None and found[1] else None

    def case_changed(self) -> None:
        """The next piece written is the text's spelling of the model's choice in another case
        (``respelled``): the value it is in keeps a source only while the model stays with the
        text's words. A later word refused inside it marks it as having none (``refused``):
        ``The`` is respelled as the ``the`` of "the greg raposo songs" when the model meant
        "The Beatles"."""
        if self._open is not None:
            self._open.case_changed = True
        else:
            self._case_pending = True

    def blank_continuations(self, piece: bytes) -> list[bytes]:
        """Where the model wrote a blank the text doesn't have here, the text's own next bytes
        when they are a line break or tab (escaped): the model joins lines with a space where
        the text breaks them (an address over three lines of a receipt), and closing the value
        there instead would cut it short. Empty when that isn't the case."""
        o = self._open
        if o is None or o.rule.kind != "text" or not piece[:1].isspace() or self._esc:
            return []
        return [
            ahead
            for ahead in o.source.continuations(bytes(o.content), 48)
            if ahead[:2] in (b"\\n", b"\\r", b"\\t")
        ]
