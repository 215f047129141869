"""JSON Schema → GBNF: the compiler, its helpers and the keyword report.

``compile_schema(schema)`` gives the grammar; ``compile(schema)`` gives it with the report of
what happens to every keyword; ``check_schema(schema)`` gives only the report, and lists
unsupported keywords instead of raising.
"""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from qwenjson.errors import SchemaError, UnsupportedKeywordError
from qwenjson.pointer import unescape_token
from qwenjson.schema.compiler import Compiler
from qwenjson.schema.dialect import dialect_of
from qwenjson.schema.report import KeywordUse, Status, build_report, static_status


@dataclass(frozen=True)
class CompiledSchema:
    """A grammar with the report of how each keyword is honoured."""

    grammar: str
    report: tuple[KeywordUse, ...]
    needs_validation: bool  # True when anything is checked only after generation


def compile(
    schema: dict[str, Any] | bool,
    *,
    closed_objects: bool = False,
    spaced: bool = False,
    must_admit: Collection[str] = (),
) -> CompiledSchema:
    """Compile a JSON Schema to GBNF (root rule ``root``), with the keyword report.

    ``closed_objects=True`` is the generation profile ``extract`` uses: objects that declare
    properties and say nothing of others get no undeclared ones (a subset of the valid
    documents; by default the grammar takes every valid document). ``spaced=True`` writes
    ``", "`` between members and items and ``": "`` after keys, as ``json.dumps`` does by
    default: measured on Qwen2 0.5B, compact JSON pushed the model off the spelling it learned,
    and after a compact ``"keywords":`` it chose ``[]`` where the spaced form got the list.

    ``must_admit``: JSON pointers of subschemas that must admit some value; one that admits none
    is refused rather than compiled out (array items no value satisfies make the array always
    empty: ``--each`` refuses such an item, see ``qwenjson.plan.prepare_job``).

    Raises ``SchemaError`` (unsatisfiable, remote or broken ``$ref``, malformed schema) or
    ``UnsupportedKeywordError``, each naming the JSON pointer.
    """
    with _collector_paused():
        return _compiled(schema, closed_objects, spaced, must_admit)


def _compiled(
    schema: dict[str, Any] | bool, closed_objects: bool, spaced: bool, must_admit: Collection[str]
) -> CompiledSchema:
    compiler = Compiler(schema, closed_objects=closed_objects, spaced=spaced, must_admit=must_admit)
    grammar = compiler.compile()
    report = build_report(schema, compiler.marks, compiler.index.nodes)
    needs = any(use.status == "validated-after" for use in report)
    return CompiledSchema(grammar, report, needs)


@contextmanager
def _collector_paused() -> Iterator[None]:
    # A compile builds many small expressions that live until the grammar is written and form
    # no reference cycles (tests/test_gbnf_expr.py checks): the cyclic collector would walk them
    # again and again for nothing. Paused until the compiler is gone (freed by refcounting as
    # _compiled returns), so none of its objects are left for the next collection either.
    # Measured on jsonschemabench and the JSON-Schema-Test-Suite, both profiles (20,836
    # compiles): 44-45 s of CPU paused, 50-51 s not.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compile_schema(
    schema: dict[str, Any] | bool, *, closed_objects: bool = False, spaced: bool = False
) -> str:
    """The GBNF text for ``schema`` (see :func:`compile`)."""
    return compile(schema, closed_objects=closed_objects, spaced=spaced).grammar


def check_schema(schema: dict[str, Any] | bool) -> tuple[KeywordUse, ...]:
    """Every keyword occurrence with its fate; unsupported ones are listed, not raised.

    A schema the compiler refuses (a remote ``$ref``, say) gets one ``unsupported`` entry at
    the refused place, with the reason as its note.
    """
    try:
        dialect_of(schema)
    except SchemaError as e:
        # No draft to read the document by: nothing else in it means anything yet.
        return (KeywordUse("", "$schema", "unsupported", str(e)),)
    compiler = Compiler(schema)
    marks = compiler.marks
    try:
        compiler.compile()
    except UnsupportedKeywordError as e:
        # The report names the place in its own column.
        marks[(e.pointer or "", e.keyword)] = ("unsupported", e.problem)
    except SchemaError as e:
        # A refusal (remote $ref, unsatisfiable, malformed) is listed at its place as well.
        pointer = e.pointer or ""
        parent, _, last = pointer.rpartition("/")
        last = unescape_token(last)
        if last and static_status(last) != _UNKNOWN:
            marks[(parent, last)] = ("unsupported", e.problem)
        else:
            marks[(pointer, "schema")] = ("unsupported", e.problem)
    nodes = compiler.index.nodes
    return _with_examples(schema, build_report(schema, marks, nodes), dict(nodes))


def _with_examples(
    schema: dict[str, Any] | bool, uses: tuple[KeywordUse, ...], nodes: dict[str, Any]
) -> tuple[KeywordUse, ...]:
    """``uses`` with a note on each description or ``examples`` whose examples ``extract``
    reads (``qwenjson.field_examples``): a user whose value moved to another field sees why;
    on each description of a field that holds person names (``qwenjson.person_names``); and
    on each description of a list that holds names, or of an object that says its lists do
    (``qwenjson.proper_names``): a user whose lowercase item went sees why.
    ``nodes``: the schema's subschemas by pointer (the compiler's index). Here and not in every
    compile's report: it walks the schema for its grounding rules."""
    # Imported here: qwenjson.field_examples imports qwenjson.fields, which imports this package.
    from qwenjson.field_examples import KIND, examples_of, examples_read, pattern_of_pointer
    from qwenjson.fields import grounding_rules
    from qwenjson.person_names import person_fields
    from qwenjson.proper_names import name_lists

    read = examples_read(schema) if isinstance(schema, dict) else {}
    rules = grounding_rules(schema) if isinstance(schema, dict) else {}
    # The fields that say they hold persons (their sibling entity lists are cut too, unnoted).
    persons = person_fields(schema, rules) if rules else frozenset()
    names = name_lists(schema, rules, persons) if rules else frozenset()
    if not read and not persons and not names:
        return uses
    out = []
    for use in uses:
        at = pattern_of_pointer(use.pointer)
        node = nodes.get(use.pointer)
        pattern = at
        if pattern is not None and pattern[-1:] == (None,) and pattern[:-1] in read:
            # A list's items, where its examples are when the list itself gives none.
            listed = nodes.get(use.pointer.removesuffix("/items"))
            given = examples_of(listed) if isinstance(listed, dict) else ()
            pattern = pattern[:-1] if not given else None
        shown = (
            examples_of({use.keyword: node[use.keyword]})
            if pattern in read
            and use.keyword in ("description", "examples")
            and isinstance(node, dict)
            else ()
        )
        said: list[str] = []
        if shown:
            named = [e for e in shown if not e.startswith(KIND)]
            kinds = [e[len(KIND) :] for e in shown if e.startswith(KIND)]
            reads = [f"its examples ({', '.join(named)})"] if named else []
            reads += [f"the kinds it lists ({', '.join(kinds)})"] if kinds else []
            said.append(f"reads {' and '.join(reads)}: a value like one goes to this field")
        if use.keyword == "description" and at is not None:
            if {at, (*at, None)} & persons:  # a field that holds person names, or its items
                said.append(
                    "holds person names: a title before one or an honorific after it "
                    "(Mr., Dr., 先生, 女士) is left out"
                )
            if isinstance(node, dict):
                said.extend(_names_note(at, node.get("description"), names))
        if said:
            use = KeywordUse(use.pointer, use.keyword, use.status, "extract: " + "; ".join(said))
        out.append(use)
    return tuple(out)


def _names_note(pattern: Any, description: Any, names: frozenset[Any]) -> list[str]:
    """The note on the ``description`` at ``pattern`` when it is a name list's, or an
    object's that says its lists hold names (``qwenjson.proper_names.name_lists``)."""
    from qwenjson.proper_names import says_names

    rule = (
        "in a text that capitalizes names, an item whose last word has no capital is left out "
        "and lowercase words before a name are cut off"
    )
    if (*pattern, None) in names:
        return [f"holds names: {rule}"]
    if says_names(description) and any(p[:-2] == tuple(pattern) for p in names if len(p) > 1):
        return [f"its lists hold names: {rule}"]
    return []


_UNKNOWN = static_status("x-not-a-keyword")


__all__ = [
    "CompiledSchema",
    "KeywordUse",
    "Status",
    "check_schema",
    "compile",
    "compile_schema",
]
