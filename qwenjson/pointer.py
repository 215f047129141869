"""JSON pointers (RFC 6901): the one place that escapes and unescapes their tokens."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def to_pointer(parts: Iterable[object]) -> str:
    """``/a/0/b~1c`` for the path ``("a", 0, "b/c")``; the whole document is ``""``."""
    return "".join("/" + escape_token(str(p)) for p in parts)


def value_at(data: Any, path: Iterable[str | int]) -> Any:
    """The node of ``data`` at ``path`` (keys and indices), which must be there."""
    for part in path:
        data = data[part]
    return data


def leaf_pointers(data: Any, path: tuple[str | int, ...] = ()) -> list[str]:
    """The pointers of ``data``'s scalars, in document order."""
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in leaf_pointers(v, (*path, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in leaf_pointers(v, (*path, i))]
    return [to_pointer(path)]


def escape_token(token: str) -> str:
    """One reference token: ``~`` as ``~0``, ``/`` as ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    """The inverse of ``escape_token``: ``~1`` before ``~0`` (RFC 6901), so ``~01`` is ``~1``."""
    return token.replace("~1", "/").replace("~0", "~")


def follow_local_refs(root: Mapping[str, Any], node: Any, hops: int = 16) -> Any:
    """``node`` with its `$ref` followed (see :func:`qwenjson.schema.refs.follow_refs`, the one
    resolver); kept here for the callers that describe a schema."""
    from qwenjson.schema.refs import follow_refs  # qwenjson.schema imports this module

    return follow_refs(root, node, hops)
