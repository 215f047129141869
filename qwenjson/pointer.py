"""JSON pointers (RFC 6901): the one place that escapes and unescapes their tokens."""

from __future__ import annotations

from collections.abc import Iterable


def to_pointer(parts: Iterable[object]) -> str:
    """``/a/0/b~1c`` for the path ``("a", 0, "b/c")``; the whole document is ``""``."""
    return "".join("/" + escape_token(str(p)) for p in parts)


def escape_token(token: str) -> str:
    """One reference token: ``~`` as ``~0``, ``/`` as ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    """The inverse of ``escape_token``: ``~1`` before ``~0`` (RFC 6901), so ``~01`` is ``~1``."""
    return token.replace("~1", "/").replace("~0", "~")
