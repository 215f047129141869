"""JSON Schema → GBNF: one converter that visits the schema and emits deduplicated rules.

The grammar describes the canonical form of every valid instance: compact JSON (no whitespace),
object members in the order the schema lists them in ``properties``, then any others; strings
in the canonical JSON encoding. Where a keyword can't be carried exactly the grammar is a
superset and the keyword is reported as validated-after: jsonschema checks it at the end.

How it works: each schema node is *flattened* (``$ref`` and ``allOf`` merged into one set of
constraints), then ``anyOf``/``oneOf`` are distributed over the remaining constraints, then
one alternative per allowed JSON type is generated. Subschemas get their own rules, memoised
by JSON pointer, which is what makes recursive ``$ref`` (trees, linked lists) work.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from qwenjson.errors import SchemaError, UnsupportedKeywordError
from qwenjson.pointer import unescape_token
from qwenjson.schema import gbnf
from qwenjson.schema.numbers import int_range, number_range
from qwenjson.schema.refs import RefIndex, child_pointer
from qwenjson.schema.report import Status

# Repetition counts above this stay out of the grammar: llama.cpp expands `x{m,n}` into about
# n rules, so big bounds become `*` (a superset) and jsonschema checks them afterwards.
MAX_EXACT_REPEAT = 256
# String lengths may go further: `json-char{0,n}` is one rule repeated, and llama.cpp accepts
# n up to 1,999 (its MAX_REPETITION_THRESHOLD is 2,000 rules per repetition).
MAX_STRING_REPEAT = 1999
# Nesting deeper than this is refused with a SchemaError instead of risking the stack.
MAX_DEPTH = 2000
# More anyOf/oneOf combinations than this in one schema node are not distributed.
MAX_ALTERNATIVES_PRODUCT = 64
# A merged (allOf) node combines at most this many schemas; beyond, validation takes over.
MAX_MERGED_PARTS = 6
# Separates the parts of a merged node's memo key (JSON pointers can hold any other text).
_KEY_SEP = "\x1f"
# Enums with more values than this are factored into a trie (shared prefixes).
TRIE_THRESHOLD = 16

JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")

PRIMITIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "value": (
        'object | array | string | number | "true" | "false" | "null"',
        ("object", "array", "string", "number"),
    ),
    "object": ('"{" ( string ":" value ( "," string ":" value )* )? "}"', ("string", "value")),
    "array": ('"[" ( value ( "," value )* )? "]"', ("value",)),
    "string": ('"\\"" json-char* "\\""', ("json-char",)),
    "number": (
        '"-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?',
        (),
    ),
    "integer": ('"-"? ( "0" | [1-9] [0-9]* )', ()),
    "boolean": ('"true" | "false"', ()),
    "json-char": (gbnf.JSON_CHAR_RULE.split(" ::= ", 1)[1], ()),
    # The escaped characters of json-char (used where some plain characters are excluded).
    "json-escape": ('"\\\\" ["\\\\bfnrt] | "\\\\u00" [01] [0-9a-f]', ()),
}

QUOTE = '"\\""'

_LITERAL = re.compile(r'^"(?:[^"\\]|\\.)*"$')
_IDENT = re.compile(r"[a-zA-Z0-9-]+")
# Runs of dashes, which generated rule names never hold (see Compiler._namespace).
_DASHES = re.compile(r"--+")
# Finds primitive rule names in a body, skipping literals and classes (they match as "").
_PRIMITIVE_REF = re.compile(
    r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|(?<![a-zA-Z0-9-])('
    + "|".join(sorted(PRIMITIVES, key=len, reverse=True))
    + r")(?![a-zA-Z0-9-])"
)


def _is_atom(expr: str) -> bool:
    """A rule name or a single literal: usable anywhere without parentheses."""
    return bool(_IDENT.fullmatch(expr) or (expr[:1] == '"' and _LITERAL.match(expr)))


class Unsatisfiable(SchemaError):
    """No JSON value satisfies the schema (or this part of it)."""


class _LeftRecursion(Exception):
    """A schema refers back to itself before consuming any text (X = A | X)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Node:
    """A subschema with where it lives: its pointer, base URI and memo key."""

    value: Any
    pointer: str
    base: str
    key: str
    flat: Flat | None = None


@dataclass
class Flat:
    """The constraints of one schema node once ``$ref`` and ``allOf`` are merged in."""

    pointer: str
    types: set[str] | None = None
    enum: list[Any] | None = None
    properties: dict[str, Node] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    additional: list[Node] = field(default_factory=list)
    pattern_props: dict[str, list[Node]] = field(default_factory=dict)
    min_props: int = 0
    max_props: int | None = None
    prefix: list[list[Node]] = field(default_factory=list)
    items: list[Node] = field(default_factory=list)
    min_items: int = 0
    max_items: int | None = None
    min_len: int = 0
    max_len: int | None = None
    patterns: list[tuple[str, str]] = field(default_factory=list)  # (regex, pointer)
    formats: list[tuple[str, str]] = field(default_factory=list)  # (format, pointer)
    lower: list[tuple[float, bool]] = field(default_factory=list)  # (bound, exclusive)
    upper: list[tuple[float, bool]] = field(default_factory=list)
    groups: list[tuple[str, list[Node], str]] = field(default_factory=list)  # anyOf/oneOf
    property_names: list[Node] = field(default_factory=list)
    # Objects/arrays: did any merged schema constrain them (so the generic rule won't do)?
    object_constrained: bool = False
    array_constrained: bool = False

    def copy(self) -> Flat:
        return replace(
            self,
            types=None if self.types is None else set(self.types),
            enum=None if self.enum is None else list(self.enum),
            properties=dict(self.properties),
            required=list(self.required),
            additional=list(self.additional),
            pattern_props={k: list(v) for k, v in self.pattern_props.items()},
            prefix=[list(p) for p in self.prefix],
            items=list(self.items),
            patterns=list(self.patterns),
            formats=list(self.formats),
            lower=list(self.lower),
            upper=list(self.upper),
            groups=list(self.groups),
            property_names=list(self.property_names),
        )


def json_type_of(value: Any) -> str:
    """The JSON Schema type name of a JSON value (integers count as integer and number)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(type(value).__name__)


def _type_allows(types: set[str] | None, value: Any) -> bool:
    if types is None:
        return True
    kind = json_type_of(value)
    return kind in types or (kind == "integer" and "number" in types)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _intersect_types(a: set[str] | None, b: set[str] | None) -> set[str] | None:
    if a is None:
        return None if b is None else set(b)
    if b is None:
        return set(a)
    out = a & b
    if ("number" in a and "integer" in b) or ("integer" in a and "number" in b):
        out.add("integer")
    return out


def _canonical_json(value: Any, separators: tuple[str, str] = (",", ":")) -> list[str]:
    """The canonical text of one JSON value (an integral number is written as an integer)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return []
        if value.is_integer() and abs(value) < 2**53:
            return [str(int(value))]
    return [json.dumps(value, ensure_ascii=False, separators=separators, allow_nan=False)]


def _seq(*parts: str) -> str:
    """A GBNF sequence, adjacent literals merged ("a" "b" → "ab"), empty parts dropped."""
    out: list[str] = []
    for part in parts:
        if not part:
            continue
        if out and part[0] == '"' and out[-1][-1] == '"':
            head = _LEADING_LITERAL.match(part)
            tail = _TRAILING_LITERAL.search(out[-1])
            if head and tail and not _has_bar(part) and not _has_bar(out[-1]):
                out[-1] = out[-1][: tail.start()] + tail.group(0)[:-1] + part[1:]
                continue
        out.append(part)
    return " ".join(out)


_LEADING_LITERAL = re.compile(r'^"(?:[^"\\]|\\.)*"(?=\s|$)')
_TRAILING_LITERAL = re.compile(r'(?:^|(?<=\s))"(?:[^"\\]|\\.)*"$')


def _outside_quotes(expr: str) -> Iterator[tuple[int, str, int]]:
    """(index, character, paren depth) of each character outside literals and classes."""
    depth = 0
    in_lit = in_cls = False
    i = 0
    while i < len(expr):
        c = expr[i]
        if in_lit or in_cls:
            if c == "\\":
                i += 2
                continue
            if (in_lit and c == '"') or (in_cls and c == "]"):
                in_lit = in_cls = False
        elif c == '"':
            in_lit = True
        elif c == "[":
            in_cls = True
        else:
            if c == ")":
                depth -= 1
            yield i, c, depth
            if c == "(":
                depth += 1
        i += 1


def _has_bar(expr: str) -> bool:
    return " | " in expr and _has_top_level_bar(expr)


def _has_top_level_bar(expr: str) -> bool:
    return any(c == "|" and depth == 0 for _, c, depth in _outside_quotes(expr))


def _group(expr: str) -> str:
    """``expr`` as one atom (parenthesised unless it already is one)."""
    if not expr:
        return '""'
    if _is_atom(expr):
        return expr
    if expr.startswith("(") and expr.endswith(")") and _balanced_outer(expr):
        return expr
    return "( " + expr + " )"


def _balanced_outer(expr: str) -> bool:
    # True when the first "(" closes at the very end (so the whole thing is one group).
    last = len(expr) - 1
    return not any(c == ")" and d == 0 and i != last for i, c, d in _outside_quotes(expr))


def _alt(alternatives: Iterable[str]) -> str:
    """An alternation of expressions, duplicates removed, order kept."""
    return " | ".join(dict.fromkeys(alternatives))


def _repeat(atom: str, lo: int, hi: int | None) -> str:
    if hi is not None and hi < lo:
        # Never hand llama.cpp `{m,n}` with n < m: its parser runs out of memory on it.
        raise Unsatisfiable(f"no count between {lo} and {hi}")
    if hi is not None and hi == lo:
        return "" if lo == 0 else atom if lo == 1 else f"{atom}{{{lo}}}"
    if hi is None:
        return {0: f"{atom}*", 1: f"{atom}+"}.get(lo, f"{atom}{{{lo},}}")
    if lo == 0 and hi == 1:
        return f"{atom}?"
    return f"{atom}{{{lo},{hi}}}"


def _trie_alternation(texts: list[str]) -> str:
    """Literal alternatives factored on shared prefixes (llama.cpp then keeps few stacks)."""

    def build(group: list[str], depth: int) -> str:
        alts: list[str] = []
        ends = False
        by_char: dict[str, list[str]] = {}
        for t in group:
            if len(t) == depth:
                ends = True
            else:
                by_char.setdefault(t[depth], []).append(t)
        for sub in by_char.values():
            # Extend the common prefix as far as the whole subgroup agrees.
            end = depth + 1
            shortest = min(len(t) for t in sub)
            while end < shortest and all(t[end] == sub[0][end] for t in sub):
                end += 1
            head = gbnf.literal(sub[0][depth:end])
            rest = build(sub, end)
            alts.append(_seq(head, rest) if rest else head)
        if not alts:
            return ""
        body = " | ".join(alts)
        if ends:
            # Not `( … )?`: llama.cpp refuses a repetition of a group holding 2,000+ rules.
            return "( " + body + ' | "" )'
        return body if len(alts) == 1 else "( " + body + " )"

    return build(sorted(set(texts)), 0)


def _pointer_hint(pointer: str) -> str:
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
    hint = "-".join(w if _IDENT.fullmatch(w) else gbnf.rule_name(w) for w in words[-3:])
    return hint if _IDENT.fullmatch(hint) else gbnf.rule_name(hint) if hint else "schema"


class Compiler:
    """Compiles one schema document; use :meth:`compile` once per instance."""

    def __init__(self, schema: Any, *, closed_objects: bool = False, spaced: bool = False) -> None:
        self.schema = schema
        self.closed_objects = closed_objects
        # The separators written between members/items and after keys, as GBNF literals.
        self.separators = (", ", ": ") if spaced else (",", ":")
        self.comma = gbnf.literal(self.separators[0])
        self.colon = gbnf.literal(self.separators[1])
        self.index = RefIndex(schema)
        self.draft = self.index.draft
        self.rules: dict[str, str] = {}
        self.by_body: dict[str, str] = {}
        # The fixed rules' names; `root` is the document's alone (see _node_name).
        self.reserved: set[str] = set(PRIMITIVES) | {"root"}
        self.memo: dict[str, str] = {}
        self.pending: set[str] = set()
        self.left: set[str] = set()  # pending keys with no text consumed since they started
        self.flat_cache: dict[str, Flat | bool] = {}
        self.marks: dict[tuple[str, str], tuple[Status, str]] = {}
        self.depth = 0
        self._placeholders: dict[str, str] = {}  # pending key → its rule name
        self._flattening: set[str] = set()  # keys being flattened: a repeat is a cycle
        self._prescanned: set[str] = set()  # rule bodies whose primitive references are known
        self._primitives_used: set[str] = set()
        self._regex: Any = _load_optional("qwenjson.schema.regex", "regex_to_gbnf")
        self._format: Any = _load_optional("qwenjson.schema.formats", "format_to_gbnf")
        self._exact_formats: Any = _load_optional("qwenjson.schema.formats", "EXACT_FORMATS") or ()

    # ---- output -------------------------------------------------------------------------

    def compile(self) -> str:
        """The GBNF text, with `root` first and every other rule sorted by name."""
        if not isinstance(self.schema, dict | bool):
            raise SchemaError("a JSON Schema must be an object or a boolean", "")
        self.index.check_refs()
        root = Node(self.schema, "", self.index.base_of(""), "")
        with _recursion_room():
            try:
                expr = self.visit(root)
            except RecursionError:
                # Nesting that MAX_DEPTH doesn't count (allOf inside allOf, deep enum values).
                raise SchemaError("schema nested too deeply to compile", "") from None
        if expr != "root":
            self.rules["root"] = expr
        self._add_primitive_deps()
        lines = [f"root ::= {self.rules['root']}"]
        lines += [f"{name} ::= {self.rules[name]}" for name in sorted(self.rules) if name != "root"]
        return "\n".join(lines) + "\n"

    def _add_primitive_deps(self) -> None:
        used = set(self._primitives_used)
        todo = [b for b in self.rules.values() if b not in self._prescanned]
        todo += [PRIMITIVES[name][0] for name in used]
        while todo:
            body = todo.pop()
            for name in _PRIMITIVE_REF.findall(body):
                if name and name not in used:
                    used.add(name)
                    todo.append(PRIMITIVES[name][0])
        for name in used:
            self.rules[name] = self._primitive_body(name)

    def _primitive_body(self, name: str) -> str:
        body = PRIMITIVES[name][0]
        if name in ("object", "array") and self.separators != (",", ":"):
            body = body.replace('","', self.comma).replace('":"', self.colon)
        return body

    def mark(self, pointer: str, keyword: str, status: Status, note: str = "") -> None:
        """Record how a keyword at ``pointer`` ends up (refines the static report)."""
        current = self.marks.get((pointer, keyword))
        # A weaker status wins: once anything is validated-after, it stays so.
        if current is None or current[0] == "enforced":
            self.marks[(pointer, keyword)] = (status, note)

    # ---- rules --------------------------------------------------------------------------

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

    def _adopt(self, rules: dict[str, str], pointer: str) -> None:
        """Add a translator's rules; a name already used for another body is refused."""
        for name, body in rules.items():
            if self.rules.get(name, body) != body:
                raise SchemaError(f"rule name clash {name!r}", pointer)
            self.rules[name] = body
            self.reserved.add(name)

    def rule(self, hint: str, body: str) -> str:
        """A rule with ``body`` (reusing an identical one), returning its name."""
        existing = self.by_body.get(body)
        if existing is not None:
            return existing
        name = self._fresh_name(hint)
        self.rules[name] = body
        self.by_body[body] = name
        return name

    # ---- visiting -----------------------------------------------------------------------

    def child(self, parent: Node, value: Any, *tokens: str | int) -> Node:
        pointer = child_pointer(parent.pointer, *tokens)
        base = self.index.bases.get(pointer, parent.base)
        return Node(value, pointer, base, pointer)

    def visit(self, node: Node) -> str:
        """A GBNF atom (rule name or literal) matching the instances of ``node``."""
        node = self._deref(node)
        key = node.key
        if key in self.memo:
            return self.memo[key]
        if key in self.pending:
            if key in self.left:
                raise _LeftRecursion(key)
            # Referred back to while being generated: it needs a rule name now.
            if key not in self._placeholders:
                self._placeholders[key] = self._node_name(node)
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
        name = self._placeholders.pop(key, None)
        if name is not None:
            self.rules[name] = expr
            self.memo[key] = name
            return name
        if _is_atom(expr):
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
        return "root" if node.key == "" else self._fresh_name(_pointer_hint(node.pointer))

    def _deref(self, node: Node) -> Node:
        """Follow a chain of plain `$ref`s (nothing else asserted beside them) to its end."""
        seen: set[str] = set()
        while isinstance(node.value, dict) and _is_pure_ref(node.value, self.draft):
            if node.key in seen:
                raise SchemaError("$ref cycle with no base case", node.pointer)
            seen.add(node.key)
            ref = node.value["$ref"]
            if not isinstance(ref, str):
                raise SchemaError("$ref must be a string", child_pointer(node.pointer, "$ref"))
            target = self.index.resolve(ref, node.base, child_pointer(node.pointer, "$ref"))
            node = Node(target.schema, target.pointer, target.base, target.pointer)
        return node

    def _define(self, name: str, body: str) -> str:
        self.reserved.add(name)
        self.rules[name] = body
        self.by_body[body] = name
        return name

    @contextmanager
    def consuming(self) -> Iterator[None]:
        """Inside a container, text has been consumed: recursion is no longer left recursion."""
        saved = self.left
        self.left = set()
        try:
            yield
        finally:
            self.left = saved

    def _generate(self, node: Node) -> str:
        flat = node.flat if node.flat is not None else self.flatten(node)
        if isinstance(flat, bool):
            if not flat:
                raise Unsatisfiable("this schema matches nothing (false)", node.pointer)
            return "value"
        return self._gen_flat(flat, node)

    # ---- flattening ($ref, allOf) -----------------------------------------------------------

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
        if "not" in value and not (self.draft <= 7 and "$ref" in value):
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
            target = self.index.resolve(ref, node.base, child_pointer(node.pointer, ref_kw))
            parts.append(Node(target.schema, target.pointer, target.base, target.pointer))
            if self.draft <= 7:
                flat = Flat(node.pointer)  # siblings of $ref are ignored in draft 7 and earlier
            break
        all_of = value.get("allOf")
        if all_of is not None and not (self.draft <= 7 and "$ref" in value):
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
        if value is True or (isinstance(value, dict) and not set(value) - _NON_ASSERTING):
            self.mark(pointer, "not", "enforced", "not {}: matches nothing")
            return False
        if not isinstance(value, dict):
            return flat  # not false: no constraint
        keys = set(value) - _NON_ASSERTING
        if keys == {"type"}:
            names = value["type"] if isinstance(value["type"], list) else [value["type"]]
            gone = set(names)
            if "number" in gone:
                gone.add("integer")
            if "integer" in gone and "number" not in gone:
                return flat  # "a number that isn't an integer": not expressible
            allowed = _expanded_types(flat.types) - gone
            flat.types = {t for t in allowed if t != "integer" or "number" not in allowed}
            self.mark(pointer, "not", "enforced", "the excluded types are left out")
        elif keys == {"required"} and isinstance(value["required"], list):
            if len(value["required"]) == 1 and isinstance(value["required"][0], str):
                name = value["required"][0]
                # `required` holds for every non-object, so `not required` only admits objects.
                flat.types = _intersect_types(flat.types, {"object"})
                if not flat.types:
                    return False
                flat.properties[name] = Node(False, pointer, target.base, "#false")
                flat.object_constrained = True
                self.mark(pointer, "not", "enforced", f"property {name!r} left out")
        elif keys == {"enum"} and flat.enum is not None and isinstance(value["enum"], list):
            flat.enum = [v for v in flat.enum if not any(_json_equal(v, w) for w in value["enum"])]
            self.mark(pointer, "not", "enforced", "the excluded values are left out")
        return flat

    def _sub(self, node: Node, value: Any, *tokens: str | int) -> Node:
        if isinstance(value, Node):
            return value
        if not isinstance(value, dict | bool):
            raise SchemaError(
                "a schema must be an object or a boolean", child_pointer(node.pointer, *tokens)
            )
        return self.child(node, value, *tokens)

    def _own(self, s: dict[str, Any], node: Node) -> Flat:
        """A node's own keywords (not `$ref`/`allOf`), checked and normalised."""
        p = node.pointer
        f = Flat(p)

        def ptr(kw: str) -> str:
            return child_pointer(p, kw)

        def nonneg(kw: str) -> int | None:
            v = s.get(kw)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != int(v):
                raise SchemaError(f"{kw} must be a non-negative integer", ptr(kw))
            return int(v)

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
            f.enum = _intersect_enums(f.enum, [s["const"]])

        # Objects.
        props = s.get("properties")
        if props is not None:
            if not isinstance(props, dict):
                raise SchemaError("properties must be an object", ptr("properties"))
            f.properties = {k: self._sub(node, v, "properties", k) for k, v in props.items()}
        req = s.get("required")
        if req is not None and not isinstance(req, bool):  # draft-03's boolean `required`
            if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
                raise SchemaError("required must be an array of strings", ptr("required"))
            f.required = list(dict.fromkeys(req))
        if "additionalProperties" in s:
            f.additional = [self._sub(node, s["additionalProperties"], "additionalProperties")]
        pprops = s.get("patternProperties")
        if pprops is not None:
            if not isinstance(pprops, dict):
                raise SchemaError("patternProperties must be an object", ptr("patternProperties"))
            f.pattern_props = {
                k: [self._sub(node, v, "patternProperties", k)] for k, v in pprops.items()
            }
        f.min_props = nonneg("minProperties") or 0
        f.max_props = nonneg("maxProperties")
        f.object_constrained = not _OBJECT_KEYWORDS.isdisjoint(s)

        # Arrays.
        items = s.get("items")
        if isinstance(items, list):
            if self.draft >= 2020:
                raise SchemaError(
                    "items must be a schema (use prefixItems for tuples)", ptr("items")
                )
            f.prefix = [[self._sub(node, v, "items", i)] for i, v in enumerate(items)]
            if "additionalItems" in s:
                f.items = [self._sub(node, s["additionalItems"], "additionalItems")]
        elif items is not None:
            f.items = [self._sub(node, items, "items")]
        if "prefixItems" in s and self.draft >= 2020:
            pi = s["prefixItems"]
            if not isinstance(pi, list):
                raise SchemaError("prefixItems must be an array", ptr("prefixItems"))
            f.prefix = [[self._sub(node, v, "prefixItems", i)] for i, v in enumerate(pi)]
        f.min_items = nonneg("minItems") or 0
        f.max_items = nonneg("maxItems")
        f.array_constrained = not _ARRAY_KEYWORDS.isdisjoint(s)

        # Strings.
        f.min_len = nonneg("minLength") or 0
        f.max_len = nonneg("maxLength")
        if "pattern" in s:
            if not isinstance(s["pattern"], str):
                raise SchemaError("pattern must be a string", ptr("pattern"))
            f.patterns = [(s["pattern"], ptr("pattern"))]
        if "format" in s and isinstance(s["format"], str):
            f.formats = [(s["format"], ptr("format"))]

        # Numbers.
        for kw, side in (("minimum", f.lower), ("maximum", f.upper)):
            if kw in s:
                v = s[kw]
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise SchemaError(f"{kw} must be a number", ptr(kw))
                excl_kw = "exclusiveMinimum" if kw == "minimum" else "exclusiveMaximum"
                side.append((v, s.get(excl_kw) is True))
        for kw, side in (("exclusiveMinimum", f.lower), ("exclusiveMaximum", f.upper)):
            v = s.get(kw)
            if isinstance(v, int | float) and not isinstance(v, bool):
                side.append((v, True))
            elif v is not None and not isinstance(v, bool):
                raise SchemaError(f"{kw} must be a number", ptr(kw))
        mult = s.get("multipleOf")
        if mult is not None:
            if isinstance(mult, bool) or not isinstance(mult, int | float) or mult <= 0:
                raise SchemaError("multipleOf must be a number above 0", ptr("multipleOf"))
            if mult == 1 and f.types is not None and "number" in f.types:
                # multipleOf 1 on numbers means integers: the grammar can say that exactly.
                f.types = (f.types - {"number"}) | {"integer"}
                self.mark(p, "multipleOf", "enforced", "multipleOf 1: integers only")

        if "propertyNames" in s:
            f.property_names = [self._sub(node, s["propertyNames"], "propertyNames")]
            f.object_constrained = True
        for kind in ("anyOf", "oneOf"):
            if kind in s:
                alts = s[kind]
                if not isinstance(alts, list) or not alts:
                    raise SchemaError(f"{kind} must be a non-empty array", ptr(kind))
                f.groups.append(
                    (kind, [self._sub(node, v, kind, i) for i, v in enumerate(alts)], ptr(kind))
                )
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
        m.types = _intersect_types(a.types, b.types)
        if m.types is not None and not m.types:
            return False
        if b.enum is not None:
            m.enum = _intersect_enums(m.enum, b.enum)
        # Objects: a property only one side declares is, for the other side, an additional one.
        for name, sub in b.properties.items():
            if name in m.properties:
                m.properties[name] = self._both(m.properties[name], sub)
            else:
                extra = self._extra_schema_for(a, name)
                m.properties[name] = self._both(extra, sub) if extra is not None else sub
        for name in a.properties:
            if name not in b.properties:
                extra = self._extra_schema_for(b, name)
                if extra is not None:
                    m.properties[name] = self._both(m.properties[name], extra)
        m.required = list(dict.fromkeys(a.required + b.required))
        m.additional = a.additional + b.additional
        for pat, subs in b.pattern_props.items():
            m.pattern_props[pat] = m.pattern_props.get(pat, []) + subs
        m.min_props = max(a.min_props, b.min_props)
        m.max_props = _min_opt(a.max_props, b.max_props)
        m.object_constrained = a.object_constrained or b.object_constrained
        # Arrays.
        longest = max(len(a.prefix), len(b.prefix))
        prefix: list[list[Node]] = []
        for i in range(longest):
            here = (a.prefix[i] if i < len(a.prefix) else a.items) + (
                b.prefix[i] if i < len(b.prefix) else b.items
            )
            prefix.append(here)
        m.prefix = prefix
        m.items = a.items + b.items
        m.min_items = max(a.min_items, b.min_items)
        m.max_items = _min_opt(a.max_items, b.max_items)
        m.array_constrained = a.array_constrained or b.array_constrained
        # Strings and numbers.
        m.min_len = max(a.min_len, b.min_len)
        m.max_len = _min_opt(a.max_len, b.max_len)
        m.patterns = a.patterns + [x for x in b.patterns if x not in a.patterns]
        m.formats = a.formats + [x for x in b.formats if x not in a.formats]
        m.lower = a.lower + b.lower
        m.upper = a.upper + b.upper
        m.groups = a.groups + b.groups
        m.property_names = a.property_names + b.property_names
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
            if _py_search(pat, name):
                matched += subs
        chosen = matched if matched else f.additional
        result: Node | None = None
        for sub in chosen:
            result = sub if result is None else self._both(result, sub)
        return result

    # ---- generation -------------------------------------------------------------------------

    def _gen_flat(self, flat: Flat, node: Node) -> str:
        if flat.groups:
            return self._gen_groups(flat, node)
        if flat.enum is not None:
            return self._gen_enum(flat, node)
        types = flat.types
        order = ("object", "array", "string", "number", "integer", "boolean", "null")
        alts: list[str] = []
        unsat: list[Unsatisfiable] = []
        for t in order:
            if types is not None and t not in types:
                continue
            if t == "integer" and (types is None or "number" in types):
                continue  # numbers include the integers
            try:
                alts.append(self._gen_type(t, flat, node))
            except Unsatisfiable as e:
                unsat.append(e)
        if not alts:
            raise unsat[0] if unsat else Unsatisfiable("no type is allowed", flat.pointer)
        if types is None and alts == [
            "object",
            "array",
            "string",
            "number",
            '"true" | "false"',
            '"null"',
        ]:
            return "value"
        return _alt(alts)

    def _gen_type(self, t: str, f: Flat, node: Node) -> str:
        if t == "null":
            return '"null"'
        if t == "boolean":
            return '"true" | "false"'
        if t == "string":
            return self._gen_string(f, node)
        if t in ("number", "integer"):
            return self._gen_number(t, f, node)
        if t == "array":
            return self._gen_array(f, node)
        return self._gen_object(f, node)

    def _gen_groups(self, flat: Flat, node: Node) -> str:
        kind, branches, gptr = flat.groups[0]
        rest = flat.copy()
        rest.groups = flat.groups[1:]
        product = 1
        for _, bs, _ in flat.groups:
            product *= len(bs)
        if product > MAX_ALTERNATIVES_PRODUCT and len(flat.groups) > 1:
            # Keep the first group in the grammar; the others are checked afterwards.
            for k, _, p in flat.groups[1:]:
                self.mark(p.rsplit("/", 1)[0], k, "validated-after", "too many combinations")
            rest.groups = []
        empty_rest = _is_empty(rest)
        alts: list[str] = []
        errors: list[SchemaError] = []
        for i, br in enumerate(branches):
            try:
                if empty_rest:
                    alts.append(self.visit(br))
                    continue
                target = self._deref(br)
                if target.key in self.left:
                    # X = (siblings ∧ X) | …: the branch adds nothing to X.
                    raise _LeftRecursion(target.key)
                merged = self.merge(rest, self.flatten(br))
                if merged is False:
                    errors.append(Unsatisfiable("branch contradicts its siblings", br.pointer))
                    continue
                key = f"{node.key}|{kind}{len(flat.groups)}:{i}"
                sub = (
                    Node(merged, br.pointer, br.base, key)
                    if isinstance(merged, bool)
                    else Node(None, br.pointer, br.base, key, merged)
                )
                alts.append(self.visit(sub))
            except _LeftRecursion as e:
                if e.key != node.key:
                    raise SchemaError(
                        "left-recursive $ref cycle (a schema that is one of its own alternatives "
                        "through another one)",
                        br.pointer,
                    ) from None
            except Unsatisfiable as e:
                errors.append(e)
        if not alts:
            if errors:
                raise Unsatisfiable(f"no branch of {kind} can be satisfied", gptr)
            raise SchemaError(f"{kind} refers only to itself (no base case)", gptr)
        if kind == "oneOf" and len(alts) > 1 and not self._disjoint(rest, branches):
            self.mark(
                gptr.rsplit("/", 1)[0],
                "oneOf",
                "validated-after",
                "the grammar allows any branch; exactly-one is checked afterwards",
            )
        if len(alts) > TRIE_THRESHOLD and all(_LITERAL.match(a) for a in alts):
            # Many constants (anyOf of consts): one trie instead of thousands of stacks.
            return _trie_alternation([_unliteral(a) for a in alts])
        return _alt(alts)

    def _disjoint(self, rest: Flat, branches: list[Node]) -> bool:
        """Can no instance match two branches? Proofs: types, enums, a discriminator property,
        a property one branch requires and the other forbids."""
        flats: list[Flat] = []
        for br in branches:
            f = self.merge(rest, self.flatten(br))
            if f is False:
                continue  # matches nothing: overlaps nothing
            if not isinstance(f, Flat) or f.groups:
                return False
            flats.append(f)
        if len(flats) > 64:
            return False  # quadratic proof; many branches go to validation
        return all(self._apart(x, y) for i, x in enumerate(flats) for y in flats[i + 1 :])

    def _apart(self, x: Flat, y: Flat) -> bool:
        tx, ty = _possible_types(x), _possible_types(y)
        if not (tx & ty):
            return True
        if _enums_apart(x.enum, y.enum):
            return True
        # An enum none of whose values the other branch admits.
        for a, b in ((x, y), (y, x)):
            if a.enum is None or len(a.enum) * (len(b.enum or ()) + 1) > _PROOF_BUDGET:
                continue
            if not any(_scalar_fits(b, v) for v in a.enum):
                return True
        common = tx & ty
        if common <= {"number", "integer"}:
            return _intervals_apart(x, y)
        if common != {"object"}:
            return False
        for name in set(x.required) & set(y.required):
            if _enums_apart(self._prop_enum(x, name), self._prop_enum(y, name)):
                return True
        return any(self._forbids(b, name) for a, b in ((x, y), (y, x)) for name in a.required)

    def _prop_enum(self, f: Flat, name: str) -> list[Any] | None:
        node = f.properties.get(name)
        if node is None:
            return None
        flat = self.flatten(node)
        return flat.enum if isinstance(flat, Flat) else None

    def _forbids(self, f: Flat, name: str) -> bool:
        node = f.properties.get(name)
        if node is not None:
            return self.flatten(node) is False
        if any(_py_search(p, name) for p in f.pattern_props):
            return False
        return any(self.flatten(a) is False for a in f.additional)

    def _gen_enum(self, f: Flat, node: Node) -> str:
        texts: list[str] = []
        siblings = replace(f, enum=None)  # (checking v against the enum itself: n²)
        for v in f.enum or ():
            # Values the sibling keywords (lengths, patterns, bounds) rule out are left out.
            if not _scalar_fits(siblings, v):
                continue
            try:
                texts += _canonical_json(v, self.separators)
            except (TypeError, ValueError):
                continue
        texts = [t for t in dict.fromkeys(texts) if not _has_surrogate(t)]
        if not texts:
            raise Unsatisfiable("no value of enum/const is allowed here", f.pointer)
        beyond_scalars = f.object_constrained or f.array_constrained or f.formats
        if beyond_scalars or any(_unsure(p) for p, _ in f.patterns):
            self.mark(
                f.pointer,
                "enum",
                "validated-after",
                "keywords beside enum/const that the values weren't checked against here",
            )
        if len(texts) > TRIE_THRESHOLD:
            return _trie_alternation(texts)
        return _alt(gbnf.literal(t) for t in texts)

    def _gen_string(self, f: Flat, node: Node) -> str:
        lo, hi = f.min_len, f.max_len
        if hi is not None and lo > hi:
            raise Unsatisfiable(f"minLength {lo} > maxLength {hi}", f.pointer)
        content: str | None = None
        for pattern, pptr in f.patterns:
            if content is None and self._regex is not None:
                content = self._try_external(self._regex, pattern, pptr, "pattern")
                if content is not None:
                    continue
            self.mark(
                pptr.rsplit("/", 1)[0],
                "pattern",
                "validated-after",
                "pattern checked after generation",
            )
        for fmt, fptr in f.formats:
            if content is None and self._format is not None:
                content = self._try_external(self._format, fmt, fptr, "format")
                if content is not None and fmt in self._exact_formats:
                    continue
            self.mark(
                fptr.rsplit("/", 1)[0],
                "format",
                "validated-after",
                f"format {fmt!r} checked after generation (if the validator knows it)",
            )
        if content is not None:
            if lo > 0 or hi is not None:
                self.mark(
                    f.pointer,
                    "maxLength" if hi is not None else "minLength",
                    "validated-after",
                    "length beside pattern/format checked afterwards",
                )
            return _seq(QUOTE, _group(content), QUOTE)
        if lo == 0 and hi is None:
            return "string"
        if lo > MAX_STRING_REPEAT:
            self.mark(f.pointer, "minLength", "validated-after", "too long for the grammar")
            lo = 0
        if hi is not None and hi > MAX_STRING_REPEAT:
            self.mark(f.pointer, "maxLength", "validated-after", "too long for the grammar")
            hi = None
        if lo == 0 and hi is None:
            return "string"
        return _seq(QUOTE, _repeat("json-char", lo, hi), QUOTE)

    def _try_external(self, fn: Any, arg: str, pointer: str, keyword: str) -> str | None:
        _, prefix = self._namespace(_pointer_hint(pointer.rsplit("/", 1)[0]) + "-" + keyword)
        try:
            result = fn(arg, prefix)
        except UnsupportedKeywordError as e:
            self.mark(
                pointer.rsplit("/", 1)[0],
                keyword,
                "validated-after",
                f"not expressible in the grammar ({e.message}); checked afterwards",
            )
            return None
        except SchemaError as e:
            raise SchemaError(e.message if e.pointer is None else str(e), pointer) from None
        if result is None:
            return None
        expr, extra = result
        self._adopt(extra, pointer)
        return str(expr)

    def _gen_number(self, t: str, f: Flat, node: Node) -> str:
        lo = hi = None
        lo_ex = hi_ex = False
        for v, ex in f.lower:
            if lo is None or v > lo or (v == lo and ex):
                lo, lo_ex = v, ex
        for v, ex in f.upper:
            if hi is None or v < hi or (v == hi and ex):
                hi, hi_ex = v, ex
        if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_ex or hi_ex))):
            raise Unsatisfiable(f"minimum {lo} is above maximum {hi}", f.pointer)
        if t == "integer":
            ilo = None if lo is None else (math.floor(lo) + 1 if lo_ex else math.ceil(lo))
            ihi = None if hi is None else (math.ceil(hi) - 1 if hi_ex else math.floor(hi))
            if ilo is not None and ihi is not None and ilo > ihi:
                raise Unsatisfiable(f"no integer between {lo} and {hi}", f.pointer)
            if ilo is None and ihi is None:
                return "integer"
            return int_range(ilo, ihi)
        if lo is None and hi is None:
            return "number"
        exact = all(v is None or float(v).is_integer() for v in (lo, hi))
        if not exact:
            # Widen to the enclosing integers (a superset); validation checks the real bounds.
            lo, lo_ex = (None, False) if lo is None else (math.floor(lo), False)
            hi, hi_ex = (None, False) if hi is None else (math.ceil(hi), False)
        expr = number_range(
            None if lo is None else int(lo), lo_ex, None if hi is None else int(hi), hi_ex
        )
        if expr is None or not exact:
            self.mark(
                f.pointer,
                "minimum" if f.lower else "maximum",
                "validated-after",
                "bounds the grammar can't express exactly are checked after generation",
            )
        return expr if expr is not None else "number"

    def _gen_array(self, f: Flat, node: Node) -> str:
        if not f.array_constrained and not f.prefix and not f.items:
            return "array"
        lo, hi = f.min_items, f.max_items
        if hi is not None and lo > hi:
            raise Unsatisfiable(f"minItems {lo} > maxItems {hi}", f.pointer)
        with self.consuming():
            prefix: list[str | None] = []
            for subs in f.prefix:
                try:
                    prefix.append(self.visit(self._all(subs)))
                except Unsatisfiable:
                    prefix.append(None)  # no item can stand here: the array ends before
            rest: str | None
            try:
                rest = self.visit(self._all(f.items)) if f.items else "value"
            except Unsatisfiable:
                rest = None
        # Positions the array can reach: the first impossible prefix item ends it.
        cap = len(prefix)
        for i, p in enumerate(prefix):
            if p is None:
                cap = i
                break
        prefix = prefix[:cap]
        if rest is None or cap < len(f.prefix):
            hi = cap if hi is None else min(hi, cap)
        if lo > (hi if hi is not None else lo):
            raise Unsatisfiable("minItems can't be reached with these items", f.pointer)

        def tail(i: int) -> str:
            # Items from position i (0-based) on, i items already written.
            if hi is not None and i >= hi:
                return ""
            sep = self.comma if i > 0 else ""
            if i < len(prefix):
                body = _seq(sep, prefix[i] or "", tail(i + 1))
                return body if i < lo else _group(body) + "?"
            if rest is None:
                return ""  # unreachable: hi stops the array before the rest
            need = max(lo - i, 0)
            more = None if hi is None else hi - i
            if need > MAX_EXACT_REPEAT:
                self.mark(f.pointer, "minItems", "validated-after", "too many for the grammar")
                need = 0
            if more is not None and more > MAX_EXACT_REPEAT:
                self.mark(f.pointer, "maxItems", "validated-after", "too many for the grammar")
                more = None
            if i > 0:
                return _repeat(_group(_seq(self.comma, rest)), need, more)
            first = _seq(
                rest,
                _repeat(
                    _group(_seq(self.comma, rest)),
                    max(need - 1, 0),
                    None if more is None else more - 1,
                ),
            )
            return first if need > 0 else _group(first) + "?"

        return _seq('"["', tail(0), '"]"')

    def _all(self, subs: list[Node]) -> Node:
        """One node for all of ``subs`` together."""
        result = subs[0]
        for s in subs[1:]:
            result = self._both(result, s)
        return result

    def _gen_object(self, f: Flat, node: Node) -> str:
        if not f.object_constrained:
            return "object"
        props = dict(f.properties)
        for name in f.properties:
            # A declared property whose name a pattern matches must satisfy that schema too.
            for pat, subs in f.pattern_props.items():
                if _py_search(pat, name):
                    for pattern_schema in subs:
                        props[name] = self._both(props[name], pattern_schema)
        required = list(f.required)
        # Required names the schema doesn't declare come after the declared ones.
        for name in required:
            if name not in props:
                extra = self._extra_schema_for(f, name)
                props[name] = (
                    extra if extra is not None else Node(True, f.pointer, node.base, "#true")
                )
        with self.consuming():
            members: list[tuple[str, str, bool]] = []
            for name, sub in props.items():
                is_req = name in required
                try:
                    val = self.visit(sub)
                except Unsatisfiable as e:
                    if is_req:
                        raise Unsatisfiable(
                            f"required property {name!r} can't be satisfied", sub.pointer
                        ) from e
                    continue
                if _has_surrogate(name):
                    if is_req:
                        msg = f"required property {name!r} can't be written (lone surrogate)"
                        raise Unsatisfiable(msg, sub.pointer)
                    continue  # no UTF-8 text can hold a lone surrogate
                key_lit = _key_literal(name, self.separators[1])
                members.append((name, _seq(key_lit, val), is_req))
            extra_kv = self._extra_member(f, node, list(props))
        n_req = sum(1 for _, _, r in members if r)
        if f.max_props is not None and f.min_props > f.max_props:
            msg = f"minProperties {f.min_props} > maxProperties {f.max_props}"
            raise Unsatisfiable(msg, f.pointer)
        if f.max_props is not None and f.max_props < n_req:
            raise Unsatisfiable(
                f"maxProperties {f.max_props} < {n_req} required properties", f.pointer
            )
        if extra_kv is None and f.min_props > len(members):
            raise Unsatisfiable(f"minProperties {f.min_props} can't be reached", f.pointer)

        exact_counts = not members and extra_kv is not None
        if not exact_counts:
            if f.min_props > n_req:
                self.mark(f.pointer, "minProperties", "validated-after", "checked afterwards")
            if f.max_props is not None and (extra_kv is not None or f.max_props < len(members)):
                self.mark(f.pointer, "maxProperties", "validated-after", "checked afterwards")
        if not members:
            if extra_kv is None:
                return '"{}"'
            lo, hi = f.min_props, f.max_props
            if lo > 1:
                # A free-form key can be written twice ({"x":1,"x":2} is one property once
                # parsed): the grammar's count is an upper bound only.
                self.mark(f.pointer, "minProperties", "validated-after", "a key may repeat")
            if lo > MAX_EXACT_REPEAT or (hi is not None and hi > MAX_EXACT_REPEAT):
                self.mark(f.pointer, "maxProperties", "validated-after", "too many for the grammar")
                lo, hi = min(lo, 1), None
            if hi == 0:
                return '"{}"'
            more = _repeat(
                _group(_seq(self.comma, extra_kv)), max(lo - 1, 0), None if hi is None else hi - 1
            )
            body = _seq(extra_kv, more)
            return _seq('"{"', body if lo > 0 else _group(body) + "?", '"}"')

        extras_tail = _group(_seq(self.comma, extra_kv)) + "*" if extra_kv is not None else ""

        def t_seq(i: int) -> str:
            # Members i.. when something was written already (each one preceded by a comma).
            parts = []
            for _, kv, req in members[i:]:
                item = _seq(self.comma, kv)
                parts.append(item if req else _group(item) + "?")
            return _seq(*parts, extras_tail)

        first_req = next((i for i, (_, _, r) in enumerate(members) if r), None)
        stop = first_req if first_req is not None else len(members) - 1
        n = len(members)
        use_rules = (stop + 1) * n > 64
        alts: list[str] = []
        tail_names: dict[int, str] = {}

        def tail(i: int) -> str:
            if not use_rules or i >= n:
                return t_seq(i)
            if i not in tail_names:
                hint = _pointer_hint(f.pointer) + "-tail"
                body = _seq(
                    _group(_seq(self.comma, members[i][1])) + ("" if members[i][2] else "?"),
                    tail(i + 1),
                )
                tail_names[i] = self.rule(hint, body)
            return tail_names[i]

        for i in range(stop + 1):
            alts.append(_seq(members[i][1], tail(i + 1)))
        if first_req is None and extra_kv is not None:
            alts.append(_seq(extra_kv, extras_tail))
        inner = _alt(alts)
        if first_req is None:
            return _seq('"{"', _group(inner) + "?", '"}"')
        return _seq('"{"', _group(inner) if len(alts) > 1 else inner, '"}"')

    def _extra_member(self, f: Flat, node: Node, declared: list[str]) -> str | None:
        """`"key":value` for undeclared members, or None when none are allowed."""
        add_value: str | None = "value"
        if f.additional:
            try:
                add_value = self.visit(self._all(f.additional))
            except Unsatisfiable:
                add_value = None
        elif self.closed_objects and declared and f.min_props <= len(declared):
            # Generation profile: where the schema says nothing about undeclared properties, a
            # small model given the freedom invents keys ("description", "notes", …) and can
            # loop on them. Leaving them out keeps the grammar a subset of the valid documents.
            add_value = None
        members: list[str] = []
        if f.pattern_props:
            members, exact, add_value = self._pattern_members(f, node, declared, add_value)
            if f.property_names:
                self.mark(f.pointer, "propertyNames", "validated-after", "beside patternProperties")
            if not exact:
                self.mark(
                    f.pointer,
                    "patternProperties",
                    "validated-after",
                    "the grammar lets keys through that the patterns would route elsewhere",
                )
        if add_value is not None:
            key = self._names_key(f, node, declared) if f.property_names else None
            if key is None:
                key = self._string_excluding(declared)
            if key != '""':  # no name is allowed: no undeclared member
                members.append(_seq(key, self.colon, add_value))
        if not members:
            return None
        if len(members) == 1:
            return members[0]
        return self.rule(_pointer_hint(f.pointer) + "-member", _alt(members))

    def _names_key(self, f: Flat, node: Node, declared: list[str]) -> str | None:
        """Keys for undeclared members under ``propertyNames`` (None: any undeclared key).

        Enforced when the names schema is an enum, or string lengths/pattern/format;
        otherwise the grammar keeps any key and validation checks the names.
        """
        names = self.flatten(self._all(f.property_names))
        if isinstance(names, bool):
            if names:
                self.mark(f.pointer, "propertyNames", "enforced", "any name is allowed")
                return None
            self.mark(f.pointer, "propertyNames", "enforced", "no name is allowed")
            return '""'
        if names.types is not None and "string" not in names.types:
            return '""'  # names are strings: no name passes
        if names.groups or names.property_names:
            return None  # more than the grammar can say about a name
        # Keywords for other types (bounds, items, properties) never apply to a name.
        stringish = Flat(
            names.pointer,
            types={"string"},
            enum=names.enum,
            min_len=names.min_len,
            max_len=names.max_len,
            patterns=names.patterns,
            formats=names.formats,
        )
        if not all(_name_fits(stringish, name) for name in declared):
            self.mark(
                f.pointer,
                "propertyNames",
                "validated-after",
                "a declared property's name breaks propertyNames",
            )
            return None
        if names.enum is not None:
            keys = [v for v in names.enum if isinstance(v, str) and v not in declared]
            self.mark(f.pointer, "propertyNames", "enforced", "names from the enum")
            keys = [k for k in keys if not _has_surrogate(k)]
            if not keys:
                return '""'
            body = _alt(gbnf.json_string_literal(k) for k in keys)
            return self.rule(_pointer_hint(f.pointer) + "-name", body)
        expr = self._gen_string(stringish, node)
        self.mark(f.pointer, "propertyNames", "enforced", "names from the string rules")
        return expr if _is_atom(expr) else self.rule(_pointer_hint(f.pointer) + "-name", expr)

    def _pattern_members(
        self, f: Flat, node: Node, declared: list[str], add_value: str | None
    ) -> tuple[list[str], bool, str | None]:
        """Members whose keys match a patternProperties regex, whether that's exact, and the
        value left for keys no pattern matches (``add_value``, or None if every key matches)."""
        values: dict[str, str | None] = {}
        for pat, subs in f.pattern_props.items():
            try:
                values[pat] = self.visit(self._all(subs))
            except Unsatisfiable:
                values[pat] = None
        if add_value == "value" and all(v == "value" for v in values.values()):
            # Any key, any value: the patterns change nothing, and `add_value` takes every key
            # (Github_hard o82151's `".*": {}` allowed none when a universal pattern dropped it).
            return [], True, add_value
        universal = len(values) == 1 and next(iter(values)) in _UNIVERSAL_PATTERNS
        single = len(values) == 1 or all(v == "value" for v in values.values())
        # Exact when no other alternative can take a key a pattern matches (declared keys get
        # their patterns' schemas in _gen_object).
        exact = single and (add_value is None or universal)
        members: list[str] = []
        for pat, value in values.items():
            if value is None:
                exact = False  # keys matching it must not appear: the grammar can't say that
                continue
            key = (
                self._string_excluding(declared)
                if pat in _UNIVERSAL_PATTERNS
                else self._pattern_key(pat, f.pointer)
            )
            if key is None:
                exact = False
                key = "string"
            members.append(_seq(key, self.colon, value))
        if any(p in _UNIVERSAL_PATTERNS for p in values):
            add_value = None  # every key matches a pattern: additionalProperties never applies
        return members, exact, add_value

    def _pattern_key(self, pattern: str, pointer: str) -> str | None:
        """A rule for JSON strings matching ``pattern`` (None if the regex can't be a grammar)."""
        if self._regex is None:
            return None
        name, prefix = self._namespace(_pointer_hint(pointer) + "-key")
        where = child_pointer(pointer, "patternProperties", pattern)
        try:
            expr, extra = self._regex(pattern, prefix)
        except UnsupportedKeywordError:
            return None
        except SchemaError as e:
            raise SchemaError(e.message, where) from None
        self._adopt(extra, where)
        body = _seq(QUOTE, _group(str(expr)), QUOTE)
        return self.by_body.get(body) or self._define(name, body)

    def _string_excluding(self, names: list[str]) -> str:
        """A rule for JSON strings other than ``names`` (so declared keys aren't repeated)."""
        if not names:
            return "string"
        body = _other_key_body(tuple(names))
        # Its only references are these two; no need to scan this (big) body for them later.
        self._prescanned.add(body)
        self._primitives_used.update(("json-char", "json-escape"))
        return self.rule("other-key", body)


_ESCAPABLE = ['"', "\\", *[chr(c) for c in range(0x20)]]


@functools.lru_cache(maxsize=1024)
def _other_key_body(names: tuple[str, ...]) -> str:
    """GBNF for the JSON strings that aren't one of ``names``: a trie over their characters."""
    trie: dict[str, Any] = {}
    for name in names:
        if _has_surrogate(name):
            continue  # never generated anyway
        node = trie
        for ch in name:
            node = node.setdefault(ch, {})
        node[""] = {}

    def content(node: dict[str, Any]) -> str:
        # Built by hand, not with _seq/_group: they would rescan the nested text (n²).
        children = [c for c in node if c]
        alts = [] if "" in node else ['""']
        if children:
            alts.append(_json_char_excluding(frozenset(children)) + " json-char*")
        else:
            alts.append("json-char+")
        for ch in children:
            alts.append(_char_literal(ch) + " ( " + content(node[ch]) + " )")
        return " | ".join(alts)

    return QUOTE + " ( " + content(trie) + " ) " + QUOTE


@functools.lru_cache(maxsize=4096)
def _char_literal(ch: str) -> str:
    return gbnf.literal(gbnf.json_escape_content(ch))


@functools.lru_cache(maxsize=4096)
def _json_char_excluding(chars: frozenset[str]) -> str:
    """One canonical JSON string character, except the (decoded) ``chars``."""
    plain = sorted(c for c in chars if c not in _ESCAPABLE)
    escaped = [c for c in chars if c in _ESCAPABLE]
    cls = '[^"\\\\\\x00-\\x1F' + "".join(_class_char(c) for c in plain) + "]"
    if not escaped:
        return "( " + cls + " | json-escape )"
    allowed = [c for c in _ESCAPABLE if c not in chars]
    escapes = [gbnf.literal(gbnf.json_escape_content(c)) for c in allowed]
    return "( " + " | ".join([cls, *escapes]) + " )"


# Pairwise value comparisons a oneOf proof may make before giving up (validation then decides).
_PROOF_BUDGET = 20_000
# patternProperties regexes that match every string (JSON Schema regexes are unanchored).
_UNIVERSAL_PATTERNS = frozenset({"", ".*", "^.*", ".*$", "(.*)"})
_OBJECT_KEYWORDS = frozenset(
    {
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "minProperties",
        "maxProperties",
    }
)
_ARRAY_KEYWORDS = frozenset({"items", "prefixItems", "minItems", "maxItems"})
_NON_ASSERTING = frozenset(
    {
        "$ref",
        "$defs",
        "definitions",
        "$id",
        "id",
        "$schema",
        "$comment",
        "$anchor",
        "$dynamicAnchor",
        "$recursiveAnchor",
        "$vocabulary",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)


def _atoms(key: str) -> list[str]:
    if key.startswith("&(") and key.endswith(")"):
        return key[2:-1].split(_KEY_SEP)
    return [key]


def _name_fits(names: Flat, name: str) -> bool:
    """Does ``name`` satisfy the string constraints in ``names``? (False when unsure.)"""
    if names.enum is not None and name not in names.enum:
        return False
    if len(name) < names.min_len or (names.max_len is not None and len(name) > names.max_len):
        return False
    return not names.formats and all(_py_search(p, name) for p, _ in names.patterns)


def _key_literal(name: str, colon: str = ":") -> str:
    """The GBNF literal for `"name":` (the fast path skips escaping where none is needed)."""
    if name.isprintable() and '"' not in name and "\\" not in name:
        return '"\\"' + name + '\\"' + colon + '"'
    return gbnf.literal('"' + gbnf.json_escape_content(name) + '"' + colon)


def _is_pure_ref(schema: dict[str, Any], draft: int) -> bool:
    if "$ref" not in schema:
        return False
    return draft <= 7 or _NON_ASSERTING.issuperset(schema)


_GBNF_ESCAPES = {
    "\\": "\\",
    '"': '"',
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "]": "]",
    "[": "[",
    "-": "-",
    "^": "^",
}


def _unliteral(lit: str) -> str:
    """The text a GBNF literal (as :func:`gbnf.literal` writes them) matches."""
    body = lit[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            if nxt == "x":
                out.append(chr(int(body[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append(_GBNF_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _class_char(ch: str) -> str:
    # llama.cpp knows only the \x \u \U \t \r \n \\ \" \[ \] escapes: spell the rest in hex.
    if ch in "[]^-\\" or ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"\\x{ord(ch):02X}"
    return ch


def _possible_types(f: Flat) -> set[str]:
    """The types an instance of ``f`` can have (an enum narrows them to its values')."""
    types = _expanded_types(f.types)
    if f.enum is not None:
        types &= _expanded_types({json_type_of(v) for v in f.enum})
    return types


def _scalar_fits(f: Flat, value: Any) -> bool:
    """Might ``value`` satisfy ``f``? Checks types, enum, string and number keywords only."""
    if not _type_allows(f.types, value):
        return False
    if f.enum is not None and not any(_json_equal(value, w) for w in f.enum):
        return False
    if isinstance(value, str):
        if len(value) < f.min_len or (f.max_len is not None and len(value) > f.max_len):
            return False
        return all(_py_search(p, value) or _unsure(p) for p, _ in f.patterns)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return not _intervals_apart(
            f, Flat(f.pointer, lower=[(value, False)], upper=[(value, False)])
        )
    return True


def _unsure(pattern: str) -> bool:
    # Python's re may read an ECMA pattern differently (or not at all): then assume a match.
    try:
        re.compile(pattern)
    except re.error:
        return True
    return "\\p" in pattern or "\\u" in pattern


def _intervals_apart(x: Flat, y: Flat) -> bool:
    """Do the numeric bounds of ``x`` and ``y`` leave no number in common?"""

    def above(lower: list[tuple[float, bool]], upper: list[tuple[float, bool]]) -> bool:
        # Is some lower bound above (or, exclusively, at) some upper bound?
        return any(
            lo > hi or (lo == hi and (lo_ex or hi_ex)) for lo, lo_ex in lower for hi, hi_ex in upper
        )

    return above(x.lower, y.upper) or above(y.lower, x.upper)


def _enums_apart(a: list[Any] | None, b: list[Any] | None) -> bool:
    """Both are enums and share no value."""
    if a is None or b is None or len(a) * len(b) > _PROOF_BUDGET:
        return False
    return not any(_json_equal(v, w) for v in a for w in b)


def _expanded_types(types: set[str] | None) -> set[str]:
    """The types a set allows, with integer and number standing for each other's overlap."""
    out = set(JSON_TYPES) if types is None else set(types)
    if "number" in out:
        out.add("integer")
    if "integer" in out:
        out.add("number")
    return out


def _intersect_enums(a: list[Any] | None, b: list[Any]) -> list[Any]:
    if a is None:
        return list(b)
    return [v for v in a if any(_json_equal(v, w) for w in b)]


def _min_opt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _is_empty(f: Flat) -> bool:
    return f == Flat(f.pointer)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _py_search(pattern: str, text: str) -> bool:
    # Python's re is close to ECMA for the patterns schemas use; a pattern it can't read
    # matches nothing here (the grammar stays a superset via additional members).
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def _load_optional(module: str, attr: str) -> Any:
    """The other engineer's regex/format translators, once they exist."""
    try:
        mod = __import__(module, fromlist=[attr])
    except ImportError:
        return None
    return getattr(mod, attr, None)


@contextmanager
def _recursion_room() -> Iterator[None]:
    # Visiting a 1,000-deep schema takes a few Python frames per level; Python 3.11 frames
    # don't use the C stack, so a higher limit is safe. MAX_DEPTH bounds it.
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, MAX_DEPTH * 12 + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)
