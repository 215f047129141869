"""Reading schemas and validating documents with jsonschema, with readable JSON-pointer errors.

Validation is the last line of the fail-closed promise: whatever the grammar could not carry
exactly is checked here before anything reaches stdout.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import jsonschema
from jsonschema import FormatChecker
from jsonschema.exceptions import SchemaError as JsonSchemaSchemaError
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from qwenjson.errors import SchemaError

Schema = dict[str, Any] | bool

# `$schema` URIs we validate by; anything else is refused rather than guessed at.
_DRAFTS: dict[str, type[Validator]] = {
    "json-schema.org/draft/2020-12/schema": jsonschema.Draft202012Validator,
    "json-schema.org/draft/2019-09/schema": jsonschema.Draft201909Validator,
    "json-schema.org/draft-07/schema": jsonschema.Draft7Validator,
    "json-schema.org/draft-06/schema": jsonschema.Draft6Validator,
    "json-schema.org/draft-04/schema": jsonschema.Draft4Validator,
}
DEFAULT_DRAFT: type[Validator] = jsonschema.Draft202012Validator


def load_schema(source: str | Path) -> Schema:
    """Read a schema from a file path, or from inline JSON text.

    Raises SchemaError (exit 3) when the file is missing or unreadable, or the text isn't JSON,
    or the JSON isn't a valid JSON Schema.
    """
    path = Path(source)
    text: str
    origin: str
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a name too long to be a path: it's inline text
        is_file = False
    if is_file:
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except OSError as e:
            raise SchemaError(f"cannot read schema file {str(path)!r}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise SchemaError(f"schema file {str(path)!r} is not UTF-8 text") from e
        origin = str(path)
    elif isinstance(source, str) and (
        source.lstrip()[:1] in ("{", "[") or source in ("true", "false")
    ):
        text, origin = str(source), "inline schema"
    elif path.exists():
        raise SchemaError(f"schema path {str(path)!r} is not a regular file")
    else:
        return _concise_schema(str(source))
    schema = parse_schema_text(text, origin)
    check_metaschema(schema)
    return schema


def _looks_like_path(source: str) -> bool:
    return source.endswith((".json", ".JSON")) or "/" in source or "\\" in source


def _concise_schema(source: str) -> Schema:
    """The concise syntax (``'name, age int 0..150'``), compiled to a JSON Schema.

    Text that isn't the concise syntax but looks like a path is reported as a missing file.
    """
    from qwenjson.dsl import DslError, parse_dsl

    try:
        schema: Schema = parse_dsl(source)
    except DslError:
        if _looks_like_path(source):
            raise SchemaError(f"schema file {source!r} not found") from None
        raise
    check_metaschema(schema)
    return schema


def parse_schema_text(text: str, origin: str) -> Schema:
    """Parse JSON schema text; errors name the line and column."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SchemaError(
            f"{origin} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from e
    if not isinstance(value, dict | bool):
        raise SchemaError(f"{origin} is not a JSON Schema: expected an object or a boolean")
    return cast(Schema, value)


def validator_class(schema: Schema) -> type[Validator]:
    """The jsonschema validator for the schema's ``$schema`` (2020-12 when absent)."""
    if not isinstance(schema, dict) or "$schema" not in schema:
        return DEFAULT_DRAFT
    uri = schema["$schema"]
    if not isinstance(uri, str):
        raise SchemaError("$schema must be a string", "/$schema")
    # Drafts are published under http and https alike, with or without the empty fragment.
    key = uri.rstrip("#").split("://", 1)[-1]
    if key not in _DRAFTS:
        known = ", ".join(sorted(_DRAFTS))
        raise SchemaError(f"unknown $schema {uri!r}; known: {known}", "/$schema")
    return _DRAFTS[key]


def check_metaschema(schema: Schema) -> None:
    """Raise SchemaError, naming the JSON pointer, if ``schema`` fails its draft's metaschema."""
    cls = validator_class(schema)
    try:
        cls.check_schema(schema)  # type: ignore[arg-type]  # the stubs omit boolean schemas
    except JsonSchemaSchemaError as e:
        pointer = _pointer(e.absolute_path)
        raise SchemaError(f"not a valid JSON Schema: {e.message}", pointer) from e


def make_validator(schema: Schema) -> Validator:
    """A validator for ``schema`` that also checks ``format`` (see ``FORMAT_CHECKER``)."""
    cls = validator_class(schema)
    return cls(schema, format_checker=FORMAT_CHECKER)


def validation_errors(instance: Any, validator: Validator) -> list[str]:
    """Readable validation errors, one per line: ``/json/pointer: message``."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    return [_describe(e) for e in errors]


def _describe(error: ValidationError) -> str:
    best = jsonschema.exceptions.best_match([error])
    return f"{_pointer(error.absolute_path) or '/'}: {best.message}"


def _pointer(parts: Iterable[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


# jsonschema checks only the formats whose optional packages are installed; it silently passes
# the rest (date-time, time, duration, uri, hostname without extras). Failing closed means
# checking them ourselves, with the standard library.
FORMAT_CHECKER = FormatChecker()

_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$")
_DURATION = re.compile(
    r"^P(?:(?:\d+Y(?:\d+M(?:\d+D)?)?|\d+M(?:\d+D)?|\d+D)(?:T(?:\d+H(?:\d+M(?:\d+S)?)?|\d+M(?:\d+S)?|\d+S))?"
    r"|T(?:\d+H(?:\d+M(?:\d+S)?)?|\d+M(?:\d+S)?|\d+S)|\d+W)$"
)
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    m = _DATE_TIME.match(value)
    if not m:
        return False
    try:
        dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return False
    return _time_fields_ok(int(m[4]), int(m[5]), int(m[6]), m[8])


def _time_fields_ok(hour: int, minute: int, second: int, offset: str) -> bool:
    if hour > 23 or minute > 59 or second > 60:
        return False
    if offset not in ("Z", "z"):
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            return False
    return True


@FORMAT_CHECKER.checks("time")
def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    m = _TIME.match(value)
    return bool(m) and _time_fields_ok(int(m[1]), int(m[2]), int(m[3]), m[5])  # type: ignore[index]


@FORMAT_CHECKER.checks("duration")
def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or bool(_DURATION.match(value))


@FORMAT_CHECKER.checks("hostname")
def _is_hostname(value: object) -> bool:
    if not isinstance(value, str):
        return True
    name = value[:-1] if value.endswith(".") else value
    return 0 < len(name) <= 253 and all(_HOST_LABEL.match(label) for label in name.split("."))


@FORMAT_CHECKER.checks("uri")
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _URI_CHARS.match(value):
        return False
    scheme = value.split(":", 1)[0] if ":" in value else ""
    if not scheme or not _SCHEME.match(scheme):
        return False
    try:
        urlsplit(value)
    except ValueError:
        return False
    return True


@FORMAT_CHECKER.checks("uri-reference")
def _is_uri_reference(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        urlsplit(value)
    except ValueError:
        return False
    return bool(_URI_CHARS.match(value))


@FORMAT_CHECKER.checks("json-pointer")
def _is_json_pointer(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return value == "" or (value.startswith("/") and not re.search(r"~[^01]|~$", value))


for _name, _func in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers.items():
    if _name not in FORMAT_CHECKER.checkers:
        FORMAT_CHECKER.checkers[_name] = _func
