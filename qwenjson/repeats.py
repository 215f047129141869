"""Lists the schema says hold each item once (``uniqueItems``), with the model's repeats taken out.

No grammar can say "each item once", so the model may write a repeat; the span constraint lets
it where the text says the words again ("Paris, London, Paris, Rome" is four stops). Such a
document used to fail validation on every attempt (exit 5, the record lost) though the model
had given all it knew: a later copy of an item says nothing the first copy doesn't. So a list
that breaks ``uniqueItems`` keeps the first copy of each item (and its evidence), and the
document is printed only if it then validates; anything else about it is as the model wrote it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from jsonschema.protocols import Validator

from qwenjson.validate import repeated_lists

Path = tuple[str | int, ...]

# Rounds of "take the repeats out, validate again": each finds lists one level further out (an
# inner repeat taken out can make two outer items equal), so this is a bound on nesting.
_MAX_ROUNDS = 16


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema defines it for ``uniqueItems``: ``1`` and ``1.0`` are one number,
    ``true`` is not ``1`` (Python's ``==`` says ``True == 1``), members in any order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def repeats_to_drop(instance: Any, validator: Validator) -> frozenset[Path]:
    """The lists of ``instance`` (their paths in it) that keep only the first copy of each item
    for none to break a ``uniqueItems``: those the validator finds, and then those it finds in
    the document without their repeats, as paths in ``instance`` (``[["x","x"],["x"]]`` under
    two levels of ``uniqueItems``: the inner list, then the outer one)."""
    lists: frozenset[Path] = frozenset()
    for _ in range(_MAX_ROUNDS):
        where: dict[Path, Path] = {}
        found = repeated_lists(_without(instance, lists, (), (), where), validator)
        more = lists | {where[p] for p in found if p in where}
        if more == lists:
            break
        lists = more
    return lists


def repair(instance: Any, validator: Validator) -> tuple[Any, frozenset[Path]] | None:
    """``instance`` without the repeats that break its ``uniqueItems``, and the lists they
    were taken from, when that makes it valid; else None (the document stays invalid)."""
    lists = repeats_to_drop(instance, validator)
    if not lists:
        return None
    fixed = without_repeats(instance, lists)
    return (fixed, lists) if validator.is_valid(fixed) else None


def without_repeats(instance: Any, lists: Collection[Path]) -> Any:
    """``instance`` with each list at one of ``lists`` keeping the first copy of each item
    (inner lists first, so items that differ only by an inner repeat are one item)."""
    return _without(instance, lists, (), (), {})


def _without(
    instance: Any, lists: Collection[Path], at: Path, to: Path, where: dict[Path, Path]
) -> Any:
    """``without_repeats`` of ``instance`` at ``at``, placed at ``to`` in the result; ``where``
    gets each list's path in the result -> its path in the instance."""
    if isinstance(instance, dict):
        return {k: _without(v, lists, (*at, k), (*to, k), where) for k, v in instance.items()}
    if not isinstance(instance, list):
        return instance
    where[to] = at
    kept: list[Any] = []
    for i, v in enumerate(instance):
        # Placed where it will sit if kept; a repeat's paths are forgotten below.
        inner: dict[Path, Path] = {}
        item = _without(v, lists, (*at, i), (*to, len(kept)), inner)
        if at in lists and any(json_equal(item, k) for k in kept):
            continue
        where.update(inner)
        kept.append(item)
    return kept
