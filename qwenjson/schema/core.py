"""The compiler's core: rules and their names, visiting schema nodes (memoised by JSON pointer,
which makes recursive `$ref` work), the fixed JSON rules, and the GBNF text out.

The keyword families (``objects``, ``arrays``, ``strings``, ``numbers``, ``alternatives``) and
``flatten`` (``$ref``, ``allOf``, ``not``) build on this; ``compiler.Compiler`` puts them together.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from qwenjson.errors import SchemaError
from qwenjson.pointer import unescape_token
from qwenjson.schema import gbnf
from qwenjson.schema.flat import Flat, LeftRecursion, Node, Unsatisfiable
from qwenjson.schema.gbnf import (
    IDENT,
    JSON_CHAR,
    JSON_ESCAPE,
    QUOTE,
    Alt,
    CharClass,
    Expr,
    Literal,
    Ref,
    is_atom,
    optional,
    repeat,
    seq,
)
from qwenjson.schema.keywords import INERT, Status, child_pointer
from qwenjson.schema.refs import RefIndex

# Nesting deeper than this is refused with a SchemaError instead of risking the stack.
MAX_DEPTH = 2000

# The fixed JSON rules (see fixed_rules) and what other rules write to use them.
VALUE, OBJECT, ARRAY, STRING, NUMBER, INTEGER = map(
    Ref, ("value", "object", "array", "string", "number", "integer")
)
JSON_CHAR_REF, JSON_ESCAPE_REF = Ref("json-char"), Ref("json-escape")
BOOLEAN = Alt((Literal("true"), Literal("false")))
NULL = Literal("null")
_DIGIT = CharClass("0-9")
_INTEGER = seq(
    repeat(Literal("-"), 0, 1),
    Alt((Literal("0"), seq(CharClass("1-9"), repeat(_DIGIT, 0, None)))),
)


@functools.cache
def fixed_rules(comma: Literal, colon: Literal) -> dict[str, Expr]:
    """The fixed JSON rules by name, with the profile's separators (added where referred to)."""
    member = seq(STRING, colon, VALUE)
    fraction = optional(seq(Literal("."), repeat(_DIGIT, 1, None)))
    exponent = optional(
        seq(CharClass("eE"), repeat(CharClass("-+"), 0, 1), repeat(_DIGIT, 1, None))
    )
    return {
        "value": Alt((OBJECT, ARRAY, STRING, NUMBER, *BOOLEAN.items, NULL)),
        "object": seq(
            Literal("{"),
            optional(seq(member, repeat(seq(comma, member), 0, None))),
            Literal("}"),
        ),
        "array": seq(
            Literal("["), optional(seq(VALUE, repeat(seq(comma, VALUE), 0, None))), Literal("]")
        ),
        "string": seq(QUOTE, repeat(JSON_CHAR_REF, 0, None), QUOTE),
        "number": seq(_INTEGER, fraction, exponent),
        "integer": _INTEGER,
        "boolean": BOOLEAN,
        "json-char": JSON_CHAR,
        # The escaped characters of json-char (used where some plain characters are excluded).
        "json-escape": JSON_ESCAPE,
    }


# Runs of dashes, which generated rule names never hold (see CompilerCore._namespace).
_DASHES = re.compile(r"--+")


def pointer_hint(pointer: str) -> str:
    """A readable rule name hint from a JSON pointer: the last named places in it."""
    if not pointer:
        return "root"
    tokens = [unescape_token(t) for t in pointer[1:].split("/")]
    words: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        named = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
        if t in named and i + 1 < len(tokens):
            words.append(tokens[i + 1])
            i += 2
            continue
        if t in ("items", "additionalItems", "prefixItems"):
            words.append("item")
        elif t == "additionalProperties":
            words.append("additional")
        elif t == "allOf" and i + 1 < len(tokens):
            i += 2  # a merged part: named after what it belongs to
            continue
        elif t in ("anyOf", "oneOf"):
            words.append(t[:-2].lower())
        elif t.isdigit():
            words.append(t)
        i += 1
    hint = "-".join(w if IDENT.fullmatch(w) else gbnf.rule_name(w) for w in words[-3:])
    return hint if IDENT.fullmatch(hint) else gbnf.rule_name(hint) if hint else "schema"


def is_pure_ref(schema: dict[str, Any], ref_hides_siblings: bool) -> bool:
    """A `$ref` with nothing asserted beside it (so the reference can be followed as is)."""
    if "$ref" not in schema:
        return False
    return ref_hides_siblings or INERT.issuperset(schema.keys() - {"$ref"})


class CompilerCore:
    """Rules, names and the visit of schema nodes; see ``compiler.Compiler``."""

    def __init__(
        self,
        schema: Any,
        *,
        closed_objects: bool = False,
        spaced: bool = False,
        must_admit: Collection[str] = (),
    ) -> None:
        self.schema = schema
        self.closed_objects = closed_objects
        # Subschemas (by pointer) that must admit a value: see ``visit``.
        self.must_admit = frozenset(must_admit)
        # The separators written between members/items and after keys, as GBNF literals.
        self.separators = (", ", ": ") if spaced else (",", ":")
        self.comma = Literal(self.separators[0])
        self.colon = Literal(self.separators[1])
        self.index = RefIndex(schema)
        self.dialect = self.index.dialect
        self.draft = self.dialect.draft
        self.rules: dict[str, Expr] = {}
        self.by_body: dict[Expr, Ref] = {}
        # The fixed rules' names; `root` is the document's alone (see _node_name).
        self.reserved: set[str] = set(fixed_rules(self.comma, self.colon)) | {"root"}
        self.memo: dict[str, Expr] = {}
        self.pending: set[str] = set()
        self.left: set[str] = set()  # pending keys with no text consumed since they started
        self.flat_cache: dict[str, Flat | bool] = {}
        self.marks: dict[tuple[str, str], tuple[Status, str]] = {}
        self.depth = 0
        self._placeholders: dict[str, Ref] = {}  # pending key → its rule
        self._flattening: set[str] = set()  # keys being flattened: a repeat is a cycle

    # ---- output -----------------------------------------------------------------------------

    def compile(self) -> str:
        """The GBNF text, with `root` first and every other rule sorted by name."""
        if not isinstance(self.schema, dict | bool):
            raise SchemaError("a JSON Schema must be an object or a boolean", "")
        self.index.check_refs()
        root = Node(self.schema, "", self.index.base_of(""), "")
        with _recursion_room():
            try:
                expr = self.visit(root)
                if expr != Ref("root"):
                    self.rules["root"] = expr
                self._add_fixed_rules()
                # Written out here, once: as deep as the expressions are (a long key's trie).
                lines = [f"root ::= {self.rules['root']}"]
                lines += [f"{n} ::= {self.rules[n]}" for n in sorted(self.rules) if n != "root"]
            except RecursionError:
                # Nesting that MAX_DEPTH doesn't count (allOf inside allOf, deep enum values).
                raise SchemaError("schema nested too deeply to compile", "") from None
        return "\n".join(lines) + "\n"

    def _add_fixed_rules(self) -> None:
        """The fixed rules the grammar's rules refer to, and those they refer to in turn."""
        fixed = fixed_rules(self.comma, self.colon)
        used: set[str] = set()
        todo = [body.refs for body in self.rules.values()]
        while todo:
            for name in todo.pop():
                if name in fixed and name not in used:
                    used.add(name)
                    todo.append(fixed[name].refs)
        for name in used:
            self.rules[name] = fixed[name]

    def mark(self, pointer: str, keyword: str, status: Status, note: str = "") -> None:
        """Record how a keyword at ``pointer`` ends up (refines the static report)."""
        current = self.marks.get((pointer, keyword))
        # A weaker status wins: once anything is validated-after, it stays so.
        if current is None or current[0] == "enforced":
            self.marks[(pointer, keyword)] = (status, note)

    def capped(
        self, f: Flat, lo: int, hi: int | None, limit: int, keywords: tuple[str, str], why: str
    ) -> tuple[int, int | None]:
        """``lo`` and ``hi`` as the grammar can hold them: one past ``limit`` is left out (0,
        None), and its keyword (``keywords``: the lower's, the upper's) checked afterwards."""
        if lo > limit:
            self.mark(f.pointer, keywords[0], "validated-after", why)
            lo = 0
        if hi is not None and hi > limit:
            self.mark(f.pointer, keywords[1], "validated-after", why)
            hi = None
        return lo, hi

    # ---- rules ------------------------------------------------------------------------------

    def _fresh_name(self, hint: str) -> str:
        """An unused rule name like ``hint``; never with ``--`` in it (see _namespace)."""
        base = _DASHES.sub("-", gbnf.rule_name(hint)).strip("-") or "r"
        name, n = base, 1
        while name in self.reserved or name in self.rules:
            n += 1
            name = f"{base}-{n}"
        self.reserved.add(name)
        return name

    def _namespace(self, hint: str) -> tuple[str, str]:
        """A fresh rule name, and the prefix for a translator's own rules: the name and ``--``.

        Generated names never hold ``--``, so a translator's rules can't take one of theirs:
        a regex's ``x-key-c0`` replaced a property ``c0``'s rule of the same name.
        """
        name = self._fresh_name(hint)
        return name, name + "--"

    def _adopt(self, rules: dict[str, Expr], pointer: str) -> None:
        """Add a translator's rules; a name already used for another body is refused."""
        for name, body in rules.items():
            if self.rules.get(name, body) != body:
                raise SchemaError(f"rule name clash {name!r}", pointer)
            self.rules[name] = body
            self.reserved.add(name)

    def rule(self, hint: str, body: Expr) -> Ref:
        """A rule with ``body`` (reusing an identical one), referred to by name."""
        existing = self.by_body.get(body)
        if existing is not None:
            return existing
        return self._define(self._fresh_name(hint), body)

    def _define(self, name: str, body: Expr) -> Ref:
        self.reserved.add(name)
        self.rules[name] = body
        ref = self.by_body[body] = Ref(name)
        return ref

    # ---- visiting ---------------------------------------------------------------------------

    def child(self, parent: Node, value: Any, *tokens: str | int) -> Node:
        pointer = child_pointer(parent.pointer, *tokens)
        base = self.index.bases.get(pointer, parent.base)
        return Node(value, pointer, base, pointer)

    def visit(self, node: Node) -> Expr:
        """A GBNF atom (rule name or literal) matching the instances of ``node``.

        A node in ``must_admit`` that no value satisfies is refused (a plain SchemaError, at the
        same place) instead of being compiled out by its container: array items that can't
        exist would otherwise make the array "always empty".
        """
        if node.pointer not in self.must_admit:
            return self._visit(node)
        try:
            return self._visit(node)
        except Unsatisfiable as e:
            refused = SchemaError(e.message)  # the message already names the place
            refused.pointer = e.pointer
            raise refused from e

    def _visit(self, node: Node) -> Expr:
        node = self._deref(node)
        key = node.key
        if key in self.memo:
            return self.memo[key]
        if key in self.pending:
            if key in self.left:
                raise LeftRecursion(key)
            # Referred back to while being generated: it needs a rule name now.
            if key not in self._placeholders:
                self._placeholders[key] = Ref(self._node_name(node))
            return self._placeholders[key]
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SchemaError(f"schema nested more than {MAX_DEPTH} levels deep", node.pointer)
        self.pending.add(key)
        self.left.add(key)
        try:
            expr = self._generate(node)
        finally:
            self.depth -= 1
            self.pending.discard(key)
            self.left.discard(key)
        placeholder = self._placeholders.pop(key, None)
        if placeholder is not None:
            self.rules[placeholder.name] = expr
            self.memo[key] = placeholder
            return placeholder
        result: Expr
        if is_atom(expr):
            result = expr
        else:
            result = self.by_body.get(expr) or self._define(self._node_name(node), expr)
        self.memo[key] = result
        return result

    def _node_name(self, node: Node) -> str:
        """The rule name for a schema node: ``root`` for the document, else from its pointer.

        Only the document may be ``root``: a property named "root" that took it became the
        start rule (Github_easy o42304, JsonSchemaStore vs-nesting).
        """
        return "root" if node.key == "" else self._fresh_name(pointer_hint(node.pointer))

    def _deref(self, node: Node) -> Node:
        """Follow a chain of plain `$ref`s (nothing else asserted beside them) to its end."""
        seen: set[str] = set()
        while isinstance(node.value, dict) and is_pure_ref(
            node.value, self.dialect.ref_hides_siblings
        ):
            if node.key in seen:
                raise SchemaError("$ref cycle with no base case", node.pointer)
            seen.add(node.key)
            ref = node.value["$ref"]
            if not isinstance(ref, str):
                raise SchemaError("$ref must be a string", child_pointer(node.pointer, "$ref"))
            target = self.index.resolve(ref, node.base, child_pointer(node.pointer, "$ref"))
            node = Node(target.schema, target.pointer, target.base, target.pointer)
        return node

    @contextmanager
    def consuming(self) -> Iterator[None]:
        """Inside a container, text has been consumed: recursion is no longer left recursion."""
        saved = self.left
        self.left = set()
        try:
            yield
        finally:
            self.left = saved

    def _sub(self, node: Node, value: Any, *tokens: str | int) -> Node:
        if isinstance(value, Node):
            return value
        if not isinstance(value, dict | bool):
            raise SchemaError(
                "a schema must be an object or a boolean", child_pointer(node.pointer, *tokens)
            )
        return self.child(node, value, *tokens)

    def _generate(self, node: Node) -> Expr:
        """The GBNF expression for one node (``compiler.Compiler`` dispatches by keyword)."""
        raise NotImplementedError

    def flatten(self, node: Node) -> Flat | bool:
        """The merged constraints of ``node`` (``flatten.Flattener``)."""
        raise NotImplementedError


_room_lock = threading.Lock()
_room_users = 0  # compilations running now, in any thread
_room_saved = 0  # the limit before the first of them raised it


@contextmanager
def _recursion_room() -> Iterator[None]:
    # Visiting a 1,000-deep schema takes a few Python frames per level; Python 3.11 frames
    # don't use the C stack, so a higher limit is safe. MAX_DEPTH bounds it. The limit is the
    # process's: raised by the first compilation running and put back by the last (each
    # putting back its own, threads left it raised for good).
    global _room_users, _room_saved
    with _room_lock:
        if _room_users == 0:
            _room_saved = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_room_saved, MAX_DEPTH * 12 + 1000))
        _room_users += 1
    try:
        yield
    finally:
        with _room_lock:
            _room_users -= 1
            if _room_users == 0:
                sys.setrecursionlimit(_room_saved)
