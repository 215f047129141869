"""JSON Schema ``format`` → GBNF over a JSON string's content.

Same contract as :func:`qwenjson.schema.regex.regex_to_gbnf`: the expression describes the
JSON-encoded text between the quotes, and every extra rule's name starts with the given prefix.

Each grammar accepts every string the format's definition accepts (RFC 3339 for dates, times and
durations, RFC 5321 for email, RFC 1123 for hostname, RFC 2673 / RFC 4291 for IP addresses,
RFC 3986 / RFC 3987 for uri, uri-reference, iri, iri-reference, RFC 6901 for json-pointer,
draft-bhutton-relative-json-pointer for relative-json-pointer, RFC 6570 for uri-template,
RFC 4122 for uuid), so the model is never kept from writing a valid value. Where exactness
would blow the grammar up, it is a slight superset and the format is missing from
:data:`EXACT_FORMATS`: the value must then be checked after generation. Those cases:

- ``time``, ``date-time``: a leap second (``:60``) is allowed at any time; RFC 3339 allows it only
  where the time is 23:59 UTC, which ties the hour and minute to the offset written after them
  (about 1,440 combinations).
- ``hostname``: the 253-character total length and the validity of ``xn--`` (Punycode) labels.

Deliberate narrowings (never a valid value the format's users would miss, and each keeps the
grammar inside what Python's checkers accept): year 0000 is not generated (``datetime`` has no
year 0); ``duration`` designators are upper case only (ISO 8601's form; RFC 3339's ABNF is
case-insensitive, the checkers seen here are not); email has no General-address-literal (no tag
is registered); relative-json-pointer has no index manipulation (``0+1/a``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from qwenjson.schema.gbnf import (
    Alt,
    CharClass,
    Expr,
    Group,
    Literal,
    Ref,
    Repeat,
    Seq,
    alt,
    json_escape_content,
    repeat,
    seq,
)
from qwenjson.schema.regex import regex_grammar
from qwenjson.schema.regex_syntax import ecma_regex

__all__ = ["EXACT_FORMATS", "FORMATS", "format_checker", "format_grammar", "format_to_gbnf"]

# Formats whose grammar accepts exactly the valid strings (see the module docstring).
EXACT_FORMATS: frozenset[str] = frozenset(
    {"date", "duration", "email", "ipv4", "ipv6", "uri", "uuid"}
    | {"uri-reference", "iri", "iri-reference", "json-pointer", "relative-json-pointer"}
    | {"uri-template"}
)

# llama.cpp's grammar parser knows only the escapes \x \u \U \t \r \n \\ \" \[ \], so classes
# below spell `-`, `[`, `]` and `^` as \x2D, \x5B, \x5D, \x5E.
_DIGIT = CharClass("0-9")
_NONZERO = CharClass("1-9")
_HEX = CharClass("0-9a-fA-F")
_ALNUM = CharClass("a-zA-Z0-9")
_ALNUM_HYPHEN = CharClass("a-zA-Z0-9\\x2D")
_L = Literal


def _p(expr: Expr) -> Group:
    """``(expr)``: the formats' groups are written without inner spaces."""
    return Group(expr, spaced=False)


def _opt(expr: Expr) -> Repeat:
    return Repeat(expr, 0, 1)


def _star(expr: Expr) -> Repeat:
    return Repeat(expr, 0, None)


def _plus(expr: Expr) -> Repeat:
    return Repeat(expr, 1, None)


class _Builder:
    """Collects rule definitions under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix if prefix.endswith("-") else prefix + "-"
        self.rules: dict[str, Expr] = {}

    def rule(self, name: str, body: Expr) -> Ref:
        full = self.prefix + name
        self.rules[full] = body
        return Ref(full)


def _dec_octet(b: _Builder) -> Ref:
    # 0-255 without leading zeros (RFC 3986 dec-octet; Python's ipaddress agrees).
    return b.rule(
        "dec-octet",
        alt(
            [
                seq(_L("25"), CharClass("0-5")),
                seq(_L("2"), CharClass("0-4"), _DIGIT),
                seq(_L("1"), _DIGIT, _DIGIT),
                seq(_NONZERO, _DIGIT),
                _DIGIT,
            ]
        ),
    )


def _ipv4(b: _Builder) -> Ref:
    octet = _dec_octet(b)
    dot = _L(".")
    return b.rule("ipv4", seq(octet, dot, octet, dot, octet, dot, octet))


def _ipv6(b: _Builder) -> Ref:
    # RFC 4291 section 2.2 text forms, as RFC 3986 writes them: at most one "::", eight 16-bit
    # groups in all, the last two optionally as an IPv4 address. No zone index.
    h16 = b.rule("h16", Repeat(_HEX, 1, 4))
    ls32 = b.rule("ls32", alt([seq(h16, _L(":"), h16), _ipv4(b)]))
    h16c = b.rule("h16c", seq(h16, _L(":")))  # "h16:"
    colons = _L("::")

    def head(n: int) -> Expr:
        # [ *n( h16 ":" ) h16 ]: up to n+1 groups before "::"
        if n < 0:
            return _L("")
        return _opt(_p(h16 if n == 0 else seq(Repeat(h16c, 0, n), h16)))

    def tail(n: int) -> Expr:
        return repeat(h16c, n, n)  # n times "h16:"

    forms = [
        seq(tail(6), ls32),
        seq(colons, tail(5), ls32),
        seq(head(0), colons, tail(4), ls32),
        seq(head(1), colons, tail(3), ls32),
        seq(head(2), colons, tail(2), ls32),
        seq(head(3), colons, tail(1), ls32),
        seq(head(4), colons, ls32),
        seq(head(5), colons, h16),
        seq(head(6), colons),
    ]
    return b.rule("ipv6", alt(forms))


def _date(b: _Builder) -> Ref:
    # Year 0001-9999 (no 0000: see the module docstring); days exact per month, 29 February
    # only in leap years (divisible by 4, centuries only when divisible by 400).
    year = b.rule(
        "year",
        alt(
            [
                seq(_L("000"), _NONZERO),
                seq(_L("00"), _NONZERO, _DIGIT),
                seq(_L("0"), _NONZERO, Repeat(_DIGIT, 2, 2)),
                seq(_NONZERO, Repeat(_DIGIT, 3, 3)),
            ]
        ),
    )
    # Two digits, a non-zero multiple of 4.
    by4 = _p(
        alt(
            [
                seq(_L("0"), CharClass("48")),
                seq(CharClass("2468"), CharClass("048")),
                seq(CharClass("13579"), CharClass("26")),
            ]
        )
    )
    leap = b.rule("leap-year", alt([seq(_DIGIT, _DIGIT, by4), seq(by4, _L("00"))]))
    d28 = alt([seq(_L("0"), _NONZERO), seq(_L("1"), _DIGIT), seq(_L("2"), CharClass("0-8"))])
    months31 = _p(alt(_L(m) for m in ("01", "03", "05", "07", "08", "10", "12")))
    months30 = _p(alt(_L(m) for m in ("04", "06", "09", "11")))
    month_day = b.rule(
        "month-day",
        alt(
            [
                seq(months31, _L("-"), _p(alt([d28, _L("29"), seq(_L("3"), CharClass("01"))]))),
                seq(months30, _L("-"), _p(alt([d28, _L("29"), _L("30")]))),
                seq(_L("02-"), _p(d28)),
            ]
        ),
    )
    return b.rule("date", alt([seq(year, _L("-"), month_day), seq(leap, _L("-02-29"))]))


def _time(b: _Builder) -> Ref:
    hour = _p(alt([seq(CharClass("01"), _DIGIT), seq(_L("2"), CharClass("0-3"))]))
    minute = seq(CharClass("0-5"), _DIGIT)
    # Second 60 (a leap second) at any time: a superset, see the module docstring.
    second = _p(alt([seq(CharClass("0-5"), _DIGIT), _L("60")]))
    offset = b.rule(
        "offset", alt([CharClass("Zz"), seq(CharClass("+\\x2D"), hour, _L(":"), minute)])
    )
    fraction = _opt(_p(seq(_L("."), _plus(_DIGIT))))
    return b.rule("time", seq(hour, _L(":"), minute, _L(":"), second, fraction, offset))


def _date_time(b: _Builder) -> Ref:
    return b.rule("date-time", seq(_date(b), CharClass("Tt"), _time(b)))


def _duration(b: _Builder) -> Ref:
    # RFC 3339 appendix A: each designator follows its number, in order, weeks alone.
    n = _plus(_DIGIT)
    second = b.rule("dur-second", seq(n, _L("S")))
    minute = b.rule("dur-minute", seq(n, _L("M"), _opt(second)))
    hour = b.rule("dur-hour", seq(n, _L("H"), _opt(minute)))
    time = b.rule("dur-time", seq(_L("T"), _p(alt([hour, minute, second]))))
    day = b.rule("dur-day", seq(n, _L("D")))
    month = b.rule("dur-month", seq(n, _L("M"), _opt(day)))
    year = b.rule("dur-year", seq(n, _L("Y"), _opt(month)))
    date = b.rule("dur-date", seq(_p(alt([day, month, year])), _opt(time)))
    return b.rule("duration", seq(_L("P"), _p(alt([date, time, seq(n, _L("W"))]))))


def _hostname(b: _Builder) -> Ref:
    # RFC 1123 labels: letters, digits and inner hyphens, 1-63 characters. Not the total length
    # (253) nor Punycode validity: a superset, see the module docstring.
    label = b.rule("label", seq(_ALNUM, _opt(_p(seq(Repeat(_ALNUM_HYPHEN, 0, 61), _ALNUM)))))
    return b.rule("hostname", seq(label, _star(_p(seq(_L("."), label)))))


def _email(b: _Builder) -> Ref:
    # RFC 5321 Mailbox: Local-part "@" ( Domain / address-literal ).
    atom = b.rule("atom", _plus(CharClass("a-zA-Z0-9!#$%&'*+/=?\\x5E_`{|}~\\x2D")))
    # Quoted-string: printable ASCII but `"` and `\`, or `\` before any printable character.
    # Those two are escaped in JSON, so they appear here in their encoded form.
    qtext = CharClass(" !#-\\x5B\\x5D-~")
    quote, backslash = _L(json_escape_content('"')), _L(json_escape_content("\\"))
    escaped = seq(backslash, _p(alt([qtext, quote, backslash])))
    quoted = b.rule("quoted", seq(quote, _star(_p(alt([qtext, escaped]))), quote))
    local = b.rule("local", alt([seq(atom, _star(_p(seq(_L("."), atom)))), quoted]))
    sub = b.rule("sub-domain", seq(_ALNUM, _opt(_p(seq(_star(_ALNUM_HYPHEN), _ALNUM)))))
    domain = b.rule("domain", seq(sub, _star(_p(seq(_L("."), sub)))))
    # IPv4 and IPv6 address literals; the General-address-literal form needs a tag registered
    # with IANA and none is, so it is left out (a "[tag:…]" would only ever be invalid).
    ipv6 = seq(CharClass("Ii"), CharClass("Pp"), CharClass("Vv"), _L("6:"))
    address = b.rule(
        "address-literal", seq(_L("["), _p(alt([_ipv4(b), seq(ipv6, _ipv6(b))])), _L("]"))
    )
    return b.rule("email", seq(local, _L("@"), _p(alt([domain, address]))))


# RFC 3987: the non-ASCII characters an IRI may carry (ucschar), and in its query also iprivate.
_UCSCHAR = (
    "\\u00A0-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFEF"
    + "".join(f"\\U000{plane:X}0000-\\U000{plane:X}FFFD" for plane in range(1, 14))
    + "\\U000E1000-\\U000EFFFD"
)
_IPRIVATE = "\\uE000-\\uF8FF\\U000F0000-\\U000FFFFD\\U00100000-\\U0010FFFD"


def _uri_family(b: _Builder, name: str, *, iri: bool, reference: bool) -> Ref:
    """RFC 3986 URI / URI-reference, or with ``iri`` RFC 3987 IRI / IRI-reference."""
    s = "i" if iri else ""  # rule names: pchar for URIs, ipchar for IRIs
    unreserved = "a-zA-Z0-9._~\\x2D" + (_UCSCHAR if iri else "")
    plain = unreserved + "!$&'()*+,;="  # unreserved and sub-delims
    pct = b.rule("pct", seq(_L("%"), _HEX, _HEX))
    pchar = b.rule(f"{s}pchar", alt([CharClass(plain + ":@"), pct]))
    segments = b.rule(f"{s}segments", _star(_p(seq(_L("/"), _star(pchar)))))
    ipvfuture = seq(CharClass("vV"), _plus(_HEX), _L("."), _plus(CharClass(plain + ":")))
    host = b.rule(
        f"{s}host",
        alt(
            [
                seq(_L("["), _p(alt([_ipv6(b), ipvfuture])), _L("]")),
                _star(_p(alt([CharClass(plain), pct]))),
            ]
        ),
    )
    userinfo = _opt(_p(seq(_star(_p(alt([CharClass(plain + ":"), pct]))), _L("@"))))
    port = _opt(_p(seq(_L(":"), _star(_DIGIT))))
    authority = b.rule(f"{s}authority", seq(userinfo, host, port))
    query_extra = CharClass("/?" + _IPRIVATE) if iri else CharClass("/?")
    query = b.rule(f"{s}query", _star(_p(alt([pchar, query_extra]))))
    fragment = b.rule(f"{s}fragment", _star(_p(alt([pchar, CharClass("/?")]))))
    tail = seq(_opt(_p(seq(_L("?"), query))), _opt(_p(seq(_L("#"), fragment))))
    absolute = alt(
        [
            seq(_L("//"), authority, segments),
            seq(_L("/"), _opt(_p(seq(_plus(pchar), segments)))),
        ]
    )
    hier = b.rule(f"{s}hier-part", alt([absolute, seq(_plus(pchar), segments), _L("")]))
    scheme = seq(CharClass("a-zA-Z"), _star(CharClass("a-zA-Z0-9+.\\x2D")))
    full = b.rule(f"{name}-absolute" if reference else name, seq(scheme, _L(":"), hier, tail))
    if not reference:
        return full
    # relative-ref: the first segment of a relative path has no ":" (it would read as a scheme).
    nc = b.rule(f"{s}pchar-nc", alt([CharClass(plain + "@"), pct]))
    relative_part = _p(alt([absolute, seq(_plus(nc), segments), _L("")]))
    relative = b.rule(f"{s}relative-ref", seq(relative_part, tail))
    return b.rule(name, alt([full, relative]))


def _uri(b: _Builder) -> Ref:
    return _uri_family(b, "uri", iri=False, reference=False)


def _uri_reference(b: _Builder) -> Ref:
    return _uri_family(b, "uri-reference", iri=False, reference=True)


def _iri(b: _Builder) -> Ref:
    return _uri_family(b, "iri", iri=True, reference=False)


def _iri_reference(b: _Builder) -> Ref:
    return _uri_family(b, "iri-reference", iri=True, reference=True)


def _from_regex(b: _Builder, name: str, pattern: str) -> Ref:
    # Formats with arbitrary Unicode inside (JSON escapes included) go through the regex
    # translator, which knows how JSON encodes each character.
    expr, rules = regex_grammar(pattern, f"{b.prefix}{name}-")
    b.rules.update(rules)
    return b.rule(name, expr)


# RFC 6901: "/"-separated tokens, "~" only as "~0" or "~1".
_JSON_POINTER = "(?:/(?:[^~/]|~[01])*)*"


def _json_pointer(b: _Builder) -> Ref:
    return _from_regex(b, "json-pointer", _REGEX_FORMATS["json-pointer"])


def _relative_json_pointer(b: _Builder) -> Ref:
    return _from_regex(b, "relative-json-pointer", _REGEX_FORMATS["relative-json-pointer"])


# RFC 6570 level 4. Literals: ASCII but controls, space, "\"<>\\^`{|}" (and "%" only as
# pct-encoding), plus ucschar and iprivate; the suite (and RFC 6570 erratum 6937) allows "'".
_UT_LITERAL = (
    "[!#$&'()*+,\\-./0-9:;=?@A-Z\\[\\]_a-z~\\u00A0-\\uD7FF\\uE000-\\uFDCF\\uFDF0-\\uFFEF"
    + "".join(f"\\u{{{plane:X}0000}}-\\u{{{plane:X}FFFD}}" for plane in range(1, 14))
    + "\\u{E1000}-\\u{EFFFD}\\u{F0000}-\\u{FFFFD}\\u{100000}-\\u{10FFFD}]|%[0-9A-Fa-f]{2}"
)
_UT_VARCHAR = "(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})"
_UT_VARSPEC = f"{_UT_VARCHAR}(?:\\.?{_UT_VARCHAR})*(?::[1-9][0-9]{{0,3}}|\\*)?"
_URI_TEMPLATE = f"^(?:{_UT_LITERAL}|\\{{[+#./;?&=,!@|]?{_UT_VARSPEC}(?:,{_UT_VARSPEC})*\\}})*$"


def _uri_template(b: _Builder) -> Ref:
    return _from_regex(b, "uri-template", _REGEX_FORMATS["uri-template"])


# The formats written as ECMA-262 regexes over the decoded text (the regex translator adds the
# JSON escapes). Relative-json-pointer: a non-negative integer, then "#" or a JSON pointer (the
# index manipulation of the draft, "0+1/…", is left out: Python's checker in jsonschema rejects
# it).
_REGEX_FORMATS: dict[str, str] = {
    "json-pointer": f"^{_JSON_POINTER}$",
    "relative-json-pointer": f"^(?:0|[1-9][0-9]*)(?:#|{_JSON_POINTER})$",
    "uri-template": _URI_TEMPLATE,
}


def _uuid(b: _Builder) -> Ref:
    h = [Repeat(_HEX, n, n) for n in (8, 4, 4, 4, 12)]
    dash = _L("-")
    return b.rule("uuid", seq(h[0], dash, h[1], dash, h[2], dash, h[3], dash, h[4]))


FORMATS: dict[str, Callable[[_Builder], Ref]] = {
    "date": _date,
    "time": _time,
    "date-time": _date_time,
    "duration": _duration,
    "email": _email,
    "hostname": _hostname,
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "uri": _uri,
    "uri-reference": _uri_reference,
    "iri": _iri,
    "iri-reference": _iri_reference,
    "json-pointer": _json_pointer,
    "relative-json-pointer": _relative_json_pointer,
    "uri-template": _uri_template,
    "uuid": _uuid,
}


def format_to_gbnf(fmt: str, prefix: str) -> tuple[str, dict[str, str]] | None:
    """GBNF text for the JSON-encoded content of strings in format ``fmt``, or None if unknown.

    Returns ``(expr, rules)`` like :func:`qwenjson.schema.regex.regex_to_gbnf`; ``fmt`` in
    :data:`EXACT_FORMATS` means the grammar alone enforces it, otherwise check it afterwards.

    Example: ``format_to_gbnf("uuid", "id-")[0]`` → ``'id-uuid'``.
    """
    result = format_grammar(fmt, prefix)
    if result is None:
        return None
    expr, rules = result
    return str(expr), {name: str(body) for name, body in rules.items()}


def format_grammar(fmt: str, prefix: str) -> tuple[Expr, dict[str, Expr]] | None:
    """:func:`format_to_gbnf` as expressions (what the compiler builds on)."""
    build = FORMATS.get(fmt)
    if build is None:
        return None
    b = _Builder(prefix)
    return build(b), b.rules


def format_checker(fmt: str) -> Callable[[str], bool] | None:
    """For a format of :data:`EXACT_FORMATS`, a test of a decoded string that accepts exactly
    what the format's grammar accepts (None for the others).

    Validation after generation uses it where the grammar could not enforce the format (beside
    a ``pattern``, only one of them is compiled), so that checking afterwards is neither looser
    nor stricter than generating under the grammar would have been. The regex is the grammar
    itself: the rules inlined (none of these is recursive), matched against the text as the
    grammar spells it (``json_escape_content``); the regex formats use their ECMA source.
    """
    if fmt not in EXACT_FORMATS:
        return None
    return _checker(fmt)


@functools.cache
def _checker(fmt: str) -> Callable[[str], bool]:
    source = _REGEX_FORMATS.get(fmt)
    if source is not None:
        found = ecma_regex(source).search
        return lambda text: found(text) is not None
    b = _Builder("fmt-")
    top = FORMATS[fmt](b)
    whole = re.compile(_as_regex(top, b.rules, ()))
    return lambda text: whole.fullmatch(json_escape_content(text)) is not None


def _as_regex(expr: Expr, rules: dict[str, Expr], inside: tuple[str, ...]) -> str:
    """``expr`` as a Python regex over the JSON-encoded text, the rules it uses inlined."""
    if isinstance(expr, Literal):
        return re.escape(expr.text)
    if isinstance(expr, CharClass):
        # GBNF class bodies use escapes Python's re reads the same way (\x2D, \u00A0, \U…).
        return ("[^" if expr.negated else "[") + expr.body + "]"
    if isinstance(expr, Ref):
        if expr.name in inside:
            raise ValueError(f"format rule {expr.name} is recursive")
        return f"(?:{_as_regex(rules[expr.name], rules, (*inside, expr.name))})"
    if isinstance(expr, Seq):
        return "".join(f"(?:{_as_regex(e, rules, inside)})" for e in expr.items)
    if isinstance(expr, Alt):
        return "(?:" + "|".join(_as_regex(e, rules, inside) for e in expr.items) + ")"
    if isinstance(expr, Group):
        return f"(?:{_as_regex(expr.item, rules, inside)})"
    hi = "" if expr.hi is None else str(expr.hi)
    return f"(?:{_as_regex(expr.item, rules, inside)}){{{expr.lo},{hi}}}"
