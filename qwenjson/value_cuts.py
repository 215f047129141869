"""A document's grounded strings cut to the part that is the field's, evidence and all.

The step under ``qwenjson.datelines`` (a name without the date after it),
``qwenjson.person_names`` (a name without its title or honorific) and ``qwenjson.kind_cuts``
(one name, ending in its kind): each says, of a string, which part of it to keep; this walks
the document, cuts, moves the evidence, and keeps the document whole if the cut one would not
validate.

Only a string that is the text's own words at its evidence is cut (a grounded value always is;
then the part kept is the text's words too, and its evidence slices the input to it). The
confidence stays the one the model gave the whole span: the tokens cut off had probabilities of
at most 1, so it is a lower bound of the part's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

from qwenjson.evidence import Annotated
from qwenjson.fields import Path
from qwenjson.pointer import to_pointer, value_at
from qwenjson.source import SourceText

__all__ = ["Cutter", "cut_values"]

# Of the string at a path, with its source ``[start, end)`` in the input: the part to keep, as
# ``(lo, hi)`` offsets into the string (a part that is not empty), or None to keep it whole.
Cutter = Callable[[Path, str, tuple[int, int]], tuple[int, int] | None]


def cut_values(
    found: Annotated,
    cutter: Cutter,
    source: SourceText,
    is_valid: Callable[[Any], bool],
) -> Annotated:
    """``found`` with each string ``cutter`` gives a part of cut to that part, its evidence
    with it; ``found`` itself when none is, or the document would then not validate."""
    data: Any = None
    evidence = dict(found.evidence)
    for path, value in _strings(found.data, ()):
        pointer = to_pointer(path)
        span = evidence.get(pointer)
        if span is None:
            continue
        start, end = span
        if source.text[start - source.offset : end - source.offset] != value:
            continue
        part = cutter(path, value, (start, end))
        if part is None or part == (0, len(value)):
            continue
        lo, hi = part
        if not 0 <= lo < hi <= len(value):
            raise ValueError(f"a cut must keep a part of {value!r}, not [{lo}, {hi})")
        if data is None:
            data = copy.deepcopy(found.data)
        value_at(data, path[:-1])[path[-1]] = value[lo:hi]
        evidence[pointer] = [start + lo, start + hi]
    if data is None or not is_valid(data):
        return found
    return Annotated(data, evidence, found.confidence, found.unsupported)


def _strings(data: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """The strings of ``data`` below its root, with their paths, in document order."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _strings(value, (*path, i))
    elif isinstance(data, str) and path:
        yield path, data
