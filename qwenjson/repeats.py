"""Lists the schema says hold each item once (``uniqueItems``), with the model's repeats taken out.

No grammar can say "each item once", so the model may write a repeat; the span constraint lets
it where the text says the words again ("Paris, London, Paris, Rome" is four stops). Such a
document used to fail validation on every attempt (exit 5, the record lost) though the model
had given all it knew: a later copy of an item says nothing the first copy doesn't. So a list
that breaks ``uniqueItems`` (``qwenjson.validate.repeated_lists``) keeps the first copy of each
item (and its evidence), and the document is printed only if it then validates; anything else
about it is as the model wrote it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

Path = tuple[str | int, ...]


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


def without_repeats(instance: Any, lists: Collection[Path], at: Path = ()) -> Any:
    """``instance`` with each list at one of ``lists`` keeping the first copy of each item
    (inner lists first, so items that differ only by an inner repeat are one item)."""
    if isinstance(instance, dict):
        return {k: without_repeats(v, lists, (*at, k)) for k, v in instance.items()}
    if not isinstance(instance, list):
        return instance
    items = [without_repeats(v, lists, (*at, i)) for i, v in enumerate(instance)]
    if at not in lists:
        return items
    kept: list[Any] = []
    for item in items:
        if not any(json_equal(item, k) for k in kept):
            kept.append(item)
    return kept
