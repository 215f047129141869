"""The extraction pipeline: text + schema → one validated JSON document.

    schema ──compile──▶ grammar ─┐
    text ──prompt──▶ messages ───┴──▶ model (every token under the grammar) ──▶ JSON
         ──▶ jsonschema validation ──▶ document, or a retry with the errors fed back, or an error

The library's ``extract()`` (``qwenjson.library``) and the CLI run it through a ``Plan`` and
the ``Runner`` (``qwenjson.runner``), which add timeouts, truncation, ``--each`` and pieces.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema.protocols import Validator

from qwenjson.cpu import MAX_THREADS
from qwenjson.datelines import trim_dates
from qwenjson.errors import InputError, ModelError, NoValidOutputError, UsageError
from qwenjson.evidence import annotate
from qwenjson.field_examples import ExampleTyping
from qwenjson.fields import ABSTAIN_BELOW, Pattern, schema_fields
from qwenjson.generation import GenerationResult, Generator, Message
from qwenjson.grounding import Grounding, SourceText
from qwenjson.jsontypes import is_number, is_whole_number
from qwenjson.kind_cuts import cut_at_kinds
from qwenjson.label_order import in_schema_order, labels_last, member_order
from qwenjson.labeling import Scorer, entity_lists, relabel
from qwenjson.person_names import cut_titles, person_fields, with_entity_lists
from qwenjson.pointer import leaf_pointers
from qwenjson.prompt import system_message
from qwenjson.proper_names import cut_to_names, name_lists
from qwenjson.records import MAX_INPUT_BYTES, too_large
from qwenjson.registry import ModelSpec
from qwenjson.repeats import repair
from qwenjson.schema import CompiledSchema
from qwenjson.schema import compile as compile_schema_full
from qwenjson.utf8 import bad_byte, not_utf8
from qwenjson.validate import (
    Schema,
    check_metaschema,
    drop_empty_strings,
    make_validator,
    validation_errors,
)

DEFAULT_MAX_TOKENS = 1024
# The context size in tokens (--ctx, ``n_ctx``), and its least (the CLI's bound). The dev set's
# longest prompt (the voice commands' system message, 1,205 tokens), one of its longest texts
# (2,000 characters) and DEFAULT_MAX_TOKENS fit in 4096.
DEFAULT_CTX = 4096
MIN_CTX = 256
# llama.cpp keeps the context size in 32 bits: a larger one wrapped (2**32 + 1024 ran with a
# 1024-token context, exit 0). Sizes below it that no machine can hold fail to load (exit 4).
MAX_CTX = 2**32 - 1


def check_sizes(n_ctx: Any, **threads: Any) -> None:
    """UsageError unless ``n_ctx`` is what --ctx allows and each of ``threads`` (by its
    keyword; None: the default) what --threads does: llama.cpp crashes on 100000 threads, and
    keeps the context in 32 bits."""
    if not is_whole_number(n_ctx, MIN_CTX, MAX_CTX):
        raise UsageError(
            f"n_ctx must be a whole number from {MIN_CTX} to {MAX_CTX} (as --ctx), not {n_ctx!r}"
        )
    for name, value in threads.items():
        if value is not None and not is_whole_number(value, 1, MAX_THREADS):
            raise UsageError(
                f"{name} must be a whole number from 1 to {MAX_THREADS}, not {value!r}"
            )


class OutOfTokens(NoValidOutputError):
    """The document was not complete after ``max_tokens`` (a shorter text may fit)."""


@dataclass(frozen=True)
class ExtractOptions:
    """How to generate: the knobs of ``qwenjson extract``."""

    instruction: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    # Extra attempts after a document fails validation (keywords the grammar can't carry).
    retries: int = 2
    # Keep object members the model left as "" (by default those the schema lets go are dropped).
    keep_empty: bool = False
    # Ground free-text strings by default (``qwenjson.grounding``); "x-grounded" in the schema
    # decides per field either way.
    grounding: bool = True
    # Print evidence and confidence (``Extraction.with_evidence``) rather than the document.
    evidence: bool = False
    # A value that needs a source in the text and has none fails the extraction (exit 5).
    require_evidence: bool = False
    # An optional (or nullable) grounded text value with a lower confidence is left out (or
    # null), as one the text has no source for (``--abstain-below``).
    abstain_below: float = ABSTAIN_BELOW

    def __post_init__(self) -> None:
        # The CLI checks its options; the library and a cluster's options come here unchecked,
        # and some values crash llama.cpp (a NaN temperature draws a token the grammar forbids).
        t, p, a = self.temperature, self.top_p, self.abstain_below
        for ok, what in (
            (is_whole_number(self.max_tokens, 1), "max_tokens must be a whole number ≥ 1"),
            (is_whole_number(self.retries, 0), "retries must be a whole number ≥ 0"),
            (is_whole_number(self.seed, 0), "seed must be a whole number ≥ 0"),
            (is_number(t) and math.isfinite(t) and t >= 0, "temperature must be a number ≥ 0"),
            (is_number(p) and 0 < p <= 1, "top_p must be a number above 0 and at most 1"),
            (is_number(a) and 0 <= a <= 1, "abstain_below must be from 0 to 1"),
            (
                self.instruction is None or isinstance(self.instruction, str),
                "instruction must be text (or None)",
            ),
        ):
            if not ok:
                raise UsageError(what)
        if isinstance(self.instruction, str) and (bad := not_utf8(self.instruction)):
            raise UsageError(f"instruction is not UTF-8 text ({bad})")  # as --instruction
        for name in ("keep_empty", "grounding", "evidence", "require_evidence"):
            if not isinstance(getattr(self, name), bool):  # "false" would read as true
                raise UsageError(f"{name} must be True or False, not {getattr(self, name)!r}")


@dataclass(frozen=True)
class Extraction:
    """A validated document and what producing it cost."""

    data: Any
    json: str  # compact, canonical: what goes on stdout
    attempts: int
    results: tuple[GenerationResult, ...] = field(default=())
    # By JSON pointer, for every leaf of ``data``: its source in the input text as code point
    # offsets [start, end) (None: no source), and the model's probability for it.
    evidence: dict[str, list[int] | None] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    # Pointers of values that need a source and have none (see ``qwenjson.evidence``).
    unsupported: tuple[str, ...] = ()

    def with_evidence(self) -> dict[str, Any]:
        """``{"data": …, "evidence": …, "confidence": …}``: what ``--evidence`` prints."""
        return {"data": self.data, "evidence": self.evidence, "confidence": self.confidence}


def check_text(text: str) -> str:
    """Refuse input with nothing in it, over 32 MiB as UTF-8, or that can't be UTF-8 (a library
    caller's lone surrogate, from ``os.fsdecode`` or ``surrogateescape``), exit 6; return it
    otherwise."""
    if not body(text)[1]:
        raise InputError("input is empty: give the text to extract from on stdin or with --input")
    # As the command line reads at most this much: a library caller's 40 MB text was cut into
    # pieces for as long as the caller waited.
    if len(text) * 4 > MAX_INPUT_BYTES and (
        len(text) > MAX_INPUT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES
    ):
        raise too_large("the text")
    if bad := not_utf8(text):
        raise InputError(f"the input is not UTF-8 text ({bad})")
    return text


def body(text: str) -> tuple[int, str]:
    """The text the model reads: ``text`` without its surrounding blanks, nor a leading BOM
    (U+FEFF: the command line drops it when it decodes the input; a Python caller's string or
    a JSONL field may still hold it, and the model read it, shifting what it wrote); and where
    that begins in ``text``."""
    inner = text.removeprefix("\ufeff")
    return len(text) - len(inner.lstrip()), inner.strip()


def decode_input(data: bytes, origin: str = "stdin") -> str:
    """Decode input bytes as UTF-8 (a BOM is dropped); exit 6 with the byte offset otherwise."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{origin} is not UTF-8 text ({bad_byte(data, bom=True)}); "
            "convert it first, e.g. with iconv -f GBK -t UTF-8"
        ) from e
    return check_text(text)


@dataclass(frozen=True)
class PreparedSchema:
    """A schema checked against its metaschema, compiled to GBNF, with its validator.

    ``schema`` is the one the model is asked for (its labels last, ``qwenjson.label_order``),
    ``compiled`` its grammar; ``order``, each object's members in the user's own order, the
    order the document is printed in."""

    schema: Schema
    compiled: CompiledSchema
    validator: Validator
    order: Mapping[Pattern, tuple[str, ...]] = field(default_factory=dict)


def prepare_schema(schema: Schema) -> PreparedSchema:
    """Check and compile ``schema``; raises SchemaError (exit 3) when it can't be used."""
    check_metaschema(schema)
    asked = labels_last(schema)
    compiled = compile_schema_full(asked, closed_objects=True, spaced=True)
    return PreparedSchema(asked, compiled, make_validator(schema), member_order(schema))


class Extractor:
    """Extracts documents for one schema with one model; reuse it for many texts."""

    def __init__(
        self,
        schema: Schema | PreparedSchema,
        generator: Generator,
        options: ExtractOptions | None = None,
        *,
        system: str | None = None,
    ) -> None:
        if not callable(getattr(generator, "generate", None)):
            # A model name or path is what ``extract`` takes; here the model is already open.
            raise UsageError(
                f"Extractor needs an open model (qwenjson.pipeline.open_model(...)), not "
                f"{type(generator).__name__} {generator!r:.60}"
            )
        self.prepared = schema if isinstance(schema, PreparedSchema) else prepare_schema(schema)
        self.generator = generator
        self.options = options or ExtractOptions()
        self.fields = schema_fields(self.prepared.schema, default=self.options.grounding)
        self.rules = self.fields.rules
        # Sibling lists of grounded strings: their items are typed again once written.
        self.entity_lists = entity_lists(self.rules, self.prepared.schema)
        # Persons by the field's own words; their titles are cut in sibling entity lists too.
        persons = person_fields(self.prepared.schema, self.rules)
        self.person_fields = with_entity_lists(persons, self.entity_lists)
        self.name_lists = name_lists(self.prepared.schema, self.rules, persons)
        # What the schema's examples of each field say of the values written under them.
        self.typing = ExampleTyping(self.prepared.schema, self.rules)
        # The prompt prefix every text shares (a ``Plan`` holds it; built here otherwise).
        self.system = system or system_message(self.prepared.schema, self.options.instruction)

    def messages(self, text: str) -> list[Message]:
        """The chat messages for ``text`` (system message first), as ``build_messages``."""
        return self._asking(body(text)[1])

    def _asking(self, read: str) -> list[Message]:
        """The chat messages for ``read``, the text as the model reads it (``body``)."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": read}]

    def run(
        self,
        text: str,
        on_text: Callable[[str], None] | None = None,
        *,
        offset: int = 0,
        around: tuple[str, str] = ("", ""),
    ) -> Extraction:
        """Extract one document from ``text``.

        ``offset``: code points before ``text`` in the whole input (a piece of a long text), so
        that evidence is in the whole input's coordinates; ``around``: the whole input's
        characters just before and after it (``SourceText``).

        Raises InputError when the text is empty or too long for the context, and
        NoValidOutputError when no attempt produced a valid document.
        """
        check_text(text)
        opts = self.options
        # The model sees the text without its surrounding blanks (``build_messages``); offsets
        # are into the text as given.
        lead, stripped = body(text)
        messages = self._asking(stripped)
        edges = (around[0] + text[:lead], text[lead + len(stripped) :] + around[1])
        source = SourceText(stripped, offset + lead, edges)
        results: list[GenerationResult] = []
        errors: list[str] = []
        for attempt in range(opts.retries + 1):
            grounding = Grounding.from_fields(source, self.fields)
            result = self.generator.generate(
                messages,
                self.prepared.compiled.grammar,
                max_tokens=opts.max_tokens,
                temperature=opts.temperature,
                top_p=opts.top_p,
                seed=opts.seed + attempt,
                on_text=on_text,
                constraint=grounding,
                # Always: where two fields claim one piece of the text, the probabilities
                # decide (``qwenjson.evidence``); a softmax per chosen token, ~0.3 ms.
                trace=True,
            )
            results.append(result)
            if result.finish_reason == "length":
                # Truncated JSON is never printed; a retry with the same budget would end the same.
                raise OutOfTokens(
                    f"the document was not complete after {opts.max_tokens} tokens "
                    "(raise --max-tokens)"
                )
            try:
                data = json.loads(result.text)
            except json.JSONDecodeError as e:
                # The grammar should make this impossible; treat it as a failed attempt.
                errors = [f"/: the model's output is not JSON ({e.msg} at column {e.colno})"]
            else:
                errors = validation_errors(data, self.prepared.validator)
                repaired = repair(data, self.prepared.validator) if errors else None
                if not errors or repaired is not None:
                    unique = repaired[1] if repaired is not None else frozenset()
                    return self._finish(
                        data, result, grounding, source, attempt + 1, results, on_text, unique
                    )
            messages = [*self._asking(stripped), *_feedback(result.text, errors)]
        raise NoValidOutputError(
            f"no valid document after {opts.retries + 1} attempt(s); the last one failed with:",
            errors,
        )

    def _finish(
        self,
        data: Any,
        result: GenerationResult,
        grounding: Grounding,
        source: SourceText,
        attempts: int,
        results: list[GenerationResult],
        on_text: Callable[[str], None] | None = None,
        unique: frozenset[tuple[str | int, ...]] = frozenset(),
    ) -> Extraction:
        """The valid ``data`` after abstention and empty-member dropping, with its evidence;
        ``unique``: its lists that keep the first copy of each item (``qwenjson.repeats``)."""
        opts = self.options
        validator = self.prepared.validator
        found = annotate(
            data,
            result.text,
            source=source,
            records=grounding.records,
            trace=result.trace,
            rules=self.rules,
            validator=validator,
            abstain=not opts.keep_empty,
            abstain_below=opts.abstain_below,
            objects=self.fields.objects,
            unique=unique,
            unruled_numbers=opts.grounding,
            # The values retype will move claim first too (it doesn't run with --keep-empty).
            claims_first=(
                functools.partial(self.typing.claims, data=None if opts.keep_empty else data)
                if self.typing
                else None
            ),
            sure=(
                functools.partial(self.typing.moves, data=data)
                if self.typing and not opts.keep_empty
                else None
            ),
            cut=self.typing.own_part if self.typing.scalars and not opts.keep_empty else None,
        )
        if self.entity_lists:
            found = trim_dates(found, self.entity_lists, source, validator.is_valid)
        found = cut_titles(found, self.person_fields, source, validator.is_valid)
        if self.entity_lists and () in self.typing.lists:
            kinds = self.typing.lists[()]
            found = cut_at_kinds(found, self.entity_lists, kinds, source, validator.is_valid)
        found = cut_to_names(found, self.name_lists, source, validator.is_valid)
        if self.typing.scalars and not opts.keep_empty:
            found = self.typing.retype(found, validator.is_valid)
        typed = found
        if self.entity_lists and isinstance(self.generator, Scorer):
            # The document is valid as the model typed it: never lost to this step.
            with contextlib.suppress(InputError, ModelError):
                typed = relabel(
                    found,
                    lists=self.entity_lists,
                    messages=self._asking(source.text),
                    scorer=self.generator,
                    is_valid=validator.is_valid,
                    examples=self.typing.lists.get((), {}),
                    # An empty chunk between evaluations: a caller that keeps a time limit by
                    # the clock on each chunk (``--timeout``) keeps it here too.
                    tick=(lambda: on_text("")) if on_text is not None else None,
                )
        # Printed in the schema's own order (the model wrote labels last).
        data = in_schema_order(typed.data, self.prepared.order)
        if not opts.keep_empty:
            data = drop_empty_strings(data, validator)
        leaves = leaf_pointers(data)  # in document order, as ``Annotated`` has them
        evidence = {p: typed.evidence[p] for p in leaves if p in typed.evidence}
        confidence = {p: typed.confidence[p] for p in leaves if p in typed.confidence}
        missing = set(typed.unsupported)
        unsupported = tuple(p for p in leaves if p in missing)
        if opts.require_evidence and unsupported:
            raise NoValidOutputError(
                "--require-evidence: the text has no source for "
                + ", ".join(p or "/" for p in unsupported)
            )
        compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return Extraction(
            data, compact, attempts, tuple(results), evidence, confidence, unsupported
        )


def _feedback(bad_output: str, errors: list[str]) -> list[Message]:
    """Messages that show the model its invalid answer and why, for the next attempt."""
    listing = "\n".join(f"- {e}" for e in errors[:10])
    return [
        {"role": "assistant", "content": bad_output},
        {
            "role": "user",
            "content": f"That JSON does not match the schema:\n{listing}\n"
            "Reply with the corrected JSON only.",
        },
    ]


def open_model(
    model: str | Path | ModelSpec | None,
    *,
    offline: bool = False,
    threads: int | None = None,
    n_ctx: int = DEFAULT_CTX,
    progress: Callable[[int, int | None], None] | None = None,
    cache_dir: Path | None = None,
    prompt_threads: int | None = None,
) -> Generator:
    """Find (downloading if needed and allowed) and load a model.

    ``threads`` / ``prompt_threads``: llama.cpp threads for decoding / for the prompt (each
    None: the engine's default, which leaves out cores other processes keep busy).

    With ``cache_dir``, the KV state of the prompt prefix (system message and schema) is kept
    there between runs, keyed by the model's sha256 (from the registry, when known).

    ``model`` may be a registry entry resolved elsewhere (a Ray driver's, whose
    ``QWENJSON_MODELS_FILE`` a node doesn't have): that exact file is pulled and checked.
    """
    from qwenjson.engine import Engine
    from qwenjson.hub import check_gguf, ensure_model, pull
    from qwenjson.registry import DEFAULT_MODEL, resolve_model

    if not isinstance(offline, bool):  # "no" would read as True (the Engine checks the rest)
        raise UsageError(f"offline must be True or False, not {offline!r}")

    if isinstance(model, ModelSpec):
        path = pull(model, offline=offline, progress=progress)
        check_gguf(path)
        sha256 = model.sha256 or None
    else:
        ref = DEFAULT_MODEL if model is None else str(model)  # ("": refused, not the default)
        path = ensure_model(ref, offline=offline, progress=progress)
        spec = resolve_model(ref).spec
        sha256 = spec.sha256 if spec is not None and spec.sha256 else None
    return Engine(
        path,
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=prompt_threads,
        cache_dir=cache_dir,
        model_sha256=sha256,
    )
