"""Entity names without the date after them: a wire story's dateline is a place, then the date.

News copy opens with a dateline, ``CHICAGO 1996-08-28``, and the 0.5B copying the place goes on
across the blank into the date: ``"locations": ["CHICAGO 1996-08-28"]``, a value right in its
words and wrong as a name (3 of the dev set's 20 news excerpts had one). No name of a person,
an organisation or a place ends in a calendar date, so an item of an entity list
(``qwenjson.labeling.entity_lists``) whose source ends where a date the text says ends, after a
blank, is cut before the date, and its evidence with it. Measured with ``scripts/quality.py
--no-anchor --source conllpp`` (the bench model, 2 threads): news NER 27.1 -> 29.5% (two
excerpts better, one worse by 0.07: its ``TALLINN`` then typed as a person).

Only a value that is the text's own words there is cut (a grounded value always is), only at
a date's end that is the value's end, and only when a name is left before the blank. The
confidence stays the one the model gave the whole span: the date's tokens had probabilities of
at most 1, so it is a lower bound of the name's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qwenjson.evidence import Annotated
from qwenjson.pointer import to_pointer
from qwenjson.source import SourceText

__all__ = ["trim_dates"]

# What may stand between the name and its date besides blanks ("PARIS, 1996-08-28").
_BETWEEN = " \t,;-\u2013\u2014"


def trim_dates(
    found: Annotated,
    lists: Sequence[str],
    source: SourceText,
    is_valid: Callable[[Any], bool],
) -> Annotated:
    """``found`` with each string item of the root's ``lists`` that ends in a date the text
    says (``CHICAGO 1996-08-28``) cut before it, its evidence with it; unchanged when no item
    is, or the document would then not validate (a ``minLength``, a ``uniqueItems``)."""
    data = found.data
    if not isinstance(data, dict):
        return found
    starts_by_end: dict[int, list[int]] = {}
    for reading in source.readings("date").readings:
        start, end = reading.span
        starts_by_end.setdefault(end, []).append(start)
    if not starts_by_end:
        return found
    out = dict(data)
    evidence = dict(found.evidence)
    for name in lists:
        items = data.get(name)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            pointer = to_pointer((name, i))
            cut = _without_date(item, evidence.get(pointer), source, starts_by_end)
            if cut is not None:
                if out[name] is items:
                    out[name] = list(items)
                out[name][i] = cut
                start = evidence[pointer][0]  # type: ignore[index]  # cut: it has a source
                evidence[pointer] = [start, start + len(cut)]
    if out == data or not is_valid(out):
        return found
    return Annotated(out, evidence, found.confidence, found.unsupported)


def _without_date(
    item: Any,
    span: list[int] | None,
    source: SourceText,
    starts_by_end: dict[int, list[int]],
) -> str | None:
    """``item`` without the date its source ends in, or None when it doesn't end so."""
    if not isinstance(item, str) or span is None:
        return None
    start, end = span
    text, offset = source.text, source.offset
    if text[start - offset : end - offset] != item:
        return None
    # The longest date first: of "25 March 2018" and "March 2018", the whole date goes.
    for date_start in sorted(starts_by_end.get(end, ())):
        if date_start <= start:
            continue
        head = text[start - offset : date_start - offset]
        name = head.rstrip(_BETWEEN)
        # A blank before the date: "Report-1996-08-28" is no name and its dateline.
        if name and any(c.isspace() for c in head[len(name) :]):
            return name
    return None
