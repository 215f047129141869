"""Which JSON Schema draft a document is written in: the one answer the compiler, `$ref`
resolution and validation share.

A document says it with ``$schema``; none means 2020-12. The drafts qwenjson knows are those
``referencing`` (jsonschema's reference library) knows, draft 3 excepted (neither jsonschema's
checks here nor the compiler read its keywords); anything else is refused, never guessed at.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jsonschema
import referencing.jsonschema
from jsonschema.protocols import Validator

from qwenjson.errors import SchemaError


@dataclass(frozen=True)
class Dialect:
    """One draft: its number (4, 6, 7, 2019, 2020) and jsonschema's validator for it."""

    draft: int
    validator: type[Validator]

    @property
    def id_key(self) -> str:
        """The keyword that gives a subschema its URI (``id`` in draft 4)."""
        return "id" if self.draft == 4 else "$id"

    @property
    def ref_hides_siblings(self) -> bool:
        """In draft 7 and earlier, keywords beside ``$ref`` are ignored."""
        return self.draft <= 7


# referencing's specifications (it tells which one a `$schema` URI names) → ours.
_DIALECTS: dict[str, Dialect] = {
    referencing.jsonschema.DRAFT202012.name: Dialect(2020, jsonschema.Draft202012Validator),
    referencing.jsonschema.DRAFT201909.name: Dialect(2019, jsonschema.Draft201909Validator),
    referencing.jsonschema.DRAFT7.name: Dialect(7, jsonschema.Draft7Validator),
    referencing.jsonschema.DRAFT6.name: Dialect(6, jsonschema.Draft6Validator),
    referencing.jsonschema.DRAFT4.name: Dialect(4, jsonschema.Draft4Validator),
}
DEFAULT = _DIALECTS[referencing.jsonschema.DRAFT202012.name]
# The URIs we accept, less their scheme (for the error message).
_KNOWN = (
    "json-schema.org/draft/2020-12/schema",
    "json-schema.org/draft/2019-09/schema",
    "json-schema.org/draft-07/schema",
    "json-schema.org/draft-06/schema",
    "json-schema.org/draft-04/schema",
)


def dialect_of(schema: Any) -> Dialect:
    """The dialect of a document by its ``$schema`` (2020-12 when absent).

    Raises ``SchemaError`` at ``/$schema`` for a ``$schema`` that isn't a string or names no
    draft qwenjson knows.
    """
    if not isinstance(schema, dict) or "$schema" not in schema:
        return DEFAULT
    uri = schema["$schema"]
    if not isinstance(uri, str):
        raise SchemaError("$schema must be a string", "/$schema")
    return _lookup(uri)


@functools.lru_cache(maxsize=64)
def _lookup(uri: str) -> Dialect:
    # Drafts are published under http and https alike, with or without the empty fragment
    # (referencing knows each under one scheme and strips the fragment itself).
    address = uri.rstrip("#").split("://", 1)[-1]
    for scheme in ("https://", "http://"):
        try:
            spec = referencing.jsonschema.specification_with(scheme + address)
        except referencing.jsonschema.UnknownDialect:
            continue
        dialect = _DIALECTS.get(spec.name)
        if dialect is not None:
            return dialect
    known = ", ".join(sorted(_KNOWN))
    raise SchemaError(f"unknown $schema {uri!r}; known: {known}", "/$schema")


def draft_of(schema: Any) -> int:
    """The draft number a document is written for: 4, 6, 7, 2019 or 2020."""
    return dialect_of(schema).draft


__all__ = ["DEFAULT", "Dialect", "dialect_of", "draft_of"]
