"""Entity names without the date after them: a wire story's dateline is a place, then the date.

News copy opens with a dateline, ``CHICAGO 1996-08-28``, and the 0.5B copying the place goes on
across the blank into the date: ``"locations": ["CHICAGO 1996-08-28"]``, a value right in its
words and wrong as a name (3 of the dev set's 20 news excerpts had one). No name of a person,
an organisation or a place ends in a calendar date, so an item of an entity list
(``qwenjson.labeling.entity_lists``) whose source ends where a date the text says ends, after a
blank, is cut before the date, and its evidence with it. Measured with ``scripts/quality.py
--no-anchor --source conllpp`` (the bench model, 2 threads): news NER 27.1 -> 29.5% (two
excerpts better, one worse by 0.07: its ``TALLINN`` then typed as a person).

Only at a date's end that is the value's end, and only when a name is left before the blank;
the cut itself, the evidence and the confidence are ``qwenjson.value_cuts``'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qwenjson.evidence import Annotated
from qwenjson.fields import Path
from qwenjson.source import SourceText
from qwenjson.value_cuts import cut_values

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
    starts_by_end: dict[int, list[int]] = {}
    for reading in source.readings("date").readings:
        start, end = reading.span
        starts_by_end.setdefault(end, []).append(start)
    if not starts_by_end or not lists:
        return found

    def cutter(path: Path, value: str, span: tuple[int, int]) -> tuple[int, int] | None:
        start, end = span
        # The longest date first: of "25 March 2018" and "March 2018", the whole date goes.
        for date_start in sorted(starts_by_end.get(end, ())):
            if date_start <= start:
                continue
            head = value[: date_start - start]
            name = head.rstrip(_BETWEEN)
            # A blank before the date: "Report-1996-08-28" is no name and its dateline.
            if name and any(c.isspace() for c in head[len(name) :]):
                return 0, len(name)
        return None

    items = {(name, None) for name in lists}
    return cut_values(found, cutter, source, is_valid, where=items)
