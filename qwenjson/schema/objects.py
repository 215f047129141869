"""Object keywords: ``properties``, ``required``, ``additionalProperties``,
``patternProperties``, ``propertyNames``, ``minProperties``, ``maxProperties`` → GBNF for JSON
objects, members in the order ``properties`` lists them, then any others."""

from __future__ import annotations

import functools

from qwenjson.errors import SchemaError, UnsupportedKeywordError
from qwenjson.schema.core import JSON_CHAR_REF, JSON_ESCAPE_REF, OBJECT, STRING, VALUE, pointer_hint
from qwenjson.schema.flat import (
    MAX_EXACT_REPEAT,
    Flat,
    Node,
    Reader,
    Unsatisfiable,
    has_surrogate,
    min_opt,
    py_search,
)
from qwenjson.schema.gbnf import (
    EMPTY,
    QUOTE,
    Alt,
    Expr,
    Group,
    Literal,
    Repeat,
    Seq,
    alt,
    char_class,
    group,
    is_atom,
    json_escape_content,
    json_string_literal,
    optional,
    repeat,
    seq,
)
from qwenjson.schema.keywords import child_pointer, grammar_keywords
from qwenjson.schema.regex import regex_grammar
from qwenjson.schema.strings import StringRules

_OBJECT_KEYWORDS = grammar_keywords("object")
# Keywords checked after generation that can require a name ``properties`` doesn't declare.
_MAY_REQUIRE = frozenset({"dependentRequired", "dependentSchemas", "dependencies", "then", "else"})
# patternProperties regexes that match every string (JSON Schema regexes are unanchored).
_UNIVERSAL_PATTERNS = frozenset({"", ".*", "^.*", ".*$", "(.*)"})
# A key no string matches: _names_key's answer when no name is allowed.
_NO_KEY = Literal("")
_OPEN, _CLOSE = Literal("{"), Literal("}")


class ObjectRules(StringRules):
    """The object keywords: read, merged, and as GBNF (property names use the string rules)."""

    def _read_objects(self, r: Reader, node: Node, f: Flat) -> None:
        """The object keywords of ``r`` into ``f``."""
        s = r.schema
        props = s.get("properties")
        if props is not None:
            if not isinstance(props, dict):
                raise SchemaError("properties must be an object", r.pointer("properties"))
            f.properties = {k: self._sub(node, v, "properties", k) for k, v in props.items()}
        req = s.get("required")
        if req is not None and not isinstance(req, bool):  # draft-03's boolean `required`
            if not isinstance(req, list) or not all(isinstance(r, str) for r in req):
                raise SchemaError("required must be an array of strings", r.pointer("required"))
            f.required = list(dict.fromkeys(req))
        if "additionalProperties" in s:
            f.additional = [self._sub(node, s["additionalProperties"], "additionalProperties")]
        pprops = s.get("patternProperties")
        if pprops is not None:
            if not isinstance(pprops, dict):
                raise SchemaError(
                    "patternProperties must be an object", r.pointer("patternProperties")
                )
            f.pattern_props = {
                k: [self._sub(node, v, "patternProperties", k)] for k, v in pprops.items()
            }
        f.min_props = r.count("minProperties") or 0
        f.max_props = r.count("maxProperties")
        f.object_constrained = not _OBJECT_KEYWORDS.isdisjoint(s)
        f.may_require_undeclared = not _MAY_REQUIRE.isdisjoint(s)

        if "propertyNames" in s:
            f.property_names = [self._sub(node, s["propertyNames"], "propertyNames")]
            f.object_constrained = True

    def _merge_objects(self, m: Flat, a: Flat, b: Flat) -> None:
        """The object keywords of ``a`` and ``b`` together, into ``m``."""
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
        # A key one side's pattern matches is, for the other side, an additional one (unless a
        # pattern of that side matches it too): that side's additionalProperties applies. The
        # grammar can say so when that side has no patterns; otherwise validation checks it.
        for x, y in ((a, b), (b, a)):
            for pat in y.pattern_props:
                if not x.additional or pat in x.pattern_props:
                    continue
                if x.pattern_props:
                    self.mark(
                        m.pointer,
                        "additionalProperties",
                        "validated-after",
                        "beside another part's patternProperties",
                    )
                else:
                    m.pattern_props[pat] = m.pattern_props[pat] + x.additional
        m.min_props = max(a.min_props, b.min_props)
        m.max_props = min_opt(a.max_props, b.max_props)
        m.object_constrained = a.object_constrained or b.object_constrained
        m.may_require_undeclared = a.may_require_undeclared or b.may_require_undeclared
        m.property_names = a.property_names + b.property_names

    def _gen_object(self, f: Flat, node: Node) -> Expr:
        if not f.object_constrained:
            return OBJECT
        props = dict(f.properties)
        for name in f.properties:
            # A declared property whose name a pattern matches must satisfy that schema too.
            for pat, subs in f.pattern_props.items():
                if py_search(pat, name):
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
            members: list[tuple[str, Expr, bool]] = []
            for name, sub in props.items():
                is_req = name in required
                try:
                    val = self.visit(sub)
                except Unsatisfiable as e:
                    if is_req:
                        # The cause without its traceback: that holds this frame, which holds
                        # `e` (a reference cycle would keep the compile alive).
                        raise Unsatisfiable(
                            f"required property {name!r} can't be satisfied", sub.pointer
                        ) from e.with_traceback(None)
                    continue
                if has_surrogate(name):
                    if is_req:
                        msg = f"required property {name!r} can't be written (lone surrogate)"
                        raise Unsatisfiable(msg, sub.pointer)
                    continue  # no UTF-8 text can hold a lone surrogate
                key_lit = _key_literal(name, self.separators[1])
                members.append((name, seq(key_lit, val), is_req))
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
                return Literal("{}")
            lo, hi = f.min_props, f.max_props
            if lo > 1:
                # A free-form key can be written twice ({"x":1,"x":2} is one property once
                # parsed): the grammar's count is an upper bound only.
                self.mark(f.pointer, "minProperties", "validated-after", "a key may repeat")
            if lo > MAX_EXACT_REPEAT or (hi is not None and hi > MAX_EXACT_REPEAT):
                self.mark(f.pointer, "maxProperties", "validated-after", "too many for the grammar")
                lo, hi = min(lo, 1), None
            if hi == 0:
                return Literal("{}")
            more = repeat(
                group(seq(self.comma, extra_kv)), max(lo - 1, 0), None if hi is None else hi - 1
            )
            body = seq(extra_kv, more)
            return seq(_OPEN, body if lo > 0 else optional(body), _CLOSE)

        extras_tail = (
            EMPTY if extra_kv is None else repeat(group(seq(self.comma, extra_kv)), 0, None)
        )

        # A member after something was written: `,"key":value`, optional unless required.
        # Built once each, shared by every alternative they appear in.
        later = [seq(self.comma, kv) for _, kv, _ in members]
        later_opt = [
            m if req else optional(m) for m, (_, _, req) in zip(later, members, strict=True)
        ]

        first_req = next((i for i, (_, _, r) in enumerate(members) if r), None)
        stop = first_req if first_req is not None else len(members) - 1
        n = len(members)
        # Members i.. when something was written already: inline, or (when the alternatives
        # would repeat too much) rules, each the member then the next rule, made from the last.
        if (stop + 1) * n > 64:
            hint = pointer_hint(f.pointer) + "-tail"
            tails = {n: extras_tail}
            for i in range(n - 1, 0, -1):
                body = seq(group(later[i]) if members[i][2] else later_opt[i], tails[i + 1])
                tails[i] = self.rule(hint, body)
        else:
            tails = {i: seq(*later_opt[i:], extras_tail) for i in range(1, stop + 2)}
        alts = [seq(members[i][1], tails[i + 1]) for i in range(stop + 1)]
        if first_req is None and extra_kv is not None:
            alts.append(seq(extra_kv, extras_tail))
        inner = alt(alts)
        if first_req is None:
            return seq(_OPEN, optional(inner), _CLOSE)
        return seq(_OPEN, group(inner) if len(alts) > 1 else inner, _CLOSE)

    def _extra_member(self, f: Flat, node: Node, declared: list[str]) -> Expr | None:
        """`"key":value` for undeclared members, or None when none are allowed."""
        add_value: Expr | None = VALUE
        if f.additional:
            try:
                add_value = self.visit(self._all(f.additional))
            except Unsatisfiable:
                add_value = None
        elif (
            self.closed_objects
            and declared
            and f.min_props <= len(declared)
            and not f.may_require_undeclared
        ):
            # Generation profile: where the schema says nothing about undeclared properties, a
            # small model given the freedom invents keys ("description", "notes", …) and can
            # loop on them. Leaving them out keeps the grammar a subset of the valid documents
            # (not where a keyword checked afterwards may require an undeclared name: every
            # document would then fail).
            add_value = None
        members: list[Expr] = []
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
            if key != _NO_KEY:  # no name is allowed: no undeclared member
                members.append(seq(key, self.colon, add_value))
        if not members:
            return None
        if len(members) == 1:
            return members[0]
        return self.rule(pointer_hint(f.pointer) + "-member", alt(members))

    def _names_key(self, f: Flat, node: Node, declared: list[str]) -> Expr | None:
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
            return _NO_KEY
        if names.types is not None and "string" not in names.types:
            return _NO_KEY  # names are strings: no name passes
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
            # The enum's names that also meet the sibling keywords (maxLength, pattern...).
            keys = [
                v
                for v in names.enum
                if isinstance(v, str) and v not in declared and _name_fits(stringish, v)
            ]
            self.mark(f.pointer, "propertyNames", "enforced", "names from the enum")
            keys = [k for k in keys if not has_surrogate(k)]
            if not keys:
                return _NO_KEY
            body = alt(json_string_literal(k) for k in keys)
            return self.rule(pointer_hint(f.pointer) + "-name", body)
        expr = self._gen_string(stringish, node)
        self.mark(f.pointer, "propertyNames", "enforced", "names from the string rules")
        return expr if is_atom(expr) else self.rule(pointer_hint(f.pointer) + "-name", expr)

    def _pattern_members(
        self, f: Flat, node: Node, declared: list[str], add_value: Expr | None
    ) -> tuple[list[Expr], bool, Expr | None]:
        """Members whose keys match a patternProperties regex, whether that's exact, and the
        value left for keys no pattern matches (``add_value``, or None if every key matches)."""
        values: dict[str, Expr | None] = {}
        for pat, subs in f.pattern_props.items():
            try:
                values[pat] = self.visit(self._all(subs))
            except Unsatisfiable:
                values[pat] = None
        if add_value == VALUE and all(v == VALUE for v in values.values()):
            # Any key, any value: the patterns change nothing, and `add_value` takes every key
            # (Github_hard o82151's `".*": {}` allowed none when a universal pattern dropped it).
            return [], True, add_value
        universal = len(values) == 1 and next(iter(values)) in _UNIVERSAL_PATTERNS
        single = len(values) == 1 or all(v == VALUE for v in values.values())
        # Exact when no other alternative can take a key a pattern matches (declared keys get
        # their patterns' schemas in _gen_object).
        exact = single and (add_value is None or universal)
        members: list[Expr] = []
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
                key = STRING
            elif pat not in _UNIVERSAL_PATTERNS and any(py_search(pat, n) for n in declared):
                # The pattern's key can spell a declared name, under the pattern's schema
                # alone: the declared one's is checked after generation.
                exact = False
            members.append(seq(key, self.colon, value))
        if any(p in _UNIVERSAL_PATTERNS for p in values):
            add_value = None  # every key matches a pattern: additionalProperties never applies
        return members, exact, add_value

    def _pattern_key(self, pattern: str, pointer: str) -> Expr | None:
        """A rule for JSON strings matching ``pattern`` (None if the regex can't be a grammar)."""
        name, prefix = self._namespace(pointer_hint(pointer) + "-key")
        where = child_pointer(pointer, "patternProperties", pattern)
        try:
            expr, extra = regex_grammar(pattern, prefix)
        except UnsupportedKeywordError:
            return None
        except SchemaError as e:
            raise SchemaError(e.message, where) from None
        self._adopt(extra, where)
        body = seq(QUOTE, group(expr), QUOTE)
        return self.by_body.get(body) or self._define(name, body)

    def _string_excluding(self, names: list[str]) -> Expr:
        """A rule for JSON strings other than ``names`` (so declared keys aren't repeated)."""
        if not names:
            return STRING
        usable = tuple(dict.fromkeys(n for n in names if not has_surrogate(n)))
        return self.rule("other-key", Seq((QUOTE, Group(_after(usable)), QUOTE)))


# _after's memo, shared by all compiles (schemas reuse names), emptied past 4,096 entries: at
# 65,536 it held half a million objects, which the cyclic collector walks at every full pass
# (Github_hard and Kubernetes, both profiles: 4.6 s of collection against 2.8 s).
_AFTER: dict[tuple[str, ...], Expr] = {}
_AFTER_LIMIT = 1 << 12


def _after(rests: tuple[str, ...]) -> Expr:
    """What may follow a key's prefix that names go on from with ``rests``: the end (unless a
    name ends there), a character no name has next, or a name's next character and what may
    follow that, in parentheses (`"a" ( json-char+ )`).

    A trie over the names' characters, one node per character, memoised by ``rests``: objects
    share names (Kubernetes kb_1161: 19,463 nodes in 316 tries, 6,605 distinct), and shared
    nodes are written out once (gbnf._Composite). Built directly, not by seq/alt: nothing to
    merge, no two alternatives alike. Plain recursion, one level per character, as before.
    """
    known = _AFTER.get(rests)
    if known is not None:
        return known
    if len(_AFTER) > _AFTER_LIMIT:
        _AFTER.clear()
    nexts: dict[str, list[str]] = {}
    for rest in rests:
        if rest:
            nexts.setdefault(rest[0], []).append(rest[1:])
    alts: list[Expr] = [] if "" in rests else [Literal("")]
    alts.append(_other_chars(frozenset(nexts)) if nexts else _SOME_CHARS)
    for ch, after in nexts.items():
        follow = _after(tuple(after))  # distinct, as the names are
        alts.append(Seq((Literal(json_escape_content(ch)), Group(follow))))
    expr = alts[0] if len(alts) == 1 else Alt(tuple(alts))
    _AFTER[rests] = expr
    return expr


_ESCAPABLE = ['"', "\\", *[chr(c) for c in range(0x20)]]


_ANY_CHARS, _SOME_CHARS = Repeat(JSON_CHAR_REF, 0, None), Repeat(JSON_CHAR_REF, 1, None)


@functools.lru_cache(maxsize=4096)
def _other_chars(chars: frozenset[str]) -> Expr:
    """One canonical JSON string character except the (decoded) ``chars``, then any."""
    plain = sorted(ord(c) for c in chars if c not in _ESCAPABLE)
    escaped = [c for c in chars if c in _ESCAPABLE]
    cls = char_class(((cp, cp) for cp in plain), negated_base='"\\\\\\x00-\\x1F')
    if escaped:
        allowed = [c for c in _ESCAPABLE if c not in chars]
        one: Expr = Alt((cls, *[Literal(json_escape_content(c)) for c in allowed]))
    else:
        one = Alt((cls, JSON_ESCAPE_REF))
    return Seq((Group(one), _ANY_CHARS))


def _name_fits(names: Flat, name: str) -> bool:
    """Does ``name`` satisfy the string constraints in ``names``? (False when unsure.)"""
    if names.enum is not None and name not in names.enum:
        return False
    if len(name) < names.min_len or (names.max_len is not None and len(name) > names.max_len):
        return False
    return not names.formats and all(py_search(p, name) for p, _ in names.patterns)


def _key_literal(name: str, colon: str = ":") -> Literal:
    """The literal `"name":`, the name in canonical JSON."""
    return Literal('"' + json_escape_content(name) + '"' + colon)
