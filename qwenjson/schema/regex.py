"""JSON Schema ``pattern`` (an ECMA-262 regular expression) → GBNF over a JSON string's content.

The grammar produced here describes the *JSON-encoded* content of a string (the text between the
quotes, in the canonical form of :mod:`qwenjson.schema.gbnf`) whose *decoded* value the pattern
matches with ``RegExp.prototype.test`` semantics: a pattern finds a match anywhere unless
``^``/``$`` pin it, so an unanchored side is padded with any characters.

How: the pattern is first rewritten from ECMAScript syntax into the Python syntax that means the
same (``\\cX``, ``\\u{…}``, ``\\p{…}``, ``(?<name>…)``), parsed into an op tree by the standard
library's regex parser, turned into a small intermediate form (character sets, sequences,
alternations, repetitions, anchors), the anchors are resolved exactly, and the result is printed
as GBNF. Each character set is split into what JSON writes literally and what it escapes, so a
pattern matching ``"`` produces ``\\"`` in the grammar, and ``[^a]`` covers all of Unicode but
``a``, escapes included.

Anything the grammar can't express exactly (lookaround, backreferences, word boundaries, huge
repetition bounds, …) is refused with :class:`UnsupportedKeywordError`; the compiler may then check
the pattern after generation instead.
"""

from __future__ import annotations

from qwenjson.schema.gbnf import (
    Alt,
    Expr,
    Group,
    Literal,
    Ref,
    Repeat,
    Seq,
    alt,
    char_class,
    json_escape_content,
    seq,
    walk,
)
from qwenjson.schema.regex_charsets import (
    _PLAIN,
    UNIVERSE,
    Ranges,
    _contains,
    _intersect,
    _size,
    _subtract,
)
from qwenjson.schema.regex_syntax import is_ecma_regex, to_python_regex
from qwenjson.schema.regex_tree import (
    _EMPTY,
    _NOTHING,
    _PAD,
    MAX_REPEAT_BOUND,
    _Alt,
    _alt,
    _Chars,
    _Node,
    _parse,
    _Repeat,
    _resolve,
    _Seq,
    _seq,
    _Translator,
)

__all__ = [
    "MAX_REPEAT_BOUND",
    "is_ecma_regex",
    "regex_grammar",
    "regex_to_gbnf",
    "to_python_regex",
]

# Groups longer than this (in GBNF text) become rules of their own, as do groups with counted
# repetitions: see _Emitter.hoisted.
_HOIST_LENGTH = 200


# --------------------------------------------------------------------------------------------
# Intermediate form → GBNF expressions.

_SHORT_ESCAPE_LETTERS = {0x08: "b", 0x09: "t", 0x0A: "n", 0x0C: "f", 0x0D: "r"}
_JSON_CHAR = Ref("json-char")


def _generates_many_rules(expr: Expr) -> bool:
    # x{m,n} makes n-m rules and x{m,} one; x{n} none. Long text makes many through `*`, `(…)`.
    return len(str(expr)) > _HOIST_LENGTH or any(
        isinstance(e, Repeat) and _ranged(e) for e in walk(expr)
    )


def _ranged(r: Repeat) -> bool:
    """Written ``{m,}`` or ``{m,n}`` (not ``*``, ``+``, ``?`` nor ``{n}``)."""
    if r.hi is None:
        return r.lo > 1
    return r.hi != r.lo and (r.lo, r.hi) != (0, 1)


def _digits(chars: str) -> Expr:
    # What follows an escape's `\` or `\u00x`: one character (a literal), or a class of them.
    return Literal(chars) if len(chars) == 1 else char_class((ord(c), ord(c)) for c in chars)


class _Emitter:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix if prefix.endswith("-") else prefix + "-"
        self.rules: dict[str, Expr] = {}
        self.set_rules: dict[Ranges, Ref] = {}
        self.group_rules: dict[Expr, Ref] = {}
        self.chars_memo: dict[Ranges, Expr] = {}

    def named(self, body: Expr) -> Ref:
        """A rule for ``body`` (one per distinct body), referenced by name."""
        if body not in self.group_rules:
            name = f"{self.prefix}g{len(self.group_rules)}"
            self.group_rules[body] = Ref(name)
            self.rules[name] = body
        return self.group_rules[body]

    def hoisted(self, group: Expr) -> Expr:
        """``group`` (a parenthesized expression), or a rule name for it when llama.cpp needs one.

        llama.cpp refuses a quantified group when the rules it generates inside, times the
        repetition count, reach 2,000 (MAX_REPETITION_THRESHOLD); a rule reference counts as one.
        Ranged repetitions inside are what generate many rules, so such groups become rules.
        """
        if isinstance(group, Group) and _generates_many_rules(group):
            return self.named(group.item)
        return group

    def chars(self, ranges: Ranges) -> Expr:
        """GBNF for one character of ``ranges``, JSON-encoded: a literal, class or rule name."""
        if ranges not in self.chars_memo:
            self.chars_memo[ranges] = self._chars(ranges)
        return self.chars_memo[ranges]

    def _chars(self, ranges: Ranges) -> Expr:
        if ranges == UNIVERSE:
            return _JSON_CHAR
        if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
            return Literal(json_escape_content(chr(ranges[0][0])))
        if ranges in self.set_rules:
            return self.set_rules[ranges]
        alts: list[Expr] = []
        plain = _intersect(ranges, _PLAIN)
        if plain:
            missing = _subtract(_PLAIN, plain)
            if len(plain) == 1 and plain[0][0] == plain[0][1]:
                alts.append(Literal(chr(plain[0][0])))
            elif len(missing) < len(plain) and (not missing or missing[-1][1] < 0x80):
                # Mostly everything: a negated class is shorter. `"`, `\` and controls are never
                # plain, so they are always excluded here; their escaped forms come below.
                # Only ASCII exclusions, though: llama.cpp rejects a character split across
                # tokens when any completion of its first bytes falls in a negated class's
                # ranges (llama_grammar_match_partial_char), so [^…\u2028] would refuse "→" cut
                # after its first byte. Positive classes don't have that problem.
                alts.append(char_class(missing, negated_base='"\\\\\\x00-\\x1F'))
            else:
                alts.append(char_class(plain))
        for cp in (0x22, 0x5C):
            if _contains(ranges, cp):
                alts.append(Literal("\\" + chr(cp)))
        shorts = "".join(
            letter for cp, letter in sorted(_SHORT_ESCAPE_LETTERS.items()) if _contains(ranges, cp)
        )
        # An escape's two halves stay two literals (`"\\" "n"`), as the rule has always read.
        if shorts:
            alts.append(Seq((Literal("\\"), _digits(shorts))))
        for high in (0, 1):
            lows = "".join(
                f"{low:x}"
                for low in range(16)
                if (cp := high * 16 + low) not in _SHORT_ESCAPE_LETTERS and _contains(ranges, cp)
            )
            if lows:
                alts.append(Seq((Literal("\\u00" + str(high)), _digits(lows))))
        if len(alts) == 1 and not isinstance(alts[0], Seq):
            return alts[0]
        ref = Ref(f"{self.prefix}c{len(self.set_rules)}")
        self.set_rules[ranges] = ref
        self.rules[ref.name] = alt(alts)
        return ref

    def expr(self, node: _Node) -> Expr:
        """GBNF for ``node``: a sequence or alternation, not necessarily an atom."""
        if isinstance(node, _Alt):
            if _EMPTY in node.items:
                rest = _alt([i for i in node.items if i != _EMPTY])
                return Repeat(self.atom(rest), 0, 1)
            return Alt(tuple(self.expr(i) for i in node.items))
        if isinstance(node, _Seq):
            if not node.items:
                return Literal("")
            parts: list[Expr] = []
            run: list[str] = []  # consecutive single characters become one literal
            for item in node.items:
                if isinstance(item, _Chars) and len(item.ranges) == 1 == _size(item.ranges):
                    run.append(chr(item.ranges[0][0]))
                    continue
                if run:
                    parts.append(Literal(json_escape_content("".join(run))))
                    run = []
                parts.append(self.atom(item) if isinstance(item, _Alt) else self.expr(item))
            if run:
                parts.append(Literal(json_escape_content("".join(run))))
            return seq(*parts)
        return self.atom(node)

    def atom(self, node: _Node) -> Expr:
        """GBNF for ``node`` that binds tighter than sequence (safe to follow with a quantifier)."""
        if isinstance(node, _Chars):
            return self.chars(node.ranges)
        if isinstance(node, _Repeat):
            inner = self.atom(node.node)
            longer_literal = isinstance(inner, Literal) and len(str(inner)) > 3
            if isinstance(node.node, _Repeat) or longer_literal:
                inner = Group(inner, spaced=False)  # a quantified atom, or "ab": (…) around it
            return Repeat(self.hoisted(inner), node.lo, node.hi)
        if isinstance(node, _Seq) and len(node.items) == 1:
            return self.atom(node.items[0])
        if (
            isinstance(node, _Seq)
            and all(isinstance(i, _Chars) and _size(i.ranges) == 1 for i in node.items)
            and node.items
        ):
            return self.expr(node)  # a single literal
        return Group(self.expr(node), spaced=False)


def regex_to_gbnf(pattern: str, prefix: str) -> tuple[str, dict[str, str]]:
    """GBNF text for the JSON-encoded content of strings whose decoded value matches ``pattern``.

    Returns ``(expr, rules)``: a GBNF expression (it may reference ``json-char``) and extra rule
    definitions whose names start with ``prefix``. Raises :class:`UnsupportedKeywordError` for
    constructs a grammar can't express exactly and :class:`SchemaError` for an invalid regex.

    Example: ``regex_to_gbnf("^[0-9]{3}$", "p")`` → ``('[0-9]{3}', {})``.
    """
    expr, rules = regex_grammar(pattern, prefix)
    return str(expr), {name: str(body) for name, body in rules.items()}


def regex_grammar(pattern: str, prefix: str) -> tuple[Expr, dict[str, Expr]]:
    """:func:`regex_to_gbnf` as expressions (what the compiler builds on)."""
    tree = _parse(pattern)
    translator = _Translator(pattern)
    flags = tree.state.flags
    translator.check_flags(flags)
    try:
        node = translator.seq(tree, flags)
        triples = _resolve(node, translator)
    except RecursionError:
        raise translator.refuse("regular expression nested too deeply") from None
    alternatives = [
        _seq([_EMPTY if left else _PAD, body, _EMPTY if right else _PAD])
        for left, body, right in triples
    ]
    whole = _alt(alternatives)
    if whole == _NOTHING:
        raise translator.refuse("a pattern that matches no string")
    emitter = _Emitter(prefix)
    expr = emitter.expr(whole)
    if _generates_many_rules(expr):
        # Wherever the compiler puts it (inside a quantified group, say), one rule reference
        # keeps llama.cpp's count of generated rules low; see _Emitter.hoisted.
        return emitter.named(expr), emitter.rules
    # An atom, so the caller can put it in a sequence between the quotes as it is.
    return (Group(expr, spaced=False) if isinstance(whole, _Alt) else expr), emitter.rules
