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

from collections.abc import Callable

from qwenjson.schema.gbnf import json_escape_content
from qwenjson.schema.gbnf_text import literal
from qwenjson.schema.regex import regex_to_gbnf

__all__ = ["EXACT_FORMATS", "FORMATS", "format_to_gbnf"]

# Formats whose grammar accepts exactly the valid strings (see the module docstring).
EXACT_FORMATS: frozenset[str] = frozenset(
    {"date", "duration", "email", "ipv4", "ipv6", "uri", "uuid"}
    | {"uri-reference", "iri", "iri-reference", "json-pointer", "relative-json-pointer"}
    | {"uri-template"}
)

# llama.cpp's grammar parser knows only the escapes \x \u \U \t \r \n \\ \" \[ \], so classes
# below spell `-`, `[`, `]` and `^` as \x2D, \x5B, \x5D, \x5E.
_DIGIT = "[0-9]"
_HEX = "[0-9a-fA-F]"
_ALNUM = "[a-zA-Z0-9]"

_Rules = dict[str, str]


class _Builder:
    """Collects rule definitions under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix if prefix.endswith("-") else prefix + "-"
        self.rules: _Rules = {}

    def rule(self, name: str, body: str) -> str:
        full = self.prefix + name
        self.rules[full] = body
        return full


def _dec_octet(b: _Builder) -> str:
    # 0-255 without leading zeros (RFC 3986 dec-octet; Python's ipaddress agrees).
    return b.rule(
        "dec-octet", '"25" [0-5] | "2" [0-4] [0-9] | "1" [0-9] [0-9] | [1-9] [0-9] | [0-9]'
    )


def _ipv4(b: _Builder) -> str:
    octet = _dec_octet(b)
    return b.rule("ipv4", f'{octet} "." {octet} "." {octet} "." {octet}')


def _ipv6(b: _Builder) -> str:
    # RFC 4291 section 2.2 text forms, as RFC 3986 writes them: at most one "::", eight 16-bit
    # groups in all, the last two optionally as an IPv4 address. No zone index.
    h16 = b.rule("h16", f"{_HEX}{{1,4}}")
    ls32 = b.rule("ls32", f'{h16} ":" {h16} | {_ipv4(b)}')
    h16c = b.rule("h16c", f'{h16} ":"')  # "h16:"

    def head(n: int) -> str:
        # [ *n( h16 ":" ) h16 ]: up to n+1 groups before "::"
        if n < 0:
            return '""'
        reps = "" if n == 0 else (f"{h16c}? " if n == 1 else f"{h16c}{{0,{n}}} ")
        return f"({reps}{h16})?"

    def tail(n: int) -> str:
        return "" if n == 0 else (f"{h16c} " if n == 1 else f"{h16c}{{{n}}} ")

    forms = [
        f"{tail(6)}{ls32}",
        f'"::" {tail(5)}{ls32}',
        f'{head(0)} "::" {tail(4)}{ls32}',
        f'{head(1)} "::" {tail(3)}{ls32}',
        f'{head(2)} "::" {tail(2)}{ls32}',
        f'{head(3)} "::" {tail(1)}{ls32}',
        f'{head(4)} "::" {ls32}',
        f'{head(5)} "::" {h16}',
        f'{head(6)} "::"',
    ]
    return b.rule("ipv6", " | ".join(forms))


def _date(b: _Builder) -> str:
    # Year 0001-9999 (no 0000: see the module docstring); days exact per month, 29 February
    # only in leap years (divisible by 4, centuries only when divisible by 400).
    year = b.rule("year", '"000" [1-9] | "00" [1-9] [0-9] | "0" [1-9] [0-9]{2} | [1-9] [0-9]{3}')
    by4 = '"0" [48] | [2468] [048] | [13579] [26]'  # two digits, a non-zero multiple of 4
    leap = b.rule("leap-year", f'[0-9] [0-9] ({by4}) | ({by4}) "00"')
    d28 = '"0" [1-9] | "1" [0-9] | "2" [0-8]'
    month_day = b.rule(
        "month-day",
        f'("01" | "03" | "05" | "07" | "08" | "10" | "12") "-" ({d28} | "29" | "3" [01])'
        f' | ("04" | "06" | "09" | "11") "-" ({d28} | "29" | "30")'
        f' | "02-" ({d28})',
    )
    return b.rule("date", f'{year} "-" {month_day} | {leap} "-02-29"')


def _time(b: _Builder) -> str:
    hour = '([01] [0-9] | "2" [0-3])'
    minute = "[0-5] [0-9]"
    # Second 60 (a leap second) at any time: a superset, see the module docstring.
    second = '([0-5] [0-9] | "60")'
    offset = b.rule("offset", f'[Zz] | [+\\x2D] {hour} ":" {minute}')
    return b.rule("time", f'{hour} ":" {minute} ":" {second} ("." [0-9]+)? {offset}')


def _date_time(b: _Builder) -> str:
    return b.rule("date-time", f"{_date(b)} [Tt] {_time(b)}")


def _duration(b: _Builder) -> str:
    # RFC 3339 appendix A: each designator follows its number, in order, weeks alone.
    n = "[0-9]+"
    second = b.rule("dur-second", f'{n} "S"')
    minute = b.rule("dur-minute", f'{n} "M" {second}?')
    hour = b.rule("dur-hour", f'{n} "H" {minute}?')
    time = b.rule("dur-time", f'"T" ({hour} | {minute} | {second})')
    day = b.rule("dur-day", f'{n} "D"')
    month = b.rule("dur-month", f'{n} "M" {day}?')
    year = b.rule("dur-year", f'{n} "Y" {month}?')
    date = b.rule("dur-date", f"({day} | {month} | {year}) {time}?")
    return b.rule("duration", f'"P" ({date} | {time} | {n} "W")')


def _hostname(b: _Builder) -> str:
    # RFC 1123 labels: letters, digits and inner hyphens, 1-63 characters. Not the total length
    # (253) nor Punycode validity: a superset, see the module docstring.
    label = b.rule("label", f"{_ALNUM} ([a-zA-Z0-9\\x2D]{{0,61}} {_ALNUM})?")
    return b.rule("hostname", f'{label} ("." {label})*')


def _email(b: _Builder) -> str:
    # RFC 5321 Mailbox: Local-part "@" ( Domain / address-literal ).
    atom = b.rule("atom", "[a-zA-Z0-9!#$%&'*+/=?\\x5E_`{|}~\\x2D]+")
    # Quoted-string: printable ASCII but `"` and `\`, or `\` before any printable character.
    # Those two are escaped in JSON, so they appear here in their encoded form.
    qtext = "[ !#-\\x5B\\x5D-~]"
    quote, backslash = literal(json_escape_content('"')), literal(json_escape_content("\\"))
    quoted = b.rule(
        "quoted", f"{quote} ({qtext} | {backslash} ({qtext} | {quote} | {backslash}))* {quote}"
    )
    local = b.rule("local", f'{atom} ("." {atom})* | {quoted}')
    sub = b.rule("sub-domain", f"{_ALNUM} ([a-zA-Z0-9\\x2D]* {_ALNUM})?")
    domain = b.rule("domain", f'{sub} ("." {sub})*')
    # IPv4 and IPv6 address literals; the General-address-literal form needs a tag registered
    # with IANA and none is, so it is left out (a "[tag:…]" would only ever be invalid).
    address = b.rule("address-literal", f'"[" ({_ipv4(b)} | [Ii] [Pp] [Vv] "6:" {_ipv6(b)}) "]"')
    return b.rule("email", f'{local} "@" ({domain} | {address})')


# RFC 3987: the non-ASCII characters an IRI may carry (ucschar), and in its query also iprivate.
_UCSCHAR = (
    "\\u00A0-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFEF"
    + "".join(f"\\U000{plane:X}0000-\\U000{plane:X}FFFD" for plane in range(1, 14))
    + "\\U000E1000-\\U000EFFFD"
)
_IPRIVATE = "\\uE000-\\uF8FF\\U000F0000-\\U000FFFFD\\U00100000-\\U0010FFFD"


def _uri_family(b: _Builder, name: str, *, iri: bool, reference: bool) -> str:
    """RFC 3986 URI / URI-reference, or with ``iri`` RFC 3987 IRI / IRI-reference."""
    s = "i" if iri else ""  # rule names: pchar for URIs, ipchar for IRIs
    unreserved = "a-zA-Z0-9._~\\x2D" + (_UCSCHAR if iri else "")
    plain = unreserved + "!$&'()*+,;="  # unreserved and sub-delims
    pct = b.rule("pct", f'"%" {_HEX} {_HEX}')
    pchar = b.rule(f"{s}pchar", f"[{plain}:@] | {pct}")
    segments = b.rule(f"{s}segments", f'("/" {pchar}*)*')
    ipvfuture = f'[vV] {_HEX}+ "." [{plain}:]+'
    host = b.rule(f"{s}host", f'"[" ({_ipv6(b)} | {ipvfuture}) "]" | ([{plain}] | {pct})*')
    authority = b.rule(f"{s}authority", f'(([{plain}:] | {pct})* "@")? {host} (":" [0-9]*)?')
    query = b.rule(f"{s}query", f"({pchar} | [/?{_IPRIVATE}])*" if iri else f"({pchar} | [/?])*")
    fragment = b.rule(f"{s}fragment", f"({pchar} | [/?])*")
    tail = f'("?" {query})? ("#" {fragment})?'
    absolute = f'"//" {authority} {segments} | "/" ({pchar}+ {segments})?'
    hier = b.rule(f"{s}hier-part", f'{absolute} | {pchar}+ {segments} | ""')
    scheme = "[a-zA-Z] [a-zA-Z0-9+.\\x2D]*"
    full = b.rule(f"{name}-absolute" if reference else name, f'{scheme} ":" {hier} {tail}')
    if not reference:
        return full
    # relative-ref: the first segment of a relative path has no ":" (it would read as a scheme).
    nc = b.rule(f"{s}pchar-nc", f"[{plain}@] | {pct}")
    relative = b.rule(f"{s}relative-ref", f'({absolute} | {nc}+ {segments} | "") {tail}')
    return b.rule(name, f"{full} | {relative}")


def _uri(b: _Builder) -> str:
    return _uri_family(b, "uri", iri=False, reference=False)


def _uri_reference(b: _Builder) -> str:
    return _uri_family(b, "uri-reference", iri=False, reference=True)


def _iri(b: _Builder) -> str:
    return _uri_family(b, "iri", iri=True, reference=False)


def _iri_reference(b: _Builder) -> str:
    return _uri_family(b, "iri-reference", iri=True, reference=True)


def _from_regex(b: _Builder, name: str, pattern: str) -> str:
    # Formats with arbitrary Unicode inside (JSON escapes included) go through the regex
    # translator, which knows how JSON encodes each character.
    expr, rules = regex_to_gbnf(pattern, f"{b.prefix}{name}-")
    b.rules.update(rules)
    return b.rule(name, expr)


# RFC 6901: "/"-separated tokens, "~" only as "~0" or "~1".
_JSON_POINTER = "(?:/(?:[^~/]|~[01])*)*"


def _json_pointer(b: _Builder) -> str:
    return _from_regex(b, "json-pointer", f"^{_JSON_POINTER}$")


def _relative_json_pointer(b: _Builder) -> str:
    # A non-negative integer, then "#" or a JSON pointer. (The index manipulation of the draft,
    # "0+1/…", is left out: Python's checker in jsonschema rejects it.)
    return _from_regex(b, "relative-json-pointer", f"^(?:0|[1-9][0-9]*)(?:#|{_JSON_POINTER})$")


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


def _uri_template(b: _Builder) -> str:
    return _from_regex(b, "uri-template", _URI_TEMPLATE)


def _uuid(b: _Builder) -> str:
    h = _HEX
    return b.rule("uuid", f'{h}{{8}} "-" {h}{{4}} "-" {h}{{4}} "-" {h}{{4}} "-" {h}{{12}}')


FORMATS: dict[str, Callable[[_Builder], str]] = {
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
    """GBNF for the JSON-encoded content of strings in format ``fmt``, or None if unknown.

    Returns ``(expr, rules)`` like :func:`qwenjson.schema.regex.regex_to_gbnf`; ``fmt`` in
    :data:`EXACT_FORMATS` means the grammar alone enforces it, otherwise check it afterwards.

    Example: ``format_to_gbnf("uuid", "id-")[0]`` → ``'id-uuid'``.
    """
    build = FORMATS.get(fmt)
    if build is None:
        return None
    b = _Builder(prefix)
    return build(b), b.rules
