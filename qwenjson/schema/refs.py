"""`$ref` resolution inside one schema document: `$id`/`id` bases, `$anchor`, JSON pointers.

Nothing is ever fetched: a reference that leaves the document (http, https, file or any other
URI that no `$id` in the document declares) is a :class:`SchemaError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin

from qwenjson.errors import SchemaError
from qwenjson.pointer import unescape_token
from qwenjson.schema import keywords
from qwenjson.schema.dialect import dialect_of
from qwenjson.schema.keywords import child_pointer

# Base URI of a document without `$id`: a placeholder nobody can reach, so a relative `$ref`
# to another file resolves to something that isn't in the document and is refused.
DEFAULT_BASE = "https://qwenjson.invalid/schema.json"

# Subschemas nested deeper than this are refused (the bar is 1,000 levels).
MAX_NESTING = 3000


def join_uri(base: str, ref: str) -> str:
    """``ref`` resolved against ``base`` (fragment-only refs work for any scheme, urn: too)."""
    if ref.startswith("#") or not ref:
        return urldefrag(base)[0] + ref
    return urljoin(base, ref)


def subschemas(node: Any, pointer: str) -> Iterator[tuple[str, Any]]:
    """The immediate subschemas of a schema node, with their pointers."""
    for child, sub, _ in keywords.subschemas(node, pointer):
        yield child, sub


_REFERENCES = ("$ref", "$dynamicRef", "$recursiveRef")


@dataclass(frozen=True)
class Target:
    """Where a `$ref` lands: the subschema, its JSON pointer and its base URI."""

    schema: Any
    pointer: str
    base: str


class RefIndex:
    """Every resource (`$id`) and anchor of one document, and the base URI of each subschema."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.dialect = dialect_of(root)
        self.draft = self.dialect.draft
        self.id_key = self.dialect.id_key
        self.resources: dict[str, str] = {}  # absolute URI (no fragment) → pointer
        self.anchors: dict[tuple[str, str], str] = {}  # (URI, anchor name) → pointer
        self.bases: dict[str, str] = {}  # pointer → base URI of that subschema
        self.nodes: list[tuple[str, Any]] = []  # every subschema, in document order
        # Where each `$dynamicAnchor` name is, and the resources with `$recursiveAnchor: true`.
        self.dynamic_anchors: dict[str, list[str]] = {}
        self.recursive_anchors: list[str] = []
        self._walk()

    def _walk(self) -> None:
        # Iterative, so 1,000-deep schemas cost no Python stack.
        stack: list[tuple[str, Any, str, int]] = [("", self.root, DEFAULT_BASE, 0)]
        self.resources[DEFAULT_BASE] = ""
        while stack:
            pointer, node, base, depth = stack.pop()
            if depth > MAX_NESTING:
                # Pointers alone would cost O(depth²) here; no real schema nests this deep.
                where = pointer if len(pointer) < 120 else pointer[:50] + "/…/" + pointer[-50:]
                raise SchemaError(f"schema nested more than {MAX_NESTING} levels deep", where)
            if isinstance(node, dict):
                base = self._enter(pointer, node, base)
            self.bases[pointer] = base
            self.nodes.append((pointer, node))
            children = list(subschemas(node, pointer))
            for child_ptr, child in reversed(children):
                stack.append((child_ptr, child, base, depth + 1))

    def _enter(self, pointer: str, node: dict[str, Any], base: str) -> str:
        ident = node.get(self.id_key)
        # In draft 7 and earlier, a `$ref` makes its siblings (an `$id` too) meaningless.
        if "$ref" in node and self.dialect.ref_hides_siblings:
            ident = None
        if isinstance(ident, str):
            uri, fragment = urldefrag(join_uri(base, ident))
            if uri:
                base = uri
                self.resources.setdefault(uri, pointer)
            if fragment and not fragment.startswith("/"):
                self.anchors.setdefault((base, fragment), pointer)
        for key in ("$anchor", "$dynamicAnchor"):
            anchor = node.get(key)
            if isinstance(anchor, str):
                self.anchors.setdefault((base, anchor), pointer)
        dynamic = node.get("$dynamicAnchor")
        if isinstance(dynamic, str):
            self.dynamic_anchors.setdefault(dynamic, []).append(pointer)
        if node.get("$recursiveAnchor") is True:
            self.recursive_anchors.append(pointer)
        return base

    def dynamic_targets(self, keyword: str, ref: str, target: Target) -> list[Target]:
        """Every schema a `$dynamicRef` or `$recursiveRef` may land on, depending on the
        dynamic scope when the instance is validated (``target``: its static landing place).

        The grammar can't follow the dynamic scope; a document may take any of them (and
        validation decides). Only ``target`` when the reference is static after all: the
        landing place has no dynamic anchor of that name (`$dynamicRef`'s bookend), or
        `$recursiveAnchor` isn't true there."""
        landing = target.schema if isinstance(target.schema, dict) else {}
        if keyword == "$dynamicRef":
            name = urldefrag(ref)[1]
            if not name or name.startswith("/") or landing.get("$dynamicAnchor") != name:
                return [target]
            pointers = self.dynamic_anchors.get(name, [])
        elif keyword == "$recursiveRef" and landing.get("$recursiveAnchor") is True:
            pointers = self.recursive_anchors
        else:
            return [target]
        found = [Target(self._lookup(p), p, self.base_of(p)) for p in pointers]
        return found if len(found) > 1 else [target]

    def base_of(self, pointer: str) -> str:
        """Base URI of the subschema at ``pointer`` (the document's if the walk missed it)."""
        return self.bases.get(pointer, self.bases.get("", DEFAULT_BASE))

    def resolve(self, ref: str, base: str, at: str) -> Target:
        """Resolve ``ref`` (a `$ref` value found at pointer ``at``) against ``base``."""
        uri, fragment = urldefrag(join_uri(base, ref))
        fragment = unquote(fragment)
        if uri not in self.resources:
            raise SchemaError(
                f"$ref {ref!r} points outside this schema document ({uri}); "
                "remote references are never fetched: inline the referenced schema under $defs",
                at,
            )
        resource_ptr = self.resources[uri]
        if fragment and not fragment.startswith("/"):
            pointer = self.anchors.get((uri, fragment))
            if pointer is None:
                raise SchemaError(f"$ref {ref!r}: no anchor {fragment!r} in this document", at)
        else:
            pointer = resource_ptr + fragment
        try:
            node = self._lookup(pointer)
        except (KeyError, IndexError, ValueError):
            raise SchemaError(f"$ref {ref!r} points at nothing ({pointer or '/'})", at) from None
        if not isinstance(node, dict | bool):
            raise SchemaError(f"$ref {ref!r} points at a non-schema ({pointer or '/'})", at)
        base_here = self.bases.get(pointer)
        if base_here is None:
            base_here = uri
            if isinstance(node, dict) and isinstance(node.get(self.id_key), str):
                base_here = urldefrag(join_uri(uri, node[self.id_key]))[0] or uri
        return Target(node, pointer, base_here)

    def check_refs(self) -> None:
        """Resolve every `$ref` in the document and refuse cycles that never reach a base case.

        A cycle through in-place keywords only (`$ref`, `allOf`, `anyOf`, `not`, `if`…) never
        descends into the instance, so a validator would loop forever on it
        (``{"not": {"$ref": "#"}}``). Raises :class:`SchemaError` naming the pointer.
        """
        edges: dict[str, list[str]] = {}
        for pointer, node in self.nodes:
            if isinstance(node, dict):
                edges[pointer] = self._in_place(pointer, node)
        # Iterative three-colour DFS (no Python recursion on deep documents).
        state: dict[str, int] = {}  # 1 on the stack, 2 done
        for start in edges:
            if start in state:
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            state[start] = 1
            while stack:
                at, i = stack[-1]
                nexts = edges.get(at, [])
                if i == len(nexts):
                    stack.pop()
                    state[at] = 2
                    continue
                stack[-1] = (at, i + 1)
                nxt = nexts[i]
                if state.get(nxt) == 1:
                    raise SchemaError(
                        "$ref cycle with no base case: the schema applies itself to the same "
                        "value again without ever looking inside it",
                        nxt,
                    )
                if nxt not in state and nxt in edges:
                    state[nxt] = 1
                    stack.append((nxt, 0))

    def _in_place(self, pointer: str, node: dict[str, Any]) -> list[str]:
        """Subschemas applied to the same instance as ``node`` (plus its `$ref` targets)."""
        out: list[str] = []
        base = self.bases.get(pointer, DEFAULT_BASE)
        for key in _REFERENCES:
            ref = node.get(key)
            if isinstance(ref, str):
                out.append(self.resolve(ref, base, child_pointer(pointer, key)).pointer)
            elif ref is not None:
                raise SchemaError(f"{key} must be a string", child_pointer(pointer, key))
        if "$ref" in node and self.dialect.ref_hides_siblings:
            return out
        out += [child for child, _, _ in keywords.subschemas(node, pointer, in_place=True)]
        return out

    def _lookup(self, pointer: str) -> Any:
        node = self.root
        if not pointer:
            return node
        if not pointer.startswith("/"):
            raise ValueError(pointer)
        for raw in pointer[1:].split("/"):
            token = unescape_token(raw)
            if isinstance(node, list):
                node = node[int(token)]
            elif isinstance(node, dict):
                node = node[token]
            else:
                raise KeyError(token)
        return node


# The last few documents follow_refs indexed (held, so an id can't be reused while cached).
_INDEXES: list[tuple[Any, RefIndex | None]] = []


def _index_of(root: Any) -> RefIndex | None:
    for held, cached in _INDEXES:
        if held is root:
            return cached
    index: RefIndex | None
    try:
        index = RefIndex(root)
    except SchemaError:
        index = None  # an unknown $schema, nesting too deep: nothing to follow
    _INDEXES.insert(0, (root, index))
    del _INDEXES[4:]
    return index


def follow_refs(root: Any, node: Any, hops: int = 16) -> Any:
    """``node`` with its `$ref` followed, up to ``hops`` times: the target's keywords with
    ``node``'s other keywords on top; references are resolved as the compiler resolves them,
    against the document's base. A remote or broken reference, or a target that isn't an
    object, leaves ``node`` as it stands (for describing a schema, not for validating one).
    ``root`` is indexed once and must not change afterwards."""
    index = _index_of(root)
    for _ in range(hops):
        ref = node.get("$ref") if isinstance(node, Mapping) else None
        if index is None or not isinstance(ref, str):
            return node
        try:
            target = index.resolve(ref, index.base_of(""), "")
        except SchemaError:
            return node
        if not isinstance(target.schema, dict):
            return node
        node = {**target.schema, **{k: v for k, v in node.items() if k != "$ref"}}
    return node
