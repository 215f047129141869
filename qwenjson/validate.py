"""Reading schemas and validating documents with jsonschema, with readable JSON-pointer errors.

Validation is the last line of the fail-closed promise: whatever the grammar could not carry
exactly is checked here before anything reaches stdout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib
import json
import re
import threading
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import jsonschema
from jsonschema import FormatChecker
from jsonschema.exceptions import SchemaError as JsonSchemaSchemaError
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from referencing import Registry

from qwenjson import deadline, jsonstrict
from qwenjson.errors import SchemaError, TimeoutExpired, UnsupportedKeywordError
from qwenjson.schema.formats import EXACT_FORMATS, format_checker
from qwenjson.schema.regex_syntax import ecma_regex
from qwenjson.utf8 import not_utf8

Schema = dict[str, Any] | bool


def load_schema(source: str | Path) -> Schema:
    """Read a schema from a file path, inline JSON text or the concise syntax, and check it.

    Raises SchemaError (exit 3) when the file is missing or unreadable, or the text isn't JSON,
    or the JSON isn't a valid JSON Schema.
    """
    schema = read_schema(source)
    check_metaschema(schema)
    return schema


def read_schema(source: str | Path) -> Schema:
    """``load_schema`` without the metaschema check, for a caller that checks once itself
    (``qwenjson.plan.prepare_job``)."""
    if isinstance(source, str) and source.startswith("\ufeff") and not _exists(Path(source)):
        source = source[1:]  # `-s "$(cat schema.json)"` of a file with a BOM: read as the file is
    if isinstance(source, str) and not source.strip():
        # `-s "$SCHEMA"` with the variable unset: Path("") would be the current directory.
        raise SchemaError("the schema is empty: give a file, inline JSON or concise text")
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
    elif isinstance(source, str) and (bad := not_utf8(source)) and not _plainly_a_path(source):
        # Name the byte, rather than report a character no one typed (a missing file's name
        # is reported as such below).
        raise SchemaError(f"the inline schema is not UTF-8 text ({bad})")
    elif isinstance(source, str) and (
        source.lstrip()[:1] in ("{", "[") or source in ("true", "false")
    ):
        try:
            return parse_schema_text(source, "inline schema")
        except SchemaError as e:
            raise _braced_concise(source, e) from e
    elif _exists(path):
        raise SchemaError(f"schema path {str(path)!r} is not a regular file")
    else:
        return _concise_schema(str(source))
    try:
        return parse_schema_text(text, origin)
    except SchemaError as e:
        if isinstance(source, str) and re.fullmatch(r"[\w-]+", source):
            # `-s name` where this directory has a file "name": the file wins, silently.
            raise SchemaError(
                f"{e.problem} (read as the file {source!r} in this directory, which exists; "
                f"for the concise syntax, quote the name: '\"{source}\"')",
                e.pointer,
            ) from e
        raise


def _braced_concise(source: str, error: SchemaError) -> SchemaError:
    """``error`` (inline JSON that isn't), with a hint when ``source`` is the concise syntax in
    braces (``'{name, age int}'``): its top level is already an object, so it is read as JSON."""
    from qwenjson.dsl import DslError, parse_dsl

    inner = source.strip()
    braced = inner.startswith("{") and inner.endswith("}")
    if not braced or not isinstance(error.__cause__, json.JSONDecodeError):
        return error
    if inner[1:-1].lstrip()[:1] == '"':  # '{"type": "object",}': JSON with a slip in it
        return error
    try:
        parse_dsl(inner[1:-1])
    except DslError:
        return error
    hint = (
        f"; read as JSON since it begins with '{{': in the concise syntax the top level is "
        f"already an object, so write {inner[1:-1].strip()!r}"
    )
    return SchemaError(str(error) + hint)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long to be a path (ENAMETOOLONG): it's concise syntax
        return False


def _looks_like_path(source: str) -> bool:
    return source.endswith((".json", ".JSON")) or "/" in source or "\\" in source


def _plainly_a_path(source: str) -> bool:
    """A file name rather than schema text, even with bytes that aren't UTF-8: not JSON, and
    ``.json`` at the end, or a ``/`` with no blank or comma (which the concise syntax has
    between fields, and a ``$schema`` URL or a description may have)."""
    if source.lstrip()[:1] in ("{", "[") or not _looks_like_path(source):
        return False
    return source.endswith((".json", ".JSON")) or not any(c.isspace() or c == "," for c in source)


def _concise_schema(source: str) -> Schema:
    """The concise syntax (``'name, age int 0..150'``), compiled to a JSON Schema.

    Text that isn't the concise syntax but is plainly a path (``schemas/person.json``) is
    reported as a missing file; other text keeps the syntax error, which names the column
    (``born: dd/mm/yyyy, age: int`` has a ``/`` but is no path).
    """
    from qwenjson.dsl import DslError, parse_dsl

    try:
        schema: Schema = parse_dsl(source)
    except DslError:
        # A path with a blank in it ("/mnt/my dir/s.schema") is a path still when it starts
        # like one and has no comma (between fields, never in a file name one types).
        starts_like_a_path = source.startswith(("/", "./", "../", "~/")) and "," not in source
        if _plainly_a_path(source) or starts_like_a_path:
            raise SchemaError(f"schema file {source!r} not found") from None
        raise
    return schema


def parse_schema_text(text: str, origin: str) -> Schema:
    """Parse JSON schema text strictly; errors name the line and column, or the JSON pointer
    (NaN, Infinity, duplicate keys, lone surrogates, nesting too deep: see ``jsonstrict``)."""
    try:
        value = jsonstrict.loads(text)
    except json.JSONDecodeError as e:
        raise SchemaError(
            f"{origin} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from e
    except jsonstrict.JsonValueError as e:
        raise SchemaError(f"{origin} is not strict JSON: {e.message}", e.pointer) from e
    if not isinstance(value, dict | bool):
        raise SchemaError(f"{origin} is not a JSON Schema: expected an object or a boolean")
    return cast(Schema, value)


def validator_class(schema: Schema) -> type[Validator]:
    """The jsonschema validator for the schema's ``$schema`` (2020-12 when absent); an unknown
    ``$schema`` is refused, not guessed at (``qwenjson.schema.dialect``, which the compiler
    reads too)."""
    from qwenjson.schema.dialect import dialect_of

    return dialect_of(schema).validator


def _check_instances(schema: Any) -> None:
    """JsonValueError where an ``enum`` or ``const`` holds what JSON can't (an Enum member or a
    Decimal a Python caller put there): the prompt and the grammar write those values out.
    Only in schema places (a property named ``enum`` is no keyword); annotations (``default``,
    ``examples``, ``x-…``) are carried along unread, as they come, but ``x-grounded``, which
    ``extract`` reads, must be a boolean."""
    from qwenjson.fields import INHERITED_KEY
    from qwenjson.schema.keywords import subschemas
    from qwenjson.schema.refs import RefIndex

    index: RefIndex | None = None  # made at the first $ref (most schemas have none)
    stack: list[tuple[Any, str]] = [(schema, "")]
    seen: set[int] = set()
    while stack:
        node, at = stack.pop()
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        ref = node.get("$ref")
        if isinstance(ref, str):
            # A $ref may point anywhere (`#/x-lib/Price`), not only at $defs: resolved as the
            # compiler resolves it (a broken one, or an unknown $schema, is reported later).
            with contextlib.suppress(SchemaError):
                index = index or RefIndex(schema)
                target = index.resolve(ref, index.base_of(at), at)
                stack.append((target.schema, target.pointer))
        for key in ("enum", "const"):
            if key in node:
                try:
                    jsonstrict.check(node[key], values=True)
                except jsonstrict.JsonValueError as e:
                    where = f"{at}/{key}{e.pointer or ''}"
                    raise jsonstrict.JsonValueError(e.message, where) from e
        if INHERITED_KEY in node:
            raise jsonstrict.JsonValueError(
                f"{INHERITED_KEY} is qwenjson's own: mark fields with x-grounded",
                f"{at}/{INHERITED_KEY}",
            )
        grounded = node.get("x-grounded", False)
        if not isinstance(grounded, bool):
            # "false" (a string) was read as no mark at all: the field stayed grounded.
            raise jsonstrict.JsonValueError(
                f'"x-grounded" is true or false, not {json.dumps(grounded)[:40]}',
                f"{at}/x-grounded",
            )
        stack.extend((sub, pointer) for pointer, sub, _ in subschemas(node, at))


def check_metaschema(schema: Schema) -> None:
    """Raise SchemaError, naming the JSON pointer, if ``schema`` fails its draft's metaschema,
    or holds what JSON can't (NaN, infinities, lone surrogates) or nests deeper than
    ``jsonstrict.MAX_DEPTH`` (every schema, from a file, the concise syntax or Python, passes
    here before it is compiled)."""
    try:
        jsonstrict.check(schema, doubles=True)  # the compiler computes bounds with floats
        _check_instances(schema)
    except jsonstrict.JsonValueError as e:
        raise SchemaError(f"not a usable JSON Schema: {e.message}", e.pointer) from e
    cls = validator_class(schema)
    try:
        # The metaschema's `format: regex` must mean ECMA-262 (\p{L}, \cX), not Python's re.
        cls.check_schema(schema, format_checker=_SCHEMA_FORMATS)  # type: ignore[arg-type,call-arg]
    except RecursionError:
        # Within MAX_DEPTH, but `$ref`s or wide nesting can still take jsonschema too deep.
        raise SchemaError("not a usable JSON Schema: nested too deeply to check") from None
    except JsonSchemaSchemaError as e:
        pointer = _pointer(e.absolute_path)
        if e.validator == "format" and e.validator_value == "regex":
            _refuse_valid_regex(e.instance, pointer)
        raise SchemaError(f"not a valid JSON Schema: {e.message}", pointer) from e


def _refuse_valid_regex(pattern: object, pointer: str) -> None:
    """A pattern that is valid ECMA-262 but that Python's re can't run (a look-behind of
    varying width) is unsupported, not invalid: say which and why."""
    from qwenjson.schema.regex import is_ecma_regex

    if not isinstance(pattern, str) or not is_ecma_regex(pattern):
        return
    try:
        ecma_regex(pattern)
    except SchemaError as why:
        reason = why.message.rsplit(": ", 1)[-1]  # re's own words, e.g. "look-behind requires…"
        raise UnsupportedKeywordError(
            "pattern",
            pointer,
            f"{pattern!r} is valid ECMA-262, but Python's re can't run it ({reason})",
        ) from None


def make_validator(schema: Schema) -> Validator:
    r"""A validator for ``schema`` that also checks ``format`` (see ``FORMAT_CHECKER``).

    ``pattern``, ``patternProperties`` and ``additionalProperties`` match regexes with ECMA-262
    semantics, as JSON Schema says (Python's ``re`` lets ``\d`` match ``৪`` and ``\w`` ``é``).
    """
    cls = ecma_validator(validator_class(schema))
    return cls(schema, format_checker=FORMAT_CHECKER, registry=_NO_REMOTE)


# jsonschema's default registry fetches unknown $ref URIs over the network. qwenjson never does
# (a cron job must not reach out, and a schema must not make it): an empty registry's retrieve
# refuses every URI.
_NO_REMOTE: Registry[Any] = Registry()


@functools.cache
def ecma_validator(cls: type[Validator]) -> type[Validator]:
    """jsonschema's validator class ``cls`` with the keywords qwenjson checks its own way:
    regexes as ECMA-262, ``multipleOf`` in decimals."""
    keywords: dict[str, Any] = {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
        "multipleOf": _multiple_of,
    }
    if "unevaluatedProperties" in cls.VALIDATORS:
        keywords["unevaluatedProperties"] = _EcmaUnevaluated(
            cls.VALIDATORS["unevaluatedProperties"]
        )
    if "dependencies" not in cls.VALIDATORS:
        # Draft 2019-09 split it into dependentRequired and dependentSchemas, and jsonschema's
        # newer validators ignore it; the compiler still reads it as checked after generation
        # (the suite's optional dependencies-compatibility), so it is: draft 7's meaning.
        keywords["dependencies"] = jsonschema.Draft7Validator.VALIDATORS["dependencies"]
    extended = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        cls, keywords
    )
    return cast(type[Validator], extended)


def _multiple_of(
    validator: Any, divisor: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """``multipleOf`` in the decimals JSON writes, as the specification means it: 19.99 is a
    multiple of 0.01. jsonschema divides floats (19.99 / 0.01 = 1998.9999999999998) and refused
    most prices under ``"multipleOf": 0.01``: every attempt failed, exit 5. Each number is
    taken as the shortest decimal that reads back as it (``repr``: what the JSON text said)."""
    if not validator.is_type(instance, "number"):
        return
    try:
        quotient = _exact(instance) / _exact(divisor)
    except (OverflowError, ValueError, ZeroDivisionError):  # inf or nan (Python's JSON reads them)
        quotient = Fraction(1, 2)
    if quotient.denominator != 1:
        yield ValidationError(f"{instance!r} is not a multiple of {divisor}")


def _exact(number: int | float) -> Fraction:
    return Fraction(number) if isinstance(number, int) else Fraction(repr(number))


class _EcmaSearch:
    """Stands in for the ``re`` module inside jsonschema's ``_utils`` and ``_legacy_keywords``.

    There its one use is ``re.search(pattern, key)``: which keys ``patternProperties`` matched,
    so that ``unevaluatedProperties`` counts them as evaluated. JSON Schema means ECMA-262 there
    as everywhere (with Python's ``re`` the key "৪" was evaluated by ``^\\d$`` and slipped past
    both keywords, and ``^\\p{L}+$`` raised re.error). Replacing the module name beats a copy of
    the library's ~90 lines that decide what is evaluated, which follow each draft closely. A
    pattern the translator refuses (never one of a schema qwenjson accepted) keeps Python's
    meaning. Only while one of qwenjson's validators decides ``unevaluatedProperties``
    (``_ECMA_KEYS``, per thread) does it read ECMA: other users of jsonschema in the process see
    jsonschema unchanged.
    """

    def search(self, pattern: str, string: str, flags: int = 0) -> re.Match[str] | None:
        if flags or not getattr(_ECMA_KEYS, "depth", 0):
            # Outside qwenjson's own validators jsonschema keeps its meaning: its
            # patternProperties reads Python's re, and what counts as evaluated must agree.
            return re.search(pattern, string, flags)
        try:
            regex = ecma_regex(pattern)
        except SchemaError:
            return re.search(pattern, string)
        return regex.search(string)

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)


_ECMA_KEYS = threading.local()


class _EcmaUnevaluated:
    """``unevaluatedProperties`` as jsonschema's ``original`` decides it, with patterns read as
    ECMA. A class at module level, not a closure: a plan's validator travels to Ray workers by
    pickle, and a closure over ``_ECMA_KEYS`` (a thread-local) can't be pickled."""

    def __init__(self, original: Any) -> None:
        self.original = original

    def __call__(
        self, validator: Any, value: Any, instance: Any, schema: Any
    ) -> Iterator[ValidationError]:
        _ECMA_KEYS.depth = getattr(_ECMA_KEYS, "depth", 0) + 1
        try:
            errors = list(self.original(validator, value, instance, schema))
        finally:
            _ECMA_KEYS.depth -= 1
        yield from errors


for _name in ("jsonschema._utils", "jsonschema._legacy_keywords"):
    setattr(importlib.import_module(_name), "re", _EcmaSearch())  # noqa: B010 (a module's name)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = ecma_regex(pattern)
        for key, value in instance.items():
            if regex.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = [ecma_regex(p) for p in schema.get("patternProperties", {})]
    extras = [
        key
        for key in instance
        if key not in properties and not any(r.search(key) for r in patterns)
    ]
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif additional is False and extras:
        listed = ", ".join(repr(k) for k in sorted(extras))
        yield ValidationError(f"additional properties are not allowed ({listed} unexpected)")


def validation_errors(instance: Any, validator: Validator) -> list[str]:
    """Readable validation errors, one per line: ``/json/pointer: message``.

    A document nested too deeply for jsonschema's recursion (a recursive schema lets the model
    nest without end) fails validation rather than the program.
    """
    try:
        with _validation_bound():
            errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    except RecursionError:
        return ["/: the document is nested too deeply to validate"]
    return [_describe(e) for e in errors]


def repeated_lists(instance: Any, validator: Validator) -> frozenset[tuple[str | int, ...]]:
    """The paths of the lists in ``instance`` that break a ``uniqueItems`` of the schema, as
    the validator finds them (behind ``$ref``, ``allOf``, ``anyOf``, ``oneOf``):
    ``qwenjson.repeats``."""

    def found(errors: Iterable[ValidationError]) -> Iterator[tuple[str | int, ...]]:
        for error in errors:
            if error.validator == "uniqueItems":
                yield tuple(error.absolute_path)
            # Under anyOf/oneOf (Pydantic's Optional[set[str]]) the error is a branch's.
            yield from found(error.context or ())

    try:
        with _validation_bound():
            return frozenset(found(validator.iter_errors(instance)))
    except RecursionError:  # nested past jsonschema's reach: validation fails it anyway
        return frozenset()


# `pattern`s are matched by Python's backtracking `re` (with ECMA-262 semantics from
# schema.regex), so `^(a|aa)+$` can take hours on a 50-character string. RE2 would be linear, but
# it has no lookaround or backreferences, which ECMA patterns use, and a second engine would be a
# second meaning of the same pattern; so `re` it stays, bounded: under the CLI a validation is
# stopped after this long (exit 7), and sooner by --timeout/--total-timeout (qwenjson.deadline).
VALIDATION_SECONDS = 10.0


def _validation_bound() -> contextlib.AbstractContextManager[None]:
    return deadline.limit(
        VALIDATION_SECONDS,
        lambda: TimeoutExpired(
            f"validating the document took more than {VALIDATION_SECONDS:g}s (a `pattern` that "
            "backtracks without end?)"
        ),
        within_budget=True,
    )


# More empty members than this in one document are left as they are (each costs a validation).
_MAX_EMPTY_DROPS = 64


def drop_empty_strings(instance: Any, validator: Validator) -> Any:
    """``instance`` without the object members whose value is ``""`` where the schema lets
    them go (``instance`` must be valid; so is the result).

    A small model fills optional fields the text doesn't give with ``""`` (measured on Qwen2
    0.5B: ``"seat": ""`` for a flight without a seat; no prompt wording stopped it). An empty
    string says nothing a missing member doesn't, and ``jq '.seat // "none"'`` only sees the
    missing one. Members are tried in document order, each dropped only if the document stays
    valid (so required properties, ``minProperties`` and the like keep theirs), and tried again
    after a drop.
    """
    with _validation_bound():
        return _drop_empty_strings(instance, validator)


def _drop_empty_strings(instance: Any, validator: Validator) -> Any:
    paths = list(_empty_members(instance, ()))[:_MAX_EMPTY_DROPS]
    budget = 4 * _MAX_EMPTY_DROPS  # validations: a pathological schema can't make this slow
    dropped = True
    while dropped:  # again after a drop: one member may have been holding another back
        dropped = False
        for path in list(paths):
            if budget == 0:
                return instance
            budget -= 1
            candidate = _without(instance, path)
            if validator.is_valid(candidate):
                instance = candidate
                paths.remove(path)
                dropped = True
    return instance


def _empty_members(value: Any, path: tuple[str | int, ...]) -> Iterable[tuple[str | int, ...]]:
    if isinstance(value, dict):
        for key, sub in value.items():
            if sub == "":
                yield (*path, key)
            else:
                yield from _empty_members(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _empty_members(sub, (*path, i))


def _without(value: Any, path: tuple[str | int, ...]) -> Any:
    """A copy of ``value`` without the object member at ``path`` (the rest shared, in order)."""
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        if not rest:
            return {k: v for k, v in value.items() if k != head}
        return {k: (_without(v, rest) if k == head else v) for k, v in value.items()}
    assert isinstance(value, list) and isinstance(head, int)
    return [_without(v, rest) if i == head else v for i, v in enumerate(value)]


def _describe(error: ValidationError) -> str:
    best = jsonschema.exceptions.best_match([error])
    return f"{_pointer(error.absolute_path) or '/'}: {best.message}"


_pointer = jsonstrict.json_pointer


# jsonschema checks only the formats whose optional packages are installed; it silently passes
# the rest (date-time, time, duration, uri, hostname without extras). Failing closed means
# checking them ourselves: the exact formats by their grammar, the others with the standard
# library.
FORMAT_CHECKER = FormatChecker()

# Matched whole (fullmatch: "$" would also match before a final newline) and ASCII only ("\d"
# would take ४ and int() would read it).
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_TIME = re.compile(r"(\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))", re.ASCII)
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", re.ASCII)


def _check_exactly_as_the_grammar(fmt: str) -> None:
    check = format_checker(fmt)
    assert check is not None

    @FORMAT_CHECKER.checks(fmt)
    def _conforms(value: object) -> bool:
        return not isinstance(value, str) or check(value)


# The formats the grammar enforces exactly are checked by the grammar's own language: a value
# validated afterwards (a format beside a pattern) meets the same rule as one generated under
# it. jsonschema's checkers differ (email is any text with an "@"; iri, uri-template and
# relative-json-pointer need packages not installed, and pass everything without them).
for _fmt in sorted(EXACT_FORMATS):
    _check_exactly_as_the_grammar(_fmt)


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    m = _DATE_TIME.fullmatch(value)
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
    utc_offset = 0
    if offset not in ("Z", "z"):
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            return False
        utc_offset = (oh * 60 + om) * (1 if offset[0] == "+" else -1)
    # RFC 3339: a leap second (:60) only happens at 23:59 UTC.
    return second < 60 or (hour * 60 + minute - utc_offset) % 1440 == 1439


@FORMAT_CHECKER.checks("time")
def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    m = _TIME.fullmatch(value)
    return bool(m) and _time_fields_ok(int(m[1]), int(m[2]), int(m[3]), m[5])  # type: ignore[index]


@FORMAT_CHECKER.checks("hostname")
def _is_hostname(value: object) -> bool:
    if not isinstance(value, str):
        return True
    name = value[:-1] if value.endswith(".") else value
    if not 0 < len(name) <= 253:
        return False
    return all(_is_host_label(label) for label in name.split("."))


def _is_host_label(label: str) -> bool:
    if not _HOST_LABEL.fullmatch(label):
        return False
    if label[2:4] != "--":
        return True
    # "xx--" labels are reserved for IDNA (RFC 5891 4.2.3.1): only valid punycode ("xn--").
    if label[:2].lower() != "xn":
        return False
    try:
        label.encode("ascii").decode("idna")
    except UnicodeError:
        return False
    return True


@FORMAT_CHECKER.checks("regex")
def _is_regex(value: object) -> bool:
    if not isinstance(value, str):
        return True
    from qwenjson.schema.regex import is_ecma_regex

    return is_ecma_regex(value)


for _name, _func in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers.items():
    if _name not in FORMAT_CHECKER.checkers:
        FORMAT_CHECKER.checkers[_name] = _func

# For checking schemas against their metaschema: patterns in real schemas are often written
# loosely (`\-` outside a class), which ECMA's strict grammar refuses but every engine
# accepts; they are judged by whether they mean something, via to_python_regex.
_SCHEMA_FORMATS = FormatChecker([])


@_SCHEMA_FORMATS.checks("regex")
def _is_usable_regex(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ecma_regex(value)
    except SchemaError:
        return False
    return True
