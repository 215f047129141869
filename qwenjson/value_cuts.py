"""A document's grounded strings cut to the part that is the field's, evidence and all.

The step under ``qwenjson.datelines`` (a name without the date after it),
``qwenjson.person_names`` (a name without its title or honorific) and ``qwenjson.kind_cuts``
(one name, ending in its kind) and ``qwenjson.proper_names`` (no name at all): each says, of a
string, which part of it to keep, or, of a list item, that none is; this walks the document,
cuts, moves the evidence, and keeps the document whole if the cut one would not validate.

Only a string that is the text's own words at its evidence is cut (a grounded value always is;
then the part kept is the text's words too, and its evidence slices the input to it). The
confidence stays the one the model gave the whole span: the tokens cut off had probabilities of
at most 1, so it is a lower bound of the part's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, TypeVar

from qwenjson.evidence import Annotated, kept_part
from qwenjson.fields import Path, Pattern, pattern_of
from qwenjson.pointer import to_pointer, value_at
from qwenjson.source import SourceText

__all__ = ["DROP", "Cutter", "cut_values"]

V = TypeVar("V")

# What a cutter says of a list item that is no value of its list at all: leave it out.
DROP = (0, 0)

# Of the string at a path, with its source ``[start, end)`` in the input: the part to keep, as
# ``(lo, hi)`` offsets into the string (a part that is not empty), None to keep it whole, or
# ``DROP`` (list items only).
Cutter = Callable[[Path, str, tuple[int, int]], tuple[int, int] | None]


def cut_values(
    found: Annotated,
    cutter: Cutter,
    source: SourceText,
    is_valid: Callable[[Any], bool],
    where: Collection[Pattern] | None = None,
) -> Annotated:
    """``found`` with each string ``cutter`` gives a part of cut to that part, its evidence
    with it, and each list item it says ``DROP`` of left out (the items after it move up, with
    their evidence, confidence and unsupported marks); ``found`` itself when nothing changes,
    or the document would then not validate. ``where``: the patterns of the strings the
    cutter is asked of (None: every string)."""
    data: Any = None
    evidence = dict(found.evidence)
    dropped: list[Path] = []
    for path, value in _strings(found.data, ()):
        if where is not None and pattern_of(path) not in where:
            continue
        pointer = to_pointer(path)
        span = evidence.get(pointer)
        if span is None:
            continue
        start, end = span
        if not source.says(value, span):
            continue
        part = cutter(path, value, (start, end))
        if part is None or part == (0, len(value)):
            continue
        if part == DROP:
            if not isinstance(path[-1], int):
                raise ValueError(f"only a list item can be dropped, not {pointer!r}")
            dropped.append(path)
            continue
        kept, (lo, hi) = kept_part(value, span, part)
        if data is None:
            data = copy.deepcopy(found.data)
        value_at(data, path[:-1])[path[-1]] = kept
        evidence[pointer] = [lo, hi]
    if data is None and not dropped:
        return found
    if data is None:
        data = copy.deepcopy(found.data)
    confidence, unsupported = dict(found.confidence), found.unsupported
    # The deepest lists first: an item dropped from a list inside another list's item is
    # named by that item's place before the outer list shifts it.
    for parent in sorted(dict.fromkeys(p[:-1] for p in dropped), key=len, reverse=True):
        moved = _drop(data, parent, {p[-1] for p in dropped if p[:-1] == parent})
        evidence = _rekeyed(evidence, moved)
        confidence = _rekeyed(confidence, moved)
        unsupported = tuple(_rekeyed(dict.fromkeys(unsupported), moved))
    if not is_valid(data):
        return found
    return Annotated(data, evidence, confidence, unsupported)


def _drop(data: Any, parent: Path, gone: set[str | int]) -> dict[str, str]:
    """Remove the items at the indices ``gone`` from the list at ``parent`` in ``data`` (in
    place); the pointers of its items, old -> new ("" for those gone)."""
    items = value_at(data, parent)
    kept = [i for i in range(len(items)) if i not in gone]
    moved = {to_pointer((*parent, i)): "" for i in gone if isinstance(i, int)}
    moved.update(
        {to_pointer((*parent, old)): to_pointer((*parent, new)) for new, old in enumerate(kept)}
    )
    items[:] = [items[i] for i in kept]
    return moved


def _rekeyed(mapping: Mapping[str, V], moved: Mapping[str, str]) -> dict[str, V]:
    """``mapping`` with its pointers under moved list items renamed, those under dropped ones
    left out."""
    out: dict[str, V] = {}
    for pointer, value in mapping.items():
        prefix = _moved_prefix(pointer, moved)
        if prefix is None:
            out[pointer] = value
        elif moved[prefix]:
            out[moved[prefix] + pointer[len(prefix) :]] = value
    return out


def _moved_prefix(pointer: str, moved: Mapping[str, str]) -> str | None:
    """The pointer among ``moved``'s keys that ``pointer`` is or is under, if any."""
    parts = pointer.split("/")
    for n in range(len(parts), 0, -1):
        prefix = "/".join(parts[:n])
        if prefix in moved:
            return prefix
    return None


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
