"""Which strings of a schema are grounded, and what a value with no source becomes.

``grounding_rules`` reads a schema once into rules by path pattern (array indices left open);
the span constraint (``qwenjson.grounding``) and abstention (``qwenjson.evidence``) follow them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from qwenjson.pointer import follow_local_refs
from qwenjson.schema.dialect import dialect_of
from qwenjson.validate import ecma_validator

__all__ = [
    "GROUNDED_KEY",
    "Bounds",
    "FieldRule",
    "Kind",
    "Path",
    "Pattern",
    "dense_bytes",
    "grounding_rules",
    "pattern_of",
    "required_keys",
    "value_floors",
]

GROUNDED_KEY = "x-grounded"
# An object's or list's x-grounded, handed to what it holds as their default (the walker's own
# key on the copies it walks; refused in a schema: ``qwenjson.validate``).
INHERITED_KEY = "x-qwenjson-inherited-grounded"

Path = tuple[str | int, ...]
# A path with array indices left open (None): the rules apply to every item.
Pattern = tuple[str | None, ...]


def pattern_of(path: Path) -> Pattern:
    """The pattern a concrete path falls under (its list indices left open)."""
    return tuple(None if isinstance(p, int) else p for p in path)


Abstain = Literal["omit", "null", "item", "none"]
# What a grounded value is checked against: a span of the text, or one of the dates or numbers
# the text can be read as (``qwenjson.readings``).
Kind = Literal["text", "date", "number", "integer"]

# An optional (or nullable) grounded text value the model gives a lower confidence is
# abstained from (``qwenjson.evidence``; ``--abstain-below``).
# The 0.5B fills optional fields with spans it gives little probability ("timeRange": "at " in
# a voice command). scripts/abstain_threshold.py rescored scripts/quality.py's outputs at each
# threshold: overall 35.7% at 0 (nothing dropped), 36.4 at 0.05 and 0.1, 36.6 at 0.2 and 0.3,
# 36.4 at 0.4, 36.2 at 0.5; at 0.2 no source lower (voice commands 25.8 -> 29.6, résumés
# 31.6 -> 34.0, addresses 12.9 -> 13.0). 0.2: the low end of the plateau, so that the fewest
# right values go.
ABSTAIN_BELOW = 0.2

# Deeper than this the rules stop (a recursive schema would go on forever); deeper strings are
# generated under the grammar alone.
_MAX_RULE_DEPTH = 12
# Node visits of a recursive schema's walk for its rules, at most (the first walk, each $ref
# once down a path, is never cut short: it is the schema as written). A tree of 2
# self-references is ruled 10 levels down (1,023 patterns): its rules, required keys and
# floors take 0.18 s; 3 or 4 Optional self-references, 0.4 s.
_MAX_WALKS = 4_000
# Node visits of the first walk, the schema as written, at most: the JSONSchemaBench schema with
# the most rules (Github_ultra/o13934, 37,742) takes 75,654 (0.75 s); past it, the schema is
# read level by level (9 $defs naming each other: 2 s a walk, against 3 s to minutes unbounded).
_MAX_FIRST_WALK = 100_000


class _TooWide(Exception):
    """The walk went past _MAX_WALKS (a wide recursive schema)."""


# Field names that ask the model to write, not to copy (the whole name, any case, words joined
# by _ - or blanks). Measured: the seed case's "summary" is a written sentence, and grounding
# it to a span of the text would make it a copy. Names *ending* in one of the first group are
# written too ("short_summary"); "description" counts only as the whole name, because
# extraction schemas name copied fields "condition_description" and the like.
_WRITTEN_ENDINGS = frozenset(
    {"summary", "explanation", "reasoning", "rationale", "translation", "paraphrase", "synopsis"}
)
_WRITTEN_NAMES = _WRITTEN_ENDINGS | frozenset(
    {"abstract", "description", "reason", "comment", "comments", "overview", "gist", "tldr"}
)
# The same in Chinese, where words aren't spaced: a name that is one of these, or ends with one
# of the first group (文章摘要, 中文翻译; not 翻译者, a translator's name, nor 病情描述, as
# condition_description, nor 原因代码).
_WRITTEN_ZH_ENDINGS = ("摘要", "总结", "概括", "概述", "翻译", "说明", "解释", "推理")
_WRITTEN_ZH = frozenset({*_WRITTEN_ZH_ENDINGS, "描述", "理由", "原因", "简介", "评价"})


_NUMBER_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


@dataclass(frozen=True)
class Bounds:
    """A number's ``minimum``, ``maximum``, ``exclusiveMinimum``/``Maximum`` and ``multipleOf``:
    the readings of the text outside them are not offered (the grammar would cut one short:
    "12" of 1234 under ``"maximum": 99``, a value the text doesn't say, where it says 7).

    Checked by jsonschema's own validator for the schema's draft, on the field's schema as
    written at its place, so a reading is offered exactly when the document's validation takes
    it there: draft 4's boolean ``exclusiveMinimum`` beside ``minimum`` (read as a plain bound,
    5 was offered and the grammar made it 50), a float ``multipleOf`` (exact in decimals:
    ``qwenjson.validate``), a bound behind ``$ref`` beside one of its own
    or in ``allOf`` (read from the merged keywords, 500 was offered under a ``maximum`` of 99,
    and the grammar made it 50), and draft 7's ``$ref`` hiding its siblings."""

    keywords: str  # the field's schema as written, as JSON (what equality and hashing see)
    check: Any = field(compare=False, repr=False)  # jsonschema's validator, at that place

    def admits(self, content: bytes) -> bool:
        """Whether the JSON number ``content`` is valid where the field is."""
        try:
            return bool(self.check.is_valid(json.loads(content)))
        except Exception:  # a $ref jsonschema can't resolve here: the reading stays offered
            return True


_COMBINED = ("$ref", "allOf", "anyOf", "oneOf")


def _bounds(written: Any, merged: Mapping[str, Any], root: Mapping[str, Any]) -> Bounds | None:
    """The bounds of a number field whose schema is ``written`` at its place (``merged``: with
    its ``$ref`` followed), or None (none set, or a schema with no known draft)."""
    here = isinstance(written, Mapping) and any(k in written for k in _COMBINED)
    if not here and not any(k in merged for k in _NUMBER_KEYWORDS):
        return None
    try:
        check = ecma_validator(dialect_of(root).validator)(root).evolve(schema=written)
        return Bounds(json.dumps(written, sort_keys=True, default=str), check)
    except Exception:  # the schema's own check reports a bad schema; here there is no filter
        return None


@dataclass(frozen=True)
class FieldRule:
    """How one string (or number) field is generated.

    ``kind``: what a grounded value is checked against: a span of the text (``text``), or one
    of the text's dates (``date``: a ``"format": "date"`` string) or numbers (``number``,
    ``integer``) as JSON writes them.

    ``abstain`` says what a grounded value the text has no source for becomes: ``omit`` (an
    optional member: left out), ``null`` (a required, nullable one), ``item`` (a list item:
    dropped), ``none`` (required and not nullable: it keeps the best grounded value).
    """

    grounded: bool
    abstain: Abstain
    kind: Kind = "text"
    bounds: Bounds | None = None  # a number's: only readings within them are offered
    # A string's maxLength: only spans that can end at a boundary within it are begun (the
    # grammar cut "Alexander" to "Alexa" under maxLength 5, where "Bob" fitted).
    max_chars: int | None = None


def grounding_rules(
    schema: Mapping[str, Any] | bool, *, default: bool = True
) -> dict[Pattern, FieldRule]:
    """The grounded string fields of ``schema``, by path pattern (``None`` = any list index).

    A string is grounded when its schema (after local ``$ref``s) says ``"x-grounded": true``,
    or, with ``default``, when it has no ``enum``, ``const``, ``format`` or ``pattern`` (those
    keep their own rules), no ``"x-grounded": false``, and its field name doesn't ask for
    writing (``summary``, ``摘要``, …: see ``_WRITTEN_ENDINGS``). An ``anyOf``/``oneOf`` of
    one branch and null (Pydantic's Optional) is ruled as that branch; strings under other
    ``anyOf``/``oneOf``, ``allOf``, ``additionalProperties`` and ``prefixItems`` places unlike
    the list's ``items`` are left to the grammar. A
    ``"format": "date"`` string and a number are grounded to the dates and numbers the text
    can be read as (``kind``), on the same terms, whatever the field's name.
    """
    walker = _Walker(schema, default)
    return walker.rules


def required_keys(schema: Mapping[str, Any] | bool) -> dict[Pattern, tuple[str, ...]]:
    """The required property names of each object of ``schema``, by path pattern."""
    return _Walker(schema, True).required


def value_floors(schema: Mapping[str, Any] | bool) -> dict[Pattern, int]:
    """The bytes of the shortest JSON value each path pattern of ``schema`` allows (``{"x":
    ""}`` for an object that requires a string ``x``; of an ``enum``, its longest label, which
    steering can't shorten), for the budget to reserve what closing a document really costs
    (``SpanTracker.closing_reserve``)."""
    return _Walker(schema, True, floors=True).floors


@dataclass(frozen=True)
class SchemaFields:
    """What ``grounding_rules``, ``required_keys`` and ``value_floors`` give, from one walk."""

    rules: dict[Pattern, FieldRule]
    required: dict[Pattern, tuple[str, ...]]
    floors: dict[Pattern, int]
    # What each object becomes when a required member has no source (``Abstain``: an optional
    # object is left out, a nullable one is null, a list item is dropped; ``none``: kept).
    objects: dict[Pattern, Abstain]
    # How many bytes of each floor are dense (``dense_bytes``, where some are), and each list's
    # minItems (where above 0): what closing really costs (``SpanTracker.closing_reserve``).
    dense: dict[Pattern, int]
    min_items: dict[Pattern, int]


def schema_fields(schema: Mapping[str, Any] | bool, *, default: bool = True) -> SchemaFields:
    """The three, as the ``Extractor`` needs them: one walk of ``schema`` (each walk of a big
    or recursive schema costs up to its budgets, once per function), a second only for the
    rules when ``default`` is off (the walk's cuts don't depend on it; a prefixItems place's
    comparison may, so required keys and floors stay those of the default)."""
    walker = _Walker(schema, True, floors=True)
    rules = walker.rules if default else grounding_rules(schema, default=False)
    floors, dense = walker.floors, walker.dense
    return SchemaFields(rules, walker.required, floors, walker.objects, dense, walker.min_items)


def dense_bytes(text: str) -> int:
    """The bytes of ``text`` in characters that are digits or next to one: Qwen2's tokenizer
    writes each digit as a token, and the separators between digits as tokens of their own
    (``"2018-03-23"``: 11 tokens for 12 bytes, where two bytes a token would say 6;
    ``scripts/steering_reserve.py`` measures it)."""
    near = [c.isdigit() for c in text]
    return sum(
        len(c.encode())
        for i, c in enumerate(text)
        if near[i] or (i > 0 and near[i - 1]) or (i + 1 < len(text) and near[i + 1])
    )


class Size(NamedTuple):
    """A shortest value's size: its bytes, and how many of them are dense (``dense_bytes``)."""

    bytes: int
    dense: int = 0

    def __add__(self, other: object) -> Size:
        assert isinstance(other, Size)
        return Size(self.bytes + other.bytes, self.dense + other.dense)


_ONE = Size(1, 1)  # "0": a digit


def _json_size(value: Any) -> Size:
    text = json.dumps(value, ensure_ascii=False)
    return Size(len(text.encode()), dense_bytes(text))


# The shortest value of a string of each format the grammar writes in full: a date is ten
# characters, never "" (a required date reserved one token and took eleven).
_FORMAT_FLOORS = {
    "date": _json_size("2000-01-01"),
    "date-time": _json_size("2000-01-01T00:00:00Z"),
    "time": _json_size("00:00:00Z"),
    "uuid": _json_size("00000000-0000-0000-0000-000000000000"),
}


class _Floors:
    """Shortest-value sizes of one schema's nodes, each worked out once.

    A floor only has to be a lower bound, so a node met again while its own floor is being
    worked out (a recursive ``$ref``) counts 1: without that and the memo, an object of k
    members ``anyOf [null, {"$ref": "#"}]`` took time as k**6 (k = 10: 82 s)."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.known: dict[int, Size] = {}
        self.open: set[int] = set()
        # Known by the node as given (a schema's own dict), held so that its id stays its own:
        # keyed by the dict a $ref's following makes afresh, a freed id was reused and one
        # $def's floor given to another (a string's 2 bytes read as 36).
        self._held: list[Any] = []

    def of(self, node: Any, depth: int = 0) -> Size:
        if depth > _MAX_RULE_DEPTH or not isinstance(node, Mapping):
            return _ONE
        key = id(node)
        if key in self.open:
            return _ONE
        if key not in self.known:
            self._held.append(node)
            followed = follow_local_refs(self.root, node)
            self.open.add(key)
            try:
                self.known[key] = (
                    _floor(self, followed, depth) if isinstance(followed, Mapping) else _ONE
                )
            finally:
                self.open.discard(key)
        return self.known[key]


def _floor(floors: _Floors, node: Mapping[str, Any], depth: int) -> Size:
    """The size of the shortest value ``node`` allows, written as qwenjson's grammar writes it
    (", " and ": " between members); 1 byte where the schema says too little to tell (``0``)."""
    if "const" in node:
        return _json_size(node["const"])
    enum = node.get("enum")
    if isinstance(enum, list) and enum:
        # The longest label: steering shortens a string, a list or a branch (null), never the
        # label the model is choosing (near the end of a budget it may begin a long one).
        return max(_json_size(v) for v in enum)
    for key in ("anyOf", "oneOf"):
        branches = node.get(key)
        if isinstance(branches, list) and branches:
            return min(floors.of(b, depth + 1) for b in branches)
    sizes = [_type_floor(floors, node, t, depth) for t in _types(node)]
    return min(sizes, default=_ONE)


def _type_floor(floors: _Floors, node: Mapping[str, Any], t: str, depth: int) -> Size:
    if t == "string":
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt in _FORMAT_FLOORS:
            return _FORMAT_FLOORS[fmt]
        least = node.get("minLength")
        return Size(2 + (least if isinstance(least, int) and not isinstance(least, bool) else 0))
    if t in ("boolean", "null"):
        return Size(4)
    if t == "object":
        props = node.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = node.get("required")
        names = [k for k in required if isinstance(k, str)] if isinstance(required, list) else []
        # The ", " and ": " between members are tokens of their own ("x": 0 is five).
        commas = 2 * max(len(names) - 1, 0)
        total = Size(2 + commas, commas)
        for k in names:
            total = total + _json_size(k) + Size(2, 2) + floors.of(props.get(k, True), depth + 1)
        return total
    if t == "array":
        n = _min_items(node)
        item = floors.of(node.get("items", True), depth + 1) if n else Size(0)
        # The ", " between items are tokens of their own ("0, 0" is four).
        commas = 2 * max(n - 1, 0)
        return Size(2 + n * item.bytes + commas, n * item.dense + commas)
    return _ONE  # a number


def _min_items(node: Mapping[str, Any]) -> int:
    least = node.get("minItems")
    return least if isinstance(least, int) and not isinstance(least, bool) else 0


class _Walker:
    def __init__(
        self, root: Mapping[str, Any] | bool, default: bool, *, floors: bool = False
    ) -> None:
        self.root: Mapping[str, Any] = root if isinstance(root, Mapping) else {}
        self.default = default
        self.rules: dict[Pattern, FieldRule] = {}
        self.required: dict[Pattern, tuple[str, ...]] = {}
        self.sizes: dict[Pattern, Size] = {}  # of the shortest values (``value_floors``)
        self.min_items: dict[Pattern, int] = {}
        self.objects: dict[Pattern, Abstain] = {}
        # Worked out only for ``value_floors``: the rules' callers don't read them.
        self._floors = _Floors(self.root) if floors else None
        if not isinstance(root, Mapping):
            return
        # A pattern per path: a recursive schema (a tree of k optional members that are the
        # schema again) has k**depth of them (k = 3 took 11 s before any generation, 4 over a
        # minute, at the 12 levels). So the first walk meets each $ref at most once down a path
        # (a schema without recursion is walked whole, as ever, up to _MAX_FIRST_WALK visits),
        # and each next walk once more, as long as it stays within _MAX_WALKS: a wide recursive
        # schema gets every pattern of its first levels, a one-child tree all its levels to
        # the depth cap. A schema too wide for the first walk (many $defs that each name several
        # others: k defs, about k! paths; 9 took 3 s, 10 took 27 s) gets as many whole levels as
        # the first walk's budget holds.
        self._on_path: list[str] = []  # the $refs followed down the path being walked
        if self._attempt(1, _MAX_RULE_DEPTH, _MAX_FIRST_WALK):
            for repeats in range(2, _MAX_RULE_DEPTH + 1):
                if not self._cut or not self._attempt(repeats, _MAX_RULE_DEPTH, _MAX_WALKS):
                    return  # no $ref left unfollowed, or the walk got too wide: the last one
            return
        # The deepest depth limit whose walk fits the first walk's budget (a search: each
        # try costs up to _MAX_FIRST_WALK visits; a schema just past it keeps all but its
        # deepest levels, not only the few that 4,000 visits hold).
        lo, hi = 0, _MAX_RULE_DEPTH
        self._attempt(1, lo, _MAX_FIRST_WALK)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._attempt(1, mid, _MAX_FIRST_WALK):
                lo = mid
            else:
                hi = mid - 1

    def _attempt(self, repeats: int, limit: int, budget: int) -> bool:
        """Walk the schema anew (each $ref at most ``repeats`` times down a path, ``limit``
        levels deep); False, with the last walk's results kept, past ``budget`` visits."""
        kept = self._results()
        self._repeats, self._limit, self._budget = repeats, limit, budget
        self._walks, self._cut = 0, False
        try:
            self.walk(self.root, (), "none", None, 0)
        except _TooWide:
            self._restore(kept)
            return False
        return True

    def _results(self) -> tuple[dict[Pattern, Any], ...]:
        """What the walk has found so far, taken away: the walker starts empty again."""
        kept = self.rules, self.required, self.sizes, self.objects, self.min_items
        self.rules, self.required, self.sizes, self.objects, self.min_items = {}, {}, {}, {}, {}
        return kept

    def _restore(self, kept: tuple[dict[Pattern, Any], ...]) -> None:
        (self.rules, self.required, self.sizes, self.objects, self.min_items) = kept

    @property
    def floors(self) -> dict[Pattern, int]:
        """The bytes of each pattern's shortest value."""
        return {p: size.bytes for p, size in self.sizes.items()}

    @property
    def dense(self) -> dict[Pattern, int]:
        """The dense bytes of each pattern's shortest value, where some are."""
        return {p: size.dense for p, size in self.sizes.items() if size.dense}

    def walk(
        self, node: Any, pattern: Pattern, abstain: Abstain, name: str | None, depth: int
    ) -> None:
        if depth > self._limit:
            self._cut = self._cut or depth <= _MAX_RULE_DEPTH
            self._count()  # a stop is a visit too: else a node's many stopped children ran free
            return
        ref = node.get("$ref") if isinstance(node, Mapping) else None
        if isinstance(ref, str):
            if self._on_path.count(ref) >= self._repeats:
                self._cut = True
                self._count()
                return
            self._on_path.append(ref)
            try:
                self._visit(node, pattern, abstain, name, depth)
            finally:
                self._on_path.pop()
        else:
            self._visit(node, pattern, abstain, name, depth)

    def _visit(
        self, node: Any, pattern: Pattern, abstain: Abstain, name: str | None, depth: int
    ) -> None:
        self._count()
        if self._floors is not None:
            self.sizes[pattern] = self._floors.of(node, depth)
        written = node
        node = follow_local_refs(self.root, node)
        if not isinstance(node, Mapping):
            return
        types = _types(node)
        if not types and (single := _one_branch(self.root, node)) is not None:
            # Optional[Model] as Pydantic writes it (anyOf: [{"$ref": …}, {"type": "null"}]):
            # the branch is the value, or null. Its strings are grounded as anywhere else.
            branch, nullable_branch = single
            own = follow_local_refs(self.root, branch)  # the branch's own x-grounded wins
            own_keys = own if isinstance(own, Mapping) else {}
            inherited = {
                k: node[k] for k in (GROUNDED_KEY, INHERITED_KEY) if k in node and k not in own_keys
            }
            inner: Abstain = "null" if abstain == "none" and nullable_branch else abstain
            # The anyOf's own: null may be the shortest.
            size = self.sizes.get(pattern)
            self.walk({**branch, **inherited}, pattern, inner, name, depth + 1)
            if size is not None:
                self.sizes[pattern] = size
            return
        nullable = "null" in types
        rule_abstain: Abstain = "null" if abstain == "none" and nullable else abstain
        if "string" in types and types <= {"string", "null"}:
            if node.get("format") == "date":
                self.rules[pattern] = FieldRule(self.typed(node), rule_abstain, "date")
            else:
                longest = node.get("maxLength")
                if isinstance(longest, bool) or not isinstance(longest, int) or longest < 0:
                    longest = None
                self.rules[pattern] = FieldRule(
                    self.grounded(node, name), rule_abstain, max_chars=longest
                )
            return
        if types & {"number", "integer"} and types <= {"number", "integer", "null"}:
            kind: Kind = "number" if "number" in types else "integer"
            bounds = _bounds(written, node, self.root)
            self.rules[pattern] = FieldRule(self.typed(node), rule_abstain, kind, bounds)
            return
        props = node.get("properties")
        if "object" in types and isinstance(props, Mapping):
            required = node.get("required")
            required_set = set(required) if isinstance(required, list) else set()
            self.required[pattern] = tuple(k for k in props if k in required_set)
            self.objects[pattern] = rule_abstain
            for key, sub in props.items():
                if isinstance(key, str):
                    child: Abstain = "none" if key in required_set else "omit"
                    self.walk(self._inherit(sub, node), (*pattern, key), child, key, depth + 1)
        items = self._inherit(node.get("items"), node)
        # A pattern says "any place" of a list: with prefixItems, items rules only the places
        # after them, so its rules stand for the list only where each prefix place would have
        # the same (else an enum label in the prefix would be refused as ungrounded text).
        if "array" in types and _min_items(node) > 0:
            self.min_items[pattern] = _min_items(node)
        if "array" in types and isinstance(items, Mapping):
            prefix = node.get("prefixItems")
            if isinstance(prefix, list):
                prefix = [self._inherit(p, node) for p in prefix]
            if isinstance(prefix, list) and any(p != items for p in prefix):
                wanted = self._rules_of(items, name, depth)  # once: a nested tuple is 2**depth
                same = all(p == items or self._rules_of(p, name, depth) == wanted for p in prefix)
            else:
                same = True
            if same:
                self.walk(items, (*pattern, None), "item", name, depth + 1)

    def _inherit(self, sub: Any, parent: Mapping[str, Any]) -> Any:
        """``sub`` (a member or the items) with the default its object or list gives it when it
        has no ``x-grounded`` of its own: ``"tags": {"type": "array", "x-grounded": false, …}``
        means its strings are written (it was ignored: they stayed grounded). A default, not a
        mark: under an object marked true, an enum, a format or a ``summary`` keeps its own
        rule, as under ``--grounding``."""
        mark = parent.get(GROUNDED_KEY, parent.get(INHERITED_KEY))
        if not isinstance(mark, bool) or not isinstance(sub, Mapping) or GROUNDED_KEY in sub:
            return sub
        own = follow_local_refs(self.root, sub)
        if isinstance(own, Mapping) and GROUNDED_KEY in own:
            return sub
        return {**sub, INHERITED_KEY: mark}

    def _default(self, node: Mapping[str, Any]) -> bool:
        """The default for ``node``: its object's or list's mark, else the run's."""
        inherited = node.get(INHERITED_KEY)
        return inherited if isinstance(inherited, bool) else self.default

    def _count(self) -> None:
        self._walks += 1
        if self._walks > self._budget:
            raise _TooWide

    def _rules_of(self, node: Any, name: str | None, depth: int) -> dict[Pattern, FieldRule]:
        """The rules ``node`` would get as a list's item, walked apart (nothing kept)."""
        saved = self._results()
        try:
            self.walk(node, (None,), "item", name, depth + 1)
            return self.rules
        finally:
            self._restore(saved)  # (a cut in it stays a cut)

    def typed(self, node: Mapping[str, Any]) -> bool:
        """Whether a date or number is grounded: read from the text (``qwenjson.readings``).
        By default yes, unless ``enum``/``const`` (or ``pattern`` for a date) keep their own
        rules; a computed number (a count, a sum) wants ``"x-grounded": false``."""
        explicit = node.get(GROUNDED_KEY)
        if isinstance(explicit, bool):
            return explicit
        return self._default(node) and not any(k in node for k in ("enum", "const", "pattern"))

    def grounded(self, node: Mapping[str, Any], name: str | None) -> bool:
        explicit = node.get(GROUNDED_KEY)
        if isinstance(explicit, bool):
            return explicit
        if not self._default(node) or any(
            k in node for k in ("enum", "const", "format", "pattern")
        ):
            return False
        return not _asks_for_writing(name)


def _types(node: Mapping[str, Any]) -> set[str]:
    t = node.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    for key in ("anyOf", "oneOf"):
        branches = node.get(key)
        if isinstance(branches, list) and branches:
            found: set[str] = set()
            for b in branches:
                if not isinstance(b, Mapping) or set(b) - {"type", "description", "title"}:
                    return set()
                found |= _types(b)
            return found
    if "properties" in node:
        return {"object"}
    if "items" in node:
        return {"array"}
    return set()


def reads_mark(root: Mapping[str, Any], node: Any) -> bool:
    """Whether the walk reads ``node``'s ``x-grounded`` when it reaches it (the tests of
    ``_Walker._visit``): a string, number or date it makes a rule for, an object or list it
    passes the mark down to, or the one branch of an anyOf/oneOf/allOf it hands it to."""
    node = follow_local_refs(root, node)
    if not isinstance(node, Mapping):
        return False
    types = _types(node)
    if not types:
        return _one_branch(root, node) is not None
    return bool(
        ("string" in types and types <= {"string", "null"})
        or (types & {"number", "integer"} and types <= {"number", "integer", "null"})
        or ("object" in types and isinstance(node.get("properties"), Mapping))
        or ("array" in types and isinstance(node.get("items"), Mapping))
    )


def branch_of(root: Mapping[str, Any], node: Mapping[str, Any]) -> Any:
    """The branch the walk goes on to from ``node`` (``_one_branch``: as written, so that a
    caller finds it in ``node``), or None."""
    single = _one_branch(root, node)
    return None if single is None else single[0]


def _one_branch(
    root: Mapping[str, Any], node: Mapping[str, Any]
) -> tuple[Mapping[str, Any], bool] | None:
    """The one branch of ``node``'s anyOf/oneOf that isn't null (as written), and
    whether null is another; or its allOf's one schema (Pydantic v1's nested model with a
    description or default); None unless there is exactly one such branch (and no other
    keyword than a description, title, default or x-grounded beside the anyOf: with more, the
    rules of the parts would have to be merged)."""
    for key in ("anyOf", "oneOf", "allOf"):
        branches = node.get(key)
        if not isinstance(branches, list) or not branches:
            continue
        if set(node) - {key, "description", "title", "default", GROUNDED_KEY, INHERITED_KEY}:
            return None
        if key == "allOf":
            only = branches[0]
            return (only, False) if len(branches) == 1 and isinstance(only, Mapping) else None
        followed = [follow_local_refs(root, b) for b in branches]
        if not all(isinstance(b, Mapping) for b in followed):
            return None
        other = [b for b, f in zip(branches, followed, strict=True) if f != {"type": "null"}]
        if len(other) == 1 and isinstance(other[0], Mapping):
            return other[0], len(other) < len(followed)  # (its $ref the walk follows)
        return None
    return None


def _asks_for_writing(name: str | None) -> bool:
    if not name:
        return False
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    words = [w for w in re.split(r"[\s_\-]+", spaced.lower()) if w]
    if not words:
        return False
    return (
        " ".join(words) in _WRITTEN_NAMES
        or "".join(words) in _WRITTEN_NAMES
        or (words[-1] in _WRITTEN_ENDINGS)
        or "".join(words) in _WRITTEN_ZH
        or words[-1].endswith(_WRITTEN_ZH_ENDINGS)
    )
