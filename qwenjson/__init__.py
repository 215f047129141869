"""qwenjson: unstructured text to JSON that matches a JSON Schema, with a small local model.

Library use::

    from qwenjson import compile_schema, extract
    grammar = compile_schema({"type": "object", "properties": {"name": {"type": "string"}}})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The errors a caller catches (each with its exit code): importable from here, as the README
# names them.
_ERRORS = (
    "QwenJsonError",
    "UsageError",
    "SchemaError",
    "ModelError",
    "InputError",
    "NoValidOutputError",
    "TimeoutExpired",
    "ClusterError",
    "QwenJsonWarning",
)

__all__ = [
    "ClusterError",
    "Engine",
    "InputError",
    "ModelError",
    "NoValidOutputError",
    "QwenJsonError",
    "QwenJsonWarning",
    "SchemaError",
    "TimeoutExpired",
    "UsageError",
    "__version__",
    "compile_schema",
    "extract",
]

if TYPE_CHECKING:
    from qwenjson.engine import Engine
    from qwenjson.errors import (
        ClusterError,
        InputError,
        ModelError,
        NoValidOutputError,
        QwenJsonError,
        QwenJsonWarning,
        SchemaError,
        TimeoutExpired,
        UsageError,
    )
    from qwenjson.library import extract
    from qwenjson.schema import compile_schema
else:
    # Not seen by type checkers: a module __getattr__ typed to return Any made every name
    # "importable" from qwenjson under mypy --strict, typos too (`from qwenjson import extrakt`).

    def __getattr__(name: str) -> Any:
        # Lazy: `import qwenjson` must stay cheap (no llama.cpp load) for the CLI's --help.
        if name == "compile_schema":
            from qwenjson.schema import compile_schema

            return compile_schema
        if name == "extract":
            from qwenjson.library import extract

            return extract
        if name == "Engine":
            from qwenjson.engine import Engine

            return Engine
        if name in _ERRORS:
            from qwenjson import errors

            return getattr(errors, name)
        raise AttributeError(f"module 'qwenjson' has no attribute {name!r}")
