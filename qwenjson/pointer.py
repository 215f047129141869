"""JSON pointers (RFC 6901): the one place that escapes and unescapes their tokens."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def to_pointer(parts: Iterable[object]) -> str:
    """``/a/0/b~1c`` for the path ``("a", 0, "b/c")``; the whole document is ``""``."""
    return "".join("/" + escape_token(str(p)) for p in parts)


def escape_token(token: str) -> str:
    """One reference token: ``~`` as ``~0``, ``/`` as ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    """The inverse of ``escape_token``: ``~1`` before ``~0`` (RFC 6901), so ``~01`` is ``~1``."""
    return token.replace("~1", "/").replace("~0", "~")


def follow_local_refs(root: Mapping[str, Any], node: Any, hops: int = 16) -> Any:
    """``node`` with its local ``$ref`` (``#/…``) followed, up to ``hops`` times: the target's
    keywords with ``node``'s other keywords on top. A remote or broken reference, or a target
    that isn't an object, leaves ``node`` as it stands (for describing a schema, not for
    validating one: ``qwenjson.schema.refs`` resolves references exactly)."""
    for _ in range(hops):
        if not isinstance(node, Mapping):
            return node
        ref = node.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return node
        target: Any = root
        for part in ref[1:].split("/")[1:]:
            part = unescape_token(part)
            if not isinstance(target, Mapping) or part not in target:
                return node
            target = target[part]
        if not isinstance(target, Mapping):
            return node
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node
