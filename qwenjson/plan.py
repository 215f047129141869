"""One extraction job as a frozen value, built once: the ``Plan``.

    --schema (file, JSON, concise syntax; or a dict or Pydantic model class from Python)
      └─ read_schema ─▶ prepare_job: ONE metaschema check, the compile ─▶ Job
    model file ─▶ its sha256 ─┐
    options that change output ┴─▶ Plan ─▶ fingerprint (checkpoints), runner, engine

The fingerprint is computed from the Plan's fields, so a field added to it (or to one of the
option classes it holds) changes the fingerprint without anyone remembering a list.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jsonschema.protocols import Validator

from qwenjson.errors import SchemaError, UsageError
from qwenjson.generation import Generator
from qwenjson.jsontypes import is_whole_number
from qwenjson.label_order import labels_last, member_order
from qwenjson.pipeline import ExtractOptions, PreparedSchema, prepare_schema
from qwenjson.prompt import system_message
from qwenjson.validate import Schema, check_metaschema, make_validator, read_schema

__all__ = [
    "Job",
    "Layout",
    "Plan",
    "RecordOptions",
    "each_schema",
    "job_fingerprint",
    "plan_for",
    "prepare_job",
    "schema_of",
]

Truncate = Literal["head", "tail"]
# Marks a Plan field computed from the others: left out of the fingerprint (its inputs are in).
_DERIVED = {"derived": True}
# Bumped when the fingerprint's recipe changes (not when a field is added: that shows anyway).
_RECIPE = 1


@dataclass(frozen=True)
class RecordOptions:
    """How one text becomes output: an item list, truncation, pieces."""

    each: bool = False
    truncate: Truncate | None = None
    # A text longer than the context (or than ``chunk_tokens``) is extracted in overlapping
    # pieces and merged (``qwenjson.pieces``) unless ``chunks`` is off or ``truncate`` is set.
    chunks: bool = True
    chunk_tokens: int | None = None
    chunk_overlap: int | None = None

    def __post_init__(self) -> None:
        # As the CLI's options are checked (the library's come here unchecked).
        for name in ("each", "chunks"):
            if not isinstance(getattr(self, name), bool):  # "false" would read as true
                raise UsageError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if self.truncate not in (None, "head", "tail"):
            raise UsageError(f"truncate must be 'head' or 'tail', not {self.truncate!r}")
        for name, value, least in (
            ("chunk_tokens", self.chunk_tokens, 16),
            ("chunk_overlap", self.chunk_overlap, 0),
        ):
            if value is not None and not is_whole_number(value, least):
                raise UsageError(f"{name} must be a whole number ≥ {least}, not {value!r}")
        pieces = self.chunk_tokens is not None or self.chunk_overlap is not None
        if pieces and not self.chunks:
            raise UsageError("chunk_tokens and chunk_overlap can't be used with chunks=False")
        if pieces and self.truncate is not None:
            raise UsageError(
                "chunk_tokens and chunk_overlap can't be used with truncate (the text is cut "
                "to fit, not split)"
            )


@dataclass(frozen=True)
class Layout:
    """How documents become output lines: ``--jsonl`` records, ``--field``/``--into``, pretty."""

    jsonl: bool = False
    field: str | None = None
    into: str = "extracted"
    pretty: bool = False


@dataclass(frozen=True)
class Job:
    """The schema a run generates with, and with ``--each`` the validator of one item."""

    schema: Schema  # the user's, as given to ``prepare_job``
    prepared: PreparedSchema
    item: Validator | None = None


# Where the user's schema lands inside the wrapper, for rewriting its own `#…` references.
_ITEM_POINTER = "/properties/items/items"


def prepare_job(schema: Schema, *, each: bool = False) -> Job:
    """Check ``schema`` against its metaschema once and compile it once (with ``each``, its
    ``{"items": […]}`` wrapper). Raises SchemaError (exit 3) when it can't be used.

    With ``each`` the item must admit a value: one that can't (``false``, ``minLength`` over
    ``maxLength``) would compile inside the wrapper to "the list is always empty", and is
    refused instead. A refusal is worded from the user's schema compiled alone, at their own
    JSON pointers and ``$ref``s (the wrapper's are moved): that second compile happens only on
    the way to an error.
    """
    from qwenjson.schema import compile as compile_schema

    if not each:
        return Job(schema, prepare_schema(schema))
    check_metaschema(schema)
    wrapper = each_schema(schema)  # as valid as ``schema``: not checked a second time
    asked = labels_last(wrapper)  # the order the model is asked in (qwenjson.label_order)
    try:
        compiled = compile_schema(
            asked, closed_objects=True, spaced=True, must_admit=(_ITEM_POINTER,)
        )
    except SchemaError as e:
        compile_schema(schema, closed_objects=True, spaced=True)  # the item's own refusal
        raise SchemaError(f"--each: can't wrap the schema as a list of items: {e}") from e
    prepared = PreparedSchema(asked, compiled, make_validator(wrapper), member_order(wrapper))
    return Job(schema, prepared, make_validator(schema))


def each_schema(schema: Schema) -> Schema:
    """``schema`` wrapped as ``{"items": [schema, …]}`` (required, nothing else allowed).

    Keywords that belong to the document root (``$schema``, ``$id``, ``$defs``/``definitions``)
    move to the wrapper's root, and the schema's own references into itself (``#``,
    ``#/properties/…``) are rewritten to point at where it now sits, so it means what it meant.
    The caller's schema is not changed.
    """
    from qwenjson.schema.dialect import dialect_of
    from qwenjson.schema.refs import subschemas

    item: Any = schema
    root: dict[str, Any] = {}
    if isinstance(schema, dict):
        item = copy.deepcopy(schema)
        id_key = dialect_of(schema).id_key
        for key in ("$schema", id_key, "$defs", "definitions"):
            if key in item:
                root[key] = item.pop(key)
        stack: list[Any] = [item]
        for key in ("$defs", "definitions"):
            if isinstance(root.get(key), dict):
                stack.extend(root[key].values())
        while stack:
            node = stack.pop()
            if not isinstance(node, dict):
                continue
            ref = node.get("$ref")
            if (
                isinstance(ref, str)
                and (ref == "#" or ref.startswith("#/"))
                and not ref.startswith(("#/$defs/", "#/definitions/"))
            ):
                node["$ref"] = "#" + _ITEM_POINTER + ref[1:]
            # A subschema with its own `$id` is another resource: its `#…` are its own.
            stack.extend(
                sub
                for _, sub in subschemas(node, "")
                if isinstance(sub, dict) and id_key not in sub
            )
    root.update(
        {
            "type": "object",
            "properties": {"items": {"type": "array", "items": item}},
            "required": ["items"],
            "additionalProperties": False,
        }
    )
    return root


@dataclass(frozen=True)
class Plan:
    """Everything that decides what a run prints, checked and compiled once.

    The fingerprint (``fingerprint``) is a digest of every field except the derived ones
    (``job``, ``system_prompt``: computed here from ``schema``, ``record.each`` and
    ``options.instruction``, which are in). It names the job in a checkpoint: a rerun with any
    field changed is refused rather than resumed with mixed outputs.

    In it, deliberately: the schema as parsed (not its file name), the model *file's* sha256
    (not the name given: a registry name can move to another revision), the context size (it
    decides where a long text is cut into pieces), every ``ExtractOptions`` field (generation,
    retries, grounding, evidence, ``--keep-empty``), every ``RecordOptions`` field (``--each``,
    truncation, pieces) and the ``Layout`` (``--jsonl``, ``--field``, ``--into``, ``--pretty``).

    Left out, deliberately (they are not fields; the runner and the CLI get them apart):
    threads (the same tokens come out, only faster or slower), the prompt-prefix cache and its
    directory (a cache hit restores the very state a prefill computes), ``--quiet``,
    ``--offline``, ``--on-error`` and ``--errors`` (where failures are reported, not what a
    record prints), and the timeouts: like threads they vary with the machine's load, a record
    that runs out fails on its own (logged in ``--errors`` to be redone), and a cron job that
    raises its budget should resume, not start over.
    """

    schema: Schema
    model_sha256: str
    n_ctx: int
    options: ExtractOptions = field(default_factory=ExtractOptions)
    record: RecordOptions = field(default_factory=RecordOptions)
    layout: Layout = field(default_factory=Layout)
    job: Job = field(default=None, metadata=_DERIVED, compare=False, repr=False)  # type: ignore[assignment]
    system_prompt: str = field(init=False, metadata=_DERIVED, compare=False, repr=False)

    def __post_init__(self) -> None:
        job = self.job
        # A job prepared beforehand (the CLI checks the schema before loading the model) is
        # used when it is this plan's; ``dataclasses.replace`` carries the old one: rebuilt.
        if job is None or (job.item is not None) != self.record.each or job.schema != self.schema:
            job = prepare_job(self.schema, each=self.record.each)
        object.__setattr__(self, "job", job)
        prompt = system_message(job.prepared.schema, self.options.instruction)
        object.__setattr__(self, "system_prompt", prompt)

    @property
    def fingerprint(self) -> str:
        """The hex digest that names this job: from every field but the derived ones."""
        return job_fingerprint({"plan": _RECIPE, **_canonical(self)})


def job_fingerprint(parts: Mapping[str, Any]) -> str:
    """A digest of JSON ``parts``, independent of key order."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _canonical(value: Any, schema: bool = False) -> Any:
    """``value`` as JSON for the fingerprint: dataclasses by their non-derived fields.

    Anything else that isn't JSON is a TypeError, so that a field of a new kind is decided on
    (made JSON here, or marked derived) rather than silently left out; but in the schema
    (``schema``), an annotation a Python caller filled with other values (a date in
    ``examples``, a Decimal ``default``, a set under ``x-…``: carried along unread) goes by its
    type (an enum or const can't hold these: ``check_metaschema`` refuses them).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and not schema:
        return {
            f.name: _canonical(getattr(value, f.name), schema=f.name == "schema")
            for f in dataclasses.fields(value)
            if not f.metadata.get("derived")
        }
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, schema) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v, schema) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if schema:
        # Unread by qwenjson, so it can't change the output: its type alone names it (a
        # repr may hold an address, or a set's order, other in each process).
        return {"$python": f"{type(value).__module__}.{type(value).__qualname__}"}
    raise TypeError(f"a Plan field of type {type(value).__name__} has no fingerprint")


def plan_for(
    schema: Schema,
    generator: Generator,
    options: ExtractOptions | None = None,
    record: RecordOptions | None = None,
    layout: Layout | None = None,
    *,
    job: Job | None = None,
) -> Plan:
    """The plan for ``schema`` on ``generator`` (its model's sha256 and context size)."""
    return Plan(
        schema,
        model_sha256(generator),
        generator.n_ctx,
        options or ExtractOptions(),
        record or RecordOptions(),
        layout or Layout(),
        job=job,  # type: ignore[arg-type]
    )


def model_sha256(generator: Generator) -> str:
    """The sha256 of the model file behind ``generator`` ("" for one without a file)."""
    return str(getattr(generator, "model_sha256", "") or "")


def schema_of(source: Any) -> tuple[Schema, Any]:
    """A schema from what a Python caller holds, and the class to return instances of.

    ``source``: a dict (or boolean) schema; a ``Path`` or a string (a schema file, inline JSON,
    or the concise syntax, as ``--schema`` takes); or a class with ``model_json_schema()`` (a
    Pydantic model, duck-typed: qwenjson doesn't depend on Pydantic), returned as the class.
    Not checked here: ``prepare_job`` checks every schema once.
    """
    make = getattr(source, "model_json_schema", None)
    if isinstance(source, type) and callable(make):
        if not callable(getattr(source, "model_validate", None)):
            # Found out only after the whole extraction, when the result is made an instance.
            raise SchemaError(
                f"{source.__name__} has model_json_schema() but no model_validate(): give a "
                "Pydantic model class, or its schema as a dict"
            )
        try:
            made = make()
        except Exception as e:  # pydantic's own errors (an unresolved forward reference, …)
            raise SchemaError(
                f"{source.__name__}.model_json_schema() failed: {type(e).__name__}: {e}"
            ) from e
        if not isinstance(made, Mapping):
            raise SchemaError(f"{source.__name__}.model_json_schema() did not return a dict")
        return dict(made), source
    if isinstance(source, bool):
        return source, None
    if isinstance(source, Mapping):
        return dict(source), None
    if isinstance(source, Path) and not source.is_file():
        # A Path is a file the caller means, never concise text: Path("person") would
        # otherwise be the schema of one field named "person".
        what = "not a regular file" if source.exists() else "not found"
        raise SchemaError(f"schema file {str(source)!r} {what}")
    if isinstance(source, str | Path):
        return read_schema(source), None
    raise SchemaError(
        f"a schema is a dict, a file path, JSON or concise text, or a model class with "
        f"model_json_schema(); got a {type(source).__name__}"
    )
