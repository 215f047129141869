"""qwenjson: unstructured text to JSON that matches a JSON Schema, with a small local model.

Library use::

    from qwenjson import compile_schema, extract
    grammar = compile_schema({"type": "object", "properties": {"name": {"type": "string"}}})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["QwenJsonError", "__version__", "compile_schema", "extract"]

if TYPE_CHECKING:
    from qwenjson.errors import QwenJsonError
    from qwenjson.library import extract
    from qwenjson.schema import compile_schema


def __getattr__(name: str) -> Any:
    # Lazy: `import qwenjson` must stay cheap (no llama.cpp load) for the CLI's --help.
    if name == "compile_schema":
        from qwenjson.schema import compile_schema

        return compile_schema
    if name == "extract":
        from qwenjson.library import extract

        return extract
    if name == "QwenJsonError":
        from qwenjson.errors import QwenJsonError

        return QwenJsonError
    raise AttributeError(name)
