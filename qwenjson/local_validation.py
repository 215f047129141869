"""Whether a valid document stays valid after values are put at known places, without
validating all of it.

The merge of a long text's pieces puts each piece's new values into the document so far and
must keep it valid. Validating the whole document after every piece costs what the document
does, so a text of thousands of distinct items merged in quadratic time (a review's figures:
1,500 items in 10.6 s, 6,000 in 65 s, 83% of it validation). ``LocalCheck.still_valid`` asks
only what a change can have changed; ``scripts/bench_merge.py`` measures both.

Why that is exact. Let the document ``D`` be valid and ``D'`` be ``D`` with a value put at each
of the paths ``P`` (a member set in an object, an item appended to a list). Walk each path from
the root; at each container on the way, its schema node ``S`` is *decomposable* when every
keyword of ``S`` is one of:

* a child keyword: ``properties``, ``additionalProperties``, ``items`` as one schema: each
  applies a subschema to each member or item on its own, so ``S`` holds of a container exactly
  when its *shallow* keywords (below) hold of it and every member or item is valid against the
  subschema(s) it falls under (no ``patternProperties``, so there is exactly one: the
  ``properties`` entry, else ``additionalProperties``);
* a shallow keyword: ``type``, ``required``, ``minProperties``, ``maxProperties``,
  ``propertyNames``, ``dependentRequired``, ``minItems``, ``maxItems``, ``uniqueItems``: each
  reads the container alone (its keys, its length, its items' equality), never a schema of a
  member;
* an annotation (``title``, ``description``, ``$defs``…, any ``x-`` keyword): no assertion.

A node that is only a ``$ref`` to ``#/…`` (with annotations beside it), an ``allOf`` of one
schema, or an ``anyOf``/``oneOf`` of one schema and ``{"type": "null"}`` is the schema it leads
to, for a container: a container is no null. Then ``D'`` is valid exactly when, for every path,
the value put there is valid against the subschema it falls under, and every container on the
way holds its shallow keywords: every other member or item is the very value it was in ``D``
under the very subschema, so valid as it was. Any other keyword on the way (``oneOf`` of two
objects, ``contains``, ``enum``, ``patternProperties``, ``unevaluatedProperties``…), or
anywhere a reference could be resolved differently from the root (``$id`` below the root,
anchors, dynamic references), and the whole document is validated instead: slower, never
wrong. ``tests/test_local_validation.py`` checks the verdict against validating the whole
document, on generated schemas and changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from jsonschema.protocols import Validator

from qwenjson.pointer import unescape_token, value_at
from qwenjson.validate import validation_errors

__all__ = ["LocalCheck"]

PathT = tuple[str | int, ...]

_CHILD = frozenset({"properties", "additionalProperties", "items"})
_SHALLOW = frozenset(
    {
        "type",
        "required",
        "minProperties",
        "maxProperties",
        "propertyNames",
        "dependentRequired",
        "minItems",
        "maxItems",
        "uniqueItems",
    }
)
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$schema",
        "$id",  # the root's (one anywhere else makes the check unusable: _resolves_from_root)
        "id",
        "$defs",
        "definitions",
    }
)
# Keys that make a reference resolve against something other than the root, or depend on the
# path a validation took: with any of them anywhere, the whole document is validated.
_SCOPED = frozenset(
    {"$id", "$anchor", "$dynamicAnchor", "$recursiveAnchor", "$dynamicRef", "$recursiveRef"}
)
_NULL = {"type": "null"}
_ANY: Mapping[str, Any] = {}


class LocalCheck:
    """``still_valid`` for one validator's schema (see the module's docstring)."""

    def __init__(self, validator: Validator) -> None:
        self.validator = validator
        self.root = validator.schema
        self.usable = _resolves_from_root(self.root)
        self._shallow: dict[int, Validator | None] = {}  # by id() of a node of self.root
        self._child: dict[int, Validator] = {}

    def still_valid(self, document: Any, changed: Sequence[PathT]) -> bool:
        """Whether ``document`` is valid, given that it was before values were put at the
        paths ``changed`` (each a member set or an item appended; none inside another)."""
        chains = [self._chain(document, path) for path in changed] if self.usable else [None]
        if any(chain is None for chain in chains):
            return not validation_errors(document, self.validator)
        containers: dict[PathT, Mapping[str, Any]] = {}
        unique: dict[PathT, set[int]] = {}  # lists with uniqueItems: the items changed
        for path, chain in zip(changed, chains, strict=True):
            assert chain is not None
            nodes, leaf = chain
            for depth, node in enumerate(nodes):
                containers[path[:depth]] = node
                index = path[depth]
                if node.get("uniqueItems") is True and isinstance(index, int):
                    unique.setdefault(path[:depth], set()).add(index)
            if validation_errors(value_at(document, path), self._child_validator(leaf)):
                return False
        for path, node in containers.items():
            shallow = self._shallow_validator(node)
            if shallow is not None and validation_errors(value_at(document, path), shallow):
                return False
        return all(_still_unique(value_at(document, path), new) for path, new in unique.items())

    def _chain(self, document: Any, path: PathT) -> tuple[list[Mapping[str, Any]], Any] | None:
        """The decomposable schema node of each container on ``path`` and the subschema the
        value at ``path`` falls under; None if a node on the way isn't decomposable."""
        if not path:
            return None  # the whole document: nothing to save
        nodes: list[Mapping[str, Any]] = []
        node: Any = self.root
        value = document
        for part in path:
            plain = self._plain(node)
            if plain is None:
                return None
            nodes.append(plain)
            if isinstance(value, dict) and isinstance(part, str):
                props = plain.get("properties", {})
                if not isinstance(props, Mapping):
                    return None
                node = props[part] if part in props else plain.get("additionalProperties", True)
            elif isinstance(value, list) and isinstance(part, int):
                node = plain.get("items", True)
                if not isinstance(node, (Mapping, bool)):
                    return None  # items as an array: a tuple
            else:
                return None
            value = value[part]
        if isinstance(node, Mapping) and "$schema" in node:
            return None  # evolve() would choose that dialect's validator, not ours
        return nodes, node

    def _plain(self, node: Any) -> Mapping[str, Any] | None:
        """``node`` as a decomposable container schema, through the shapes that are the schema
        they lead to; None if it isn't one."""
        for _ in range(16):
            if node is True:
                return _ANY
            if not isinstance(node, Mapping):
                return None
            asserting = {k for k in node if k not in _ANNOTATIONS and not k.startswith("x-")}
            if asserting <= _CHILD | _SHALLOW:
                return node
            if len(asserting) != 1:
                return None
            (key,) = asserting
            value = node[key]
            if key == "$ref" and isinstance(value, str):
                node = self._target(value)
            elif key == "allOf" and isinstance(value, list) and len(value) == 1:
                node = value[0]
            elif key in ("anyOf", "oneOf") and isinstance(value, list) and len(value) == 2:
                others = [branch for branch in value if branch != _NULL]
                if len(others) != 1:
                    return None
                node = others[0]
            else:
                return None
        return None

    def _target(self, ref: str) -> Any:
        """The node a ``#``/``#/…`` reference points to in the root, or None."""
        if ref != "#" and not ref.startswith("#/"):
            return None
        node: Any = self.root
        for token in ref[2:].split("/") if ref != "#" else []:
            token = unescape_token(unquote(token))
            if isinstance(node, Mapping) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdecimal() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
        return node

    def _shallow_validator(self, node: Mapping[str, Any]) -> Validator | None:
        key = id(node)
        if key not in self._shallow:
            # uniqueItems by ``_still_unique``: jsonschema compares every pair of objects.
            shallow = {k: v for k, v in node.items() if k in _SHALLOW and k != "uniqueItems"}
            self._shallow[key] = self.validator.evolve(schema=shallow) if shallow else None
        return self._shallow[key]

    def _child_validator(self, node: Any) -> Validator:
        key = id(node)
        if key not in self._child:
            self._child[key] = self.validator.evolve(schema=node)
        return self._child[key]


def _still_unique(items: list[Any], changed: set[int]) -> bool:
    """Whether ``items`` are distinct, given that those not ``changed`` are: each changed one
    differs from every other, compared as JSON Schema compares (``_key``); linear in the list,
    where jsonschema's check is quadratic in it for objects (a long text's list of people)."""
    kept = {_key(item) for i, item in enumerate(items) if i not in changed}
    for i in changed:
        key = _key(items[i])
        if key in kept:
            return False
        kept.add(key)
    return True


def _key(value: Any) -> str:
    """A string two JSON values share exactly when JSON Schema calls them equal: a number by
    its value (1 and 1.0), never a boolean (true is not 1), members in any order."""

    def canonical(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: canonical(x) for k, x in v.items()}
        if isinstance(v, list):
            return [canonical(x) for x in v]
        return v

    return json.dumps(canonical(value), sort_keys=True, ensure_ascii=False)


def _resolves_from_root(root: Any) -> bool:
    """Whether no key anywhere in ``root`` (property names too: a false alarm is only slower)
    is one that scopes references, but the root's own ``$id``; nor draft 4's ``id`` below the
    root, where it is one."""
    draft4 = isinstance(root, Mapping) and "draft-04" in str(root.get("$schema", ""))
    scoped = _SCOPED | {"id"} if draft4 else _SCOPED
    return not any(key in scoped for key in _keys_below(root, top=True))


def _keys_below(node: Any, top: bool = False) -> Iterator[str]:
    stack: list[tuple[Any, bool]] = [(node, top)]
    while stack:
        node, top = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if not (top and key in ("$id", "id")):
                    yield key
                stack.append((value, False))
        elif isinstance(node, list):
            stack.extend((item, False) for item in node)
