"""Flattening: a schema node's own keywords, its `$ref` and its `allOf` merged into one set of
constraints (``Flat``), and ``not`` applied where the grammar can say it.

Each keyword family reads and merges its own keywords (``_read_…`` and ``_merge_…`` in
``objects``, ``arrays``, ``strings``, ``numbers``, ``alternatives``); this module does the
keywords of every type (``type``, ``enum``, ``const``) and the combining.
"""

from __future__ import annotations

from typing import Any

from qwenjson.errors import SchemaError
from qwenjson.jsontypes import JSON_TYPES, expanded_types, intersect_types, json_equal
from qwenjson.schema.core import CompilerCore
from qwenjson.schema.flat import Flat, Node, Reader, intersect_enums, py_search
from qwenjson.schema.keywords import INERT, child_pointer

# A merged (allOf) node combines at most this many schemas; beyond, validation takes over.
MAX_MERGED_PARTS = 6
# Separates the parts of a merged node's memo key (JSON pointers can hold any other text).
_KEY_SEP = "\x1f"


def _atoms(key: str) -> list[str]:
    if key.startswith("&(") and key.endswith(")"):
        return key[2:-1].split(_KEY_SEP)
    return [key]


class Flattener(CompilerCore):
    """``$ref``, ``allOf`` and ``not``: the merged constraints of a node."""

    def flatten(self, node: Node) -> Flat | bool:
        """The merged constraints of ``node``: its own keywords, its `$ref` and its `allOf`."""
        if node.flat is not None:
            return node.flat
        cached = self.flat_cache.get(node.key)
        if cached is not None:
            return cached
        value = node.value
        if isinstance(value, bool):
            return value
        if not isinstance(value, dict):
            raise SchemaError("a schema must be an object or a boolean", node.pointer)
        flat = self._own(value, node)
        if "not" in value and not (self.dialect.ref_hides_siblings and "$ref" in value):
            negated = self._negate(flat, self._sub(node, value["not"], "not"), node.pointer)
            if negated is False:
                self.flat_cache[node.key] = False
                return False
        parts: list[Node] = []
        for ref_kw in ("$ref", "$dynamicRef", "$recursiveRef"):
            ref = value.get(ref_kw)
            if ref is None:
                continue
            if not isinstance(ref, str):
                raise SchemaError(f"{ref_kw} must be a string", child_pointer(node.pointer, ref_kw))
            at = child_pointer(node.pointer, ref_kw)
            target = self.index.resolve(ref, node.base, at)
            targets = self.index.dynamic_targets(ref_kw, ref, target)
            if len(targets) > 1:
                # Which one applies depends on the dynamic scope: any of them (anyOf), and
                # validation decides (the keyword is checked after generation).
                flat.groups.append(
                    ("anyOf", [Node(t.schema, t.pointer, t.base, t.pointer) for t in targets], at)
                )
                break
            parts.append(Node(target.schema, target.pointer, target.base, target.pointer))
            if self.dialect.ref_hides_siblings:
                flat = Flat(node.pointer)  # siblings of $ref are ignored in draft 7 and earlier
            break
        all_of = value.get("allOf")
        if all_of is not None and not (self.dialect.ref_hides_siblings and "$ref" in value):
            if not isinstance(all_of, list) or not all_of:
                raise SchemaError(
                    "allOf must be a non-empty array", child_pointer(node.pointer, "allOf")
                )
            parts += [self._sub(node, sub, "allOf", i) for i, sub in enumerate(all_of)]
        result: Flat | bool = flat
        self._flattening.add(node.key)
        try:
            for part in parts:
                if part.key in self._flattening:
                    raise SchemaError(
                        "$ref/allOf cycle with no base case: the schema includes itself",
                        part.pointer,
                    )
                result = self.merge(result, self.flatten(part))
                if result is False:
                    break
        finally:
            self._flattening.discard(node.key)
        self.flat_cache[node.key] = result
        return result

    def _negate(self, flat: Flat, inner: Node, pointer: str) -> Flat | bool:
        """Apply ``not: inner`` to ``flat`` where the grammar can (else validation does).

        Handled: ``not: {}`` (nothing matches), ``not: {type: …}`` (those types go),
        ``not: {required: [k]}`` (k can't appear), ``not: {enum: …}`` beside an enum.
        """
        target = self._deref(inner)
        value = target.value
        if value is True or (isinstance(value, dict) and not set(value) - INERT):
            self.mark(pointer, "not", "enforced", "not {}: matches nothing")
            return False
        if not isinstance(value, dict):
            return flat  # not false: no constraint
        keys = set(value) - INERT
        if keys == {"type"}:
            names = value["type"] if isinstance(value["type"], list) else [value["type"]]
            gone = set(names)
            if "number" in gone:
                gone.add("integer")
            if "integer" in gone and "number" not in gone:
                return flat  # "a number that isn't an integer": not expressible
            allowed = expanded_types(flat.types) - gone
            flat.types = {t for t in allowed if t != "integer" or "number" not in allowed}
            self.mark(pointer, "not", "enforced", "the excluded types are left out")
        elif keys == {"required"} and isinstance(value["required"], list):
            if len(value["required"]) == 1 and isinstance(value["required"][0], str):
                name = value["required"][0]
                # `required` holds for every non-object, so `not required` only admits objects.
                flat.types = intersect_types(flat.types, {"object"})
                if not flat.types:
                    return False
                flat.properties[name] = Node(False, pointer, target.base, "#false")
                flat.object_constrained = True
                self.mark(pointer, "not", "enforced", f"property {name!r} left out")
        elif keys == {"enum"} and flat.enum is not None and isinstance(value["enum"], list):
            flat.enum = [v for v in flat.enum if not any(json_equal(v, w) for w in value["enum"])]
            self.mark(pointer, "not", "enforced", "the excluded values are left out")
        return flat

    def _own(self, s: dict[str, Any], node: Node) -> Flat:
        """A node's own keywords (not `$ref`/`allOf`), checked and normalised."""
        p = node.pointer
        f = Flat(p)

        def ptr(kw: str) -> str:
            return child_pointer(p, kw)

        if "type" in s:
            t = s["type"]
            names = [t] if isinstance(t, str) else t
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise SchemaError("type must be a string or an array of strings", ptr("type"))
            for n in names:
                if n not in JSON_TYPES:
                    raise SchemaError(f"unknown type {n!r}", ptr("type"))
            f.types = set(names)
        if "enum" in s:
            if not isinstance(s["enum"], list):
                raise SchemaError("enum must be an array", ptr("enum"))
            f.enum = list(s["enum"])
        if "const" in s:
            f.enum = intersect_enums(f.enum, [s["const"]])

        self._read_keywords(Reader(s, p), node, f)
        return f

    def merge(self, a: Flat | bool, b: Flat | bool) -> Flat | bool:
        """The constraints of ``a`` and ``b`` together (allOf)."""
        if a is False or b is False:
            return False
        if isinstance(a, bool):
            return b
        if isinstance(b, bool):
            return a
        m = a.copy()
        m.types = intersect_types(a.types, b.types)
        if m.types is not None and not m.types:
            return False
        if b.enum is not None:
            m.enum = intersect_enums(m.enum, b.enum)
        self._merge_keywords(m, a, b)
        return m

    def _both(self, x: Node, y: Node) -> Node:
        """A node for "x and y" (a synthetic allOf), memoised by its parts."""
        fx, fy = self.flatten(x), self.flatten(y)
        if fy is True:
            return x
        if fx is True:
            return y
        atoms = sorted(set(_atoms(self._deref(x).key)) | set(_atoms(self._deref(y).key)))
        if len(atoms) > MAX_MERGED_PARTS:
            # Merging recursive schemas into each other can go on forever: past a few parts,
            # keep x alone (a superset) and let validation check the rest.
            self.mark(y.pointer, "allOf", "validated-after", "merge too deep for the grammar")
            return x
        key = "&(" + _KEY_SEP.join(atoms) + ")"
        flat = self.flat_cache.get(key)
        if flat is None:
            flat = self.merge(fx, fy)
            self.flat_cache[key] = flat
        if isinstance(flat, bool):
            return Node(flat, x.pointer, x.base, key)
        return Node(None, x.pointer, x.base, key, flat)

    def _extra_schema_for(self, f: Flat, name: str) -> Node | None:
        """The schema ``f`` gives a property it doesn't declare (None: anything goes)."""
        matched: list[Node] = []
        for pat, subs in f.pattern_props.items():
            if py_search(pat, name):
                matched += subs
        chosen = matched if matched else f.additional
        result: Node | None = None
        for sub in chosen:
            result = sub if result is None else self._both(result, sub)
        return result

    def _all(self, subs: list[Node]) -> Node:
        """One node for all of ``subs`` together."""
        result = subs[0]
        for s in subs[1:]:
            result = self._both(result, s)
        return result

    def _read_keywords(self, r: Reader, node: Node, f: Flat) -> None:
        """Each family's keywords of ``r`` into ``f`` (``compiler.Compiler``)."""
        raise NotImplementedError

    def _merge_keywords(self, m: Flat, a: Flat, b: Flat) -> None:
        """Each family's keywords of ``a`` and ``b`` together into ``m`` (``compiler.Compiler``)."""
        raise NotImplementedError
