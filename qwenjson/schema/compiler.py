"""JSON Schema → GBNF: one converter that visits the schema and emits deduplicated rules.

The grammar describes the canonical form of every valid instance: compact JSON (no whitespace),
object members in the order the schema lists them in ``properties``, then any others; strings
in the canonical JSON encoding. Where a keyword can't be carried exactly the grammar is a
superset and the keyword is reported as validated-after: jsonschema checks it at the end.

How it works: each schema node is *flattened* (``$ref`` and ``allOf`` merged into one set of
constraints: ``flatten``), then ``anyOf``/``oneOf`` are distributed over the remaining
constraints (``alternatives``), then one alternative per allowed JSON type is generated, by the
module of that type's keywords (``objects``, ``arrays``, ``strings``, ``numbers``). Subschemas
get their own rules, memoised by JSON pointer (``core``), which is what makes recursive
``$ref`` (trees, linked lists) work. Which keyword does what is in ``keywords``' table.
"""

from __future__ import annotations

from qwenjson.jsontypes import JSON_TYPES
from qwenjson.schema.alternatives import MAX_ALTERNATIVES_PRODUCT, Alternatives
from qwenjson.schema.arrays import ArrayRules
from qwenjson.schema.core import ARRAY, BOOLEAN, NULL, NUMBER, OBJECT, STRING, VALUE
from qwenjson.schema.flat import Flat, Node, Reader, Unsatisfiable
from qwenjson.schema.gbnf import Expr, alt
from qwenjson.schema.numbers import NumberRules
from qwenjson.schema.objects import ObjectRules


class Compiler(ObjectRules, ArrayRules, NumberRules, Alternatives):
    """Compiles one schema document; use :meth:`compile` once per instance."""

    def _generate(self, node: Node) -> Expr:
        flat = node.flat if node.flat is not None else self.flatten(node)
        if isinstance(flat, bool):
            if not flat:
                raise Unsatisfiable("this schema matches nothing (false)", node.pointer)
            return VALUE
        return self._gen_flat(flat, node)

    def _gen_flat(self, flat: Flat, node: Node) -> Expr:
        if flat.groups:
            return self._gen_groups(flat, node)
        if flat.enum is not None:
            return self._gen_enum(flat, node)
        types = flat.types
        alts: list[Expr] = []
        unsat: list[Unsatisfiable] = []
        for t in JSON_TYPES:
            if types is not None and t not in types:
                continue
            if t == "integer" and (types is None or "number" in types):
                continue  # numbers include the integers
            try:
                alts.append(self._gen_type(t, flat, node))
            except Unsatisfiable as e:
                # Kept without its traceback, which holds this frame: a reference cycle that
                # would keep the whole compile alive until the cyclic collector came by.
                unsat.append(e.with_traceback(None))
        if not alts:
            raise unsat.pop(0) if unsat else Unsatisfiable("no type is allowed", flat.pointer)
        if types is None and alts == [OBJECT, ARRAY, STRING, NUMBER, BOOLEAN, NULL]:
            return VALUE
        return alt(alts)

    def _gen_type(self, t: str, f: Flat, node: Node) -> Expr:
        if t == "null":
            return NULL
        if t == "boolean":
            return BOOLEAN
        if t == "string":
            return self._gen_string(f, node)
        if t in ("number", "integer"):
            return self._gen_number(t, f, node)
        if t == "array":
            return self._gen_array(f, node)
        return self._gen_object(f, node)

    def _read_keywords(self, r: Reader, node: Node, f: Flat) -> None:
        self._read_objects(r, node, f)
        self._read_arrays(r, node, f)
        self._read_strings(r, node, f)
        self._read_numbers(r, node, f)
        self._read_alternatives(r, node, f)

    def _merge_keywords(self, m: Flat, a: Flat, b: Flat) -> None:
        self._merge_objects(m, a, b)
        self._merge_arrays(m, a, b)
        self._merge_strings(m, a, b)
        self._merge_numbers(m, a, b)
        self._merge_alternatives(m, a, b)


__all__ = ["MAX_ALTERNATIVES_PRODUCT", "Compiler", "Unsatisfiable"]
