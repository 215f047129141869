"""format_to_gbnf: JSON Schema formats as GBNF, judged by llama.cpp's own grammar engine.

Three sources of cases: a table of our own per format, the official JSON-Schema-Test-Suite's
``optional/format`` files (from ../shared), and hypothesis properties that compare the grammar
with Python's own parsers (``ipaddress``, ``datetime``, ``uuid``) on generated strings.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwenjson.schema.formats import EXACT_FORMATS, FORMATS, format_checker, format_to_gbnf
from qwenjson.schema.gbnf import JSON_CHAR_RULE

FIXTURE_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def format_grammar(fmt: str, prefix: str = "fmt-") -> str:
    """A whole grammar: one JSON string in format ``fmt``."""
    result = format_to_gbnf(fmt, prefix)
    assert result is not None
    expr, rules = result
    lines = [f'root ::= "\\"" {expr} "\\""', JSON_CHAR_RULE]
    lines += [f"{name} ::= {body}" for name, body in rules.items()]
    return "\n".join(lines) + "\n"


def accepts(engine: Any, fmt: str, value: str) -> bool:
    """llama.cpp's verdict on ``value`` (JSON-encoded), under the grammar of ``fmt``."""
    return bool(engine.accepts(format_grammar(fmt), json.dumps(value, ensure_ascii=False)))


# Our own cases: (format, valid values, invalid values). Invalid values a superset grammar lets
# through are listed in test_superset_is_only_what_the_docstring_says instead.
CASES: list[tuple[str, list[str], list[str]]] = [
    (
        "date",
        ["2024-02-29", "2000-02-29", "1900-02-28", "0001-01-01", "9999-12-31", "0400-02-29"],
        ["1900-02-29", "2023-02-29", "2024-04-31", "0000-01-01", "2024-1-01", "2024-01-01T"],
    ),
    (
        "time",
        ["00:00:00Z", "23:59:59.999+14:00", "12:00:00-00:00", "08:30:06z", "23:59:60Z"],
        ["24:00:00Z", "12:60:00Z", "12:00:61Z", "12:00:00", "12:00:00+1:00", "12:00:00.Z"],
    ),
    (
        "date-time",
        ["2024-02-29T12:00:00Z", "1963-06-19t08:30:06.283185z", "2020-01-01T00:00:00+05:30"],
        ["2023-02-29T12:00:00Z", "2024-01-01 12:00:00Z", "2024-01-01T12:00Z", "2024-01-01"],
    ),
    (
        "duration",
        ["P1Y", "P1Y2M3DT4H5M6S", "PT0S", "P2W", "P1M2D", "PT1M2S", "P0010D"],
        ["P", "PT", "P1YT", "P1Y2D", "PT1H2S", "P1W2D", "P1.5D", "p1d", "P1DT"],
    ),
    (
        "email",
        [
            "a@b",
            "joe.bloggs@example.com",
            '"a b"@x.org',
            '"a\\"b"@x',
            "x@[1.2.3.4]",
            "x@[IPv6:::1]",
            "!#$%&'*+/=?^_`{|}~-@example.com",
        ],
        [
            "a",
            "@b",
            "a@",
            "a..b@c",
            ".a@b",
            "a.@b",
            "a b@c",
            '"a"b"@c',
            "a@-b",
            "a@b-",
            "a@[1.2.3.256]",
            "a@[IPv6:1::2::3]",
            "a@b@c",
        ],
    ),
    (
        "hostname",
        ["a", "example.com", "a-b.c-d", "1.2.3.4", "x" * 63 + ".com", "xn--9n2bp8q"],
        ["", ".", "a.", ".a", "-a", "a-", "a_b", "a..b", "x" * 64 + ".com", "ä.com"],
    ),
    (
        "ipv4",
        ["0.0.0.0", "255.255.255.255", "10.0.0.1", "192.168.100.9"],
        ["256.0.0.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1.2.3.4 ", "a.b.c.d"],
    ),
    (
        "ipv6",
        [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1::8",
            "::ffff:1.2.3.4",
            "fe80::1:2",
            "1:2:3:4:5:6:1.2.3.4",
            "ABCD:EF01:2345:6789:ABCD:EF01:2345:6789",
            "1:2:3:4:5:6:7::",
        ],
        [
            "1:2:3:4:5:6:7:8:9",
            "1::2::3",
            ":1:2:3:4:5:6:7",
            "12345::",
            "::1.2.3",
            "::g",
            "1:2:3:4:5:6:7:1.2.3.4",
            "fe80::1%eth0",
            "::ffff:01.2.3.4",
            "1:::2",
        ],
    ),
    (
        "uri",
        [
            "http://example.com",
            "https://a.b/c?d=e#f",
            "urn:isbn:0451450523",
            "mailto:a@b.c",
            "file:///etc/hosts",
            "http://[::1]:8080/",
            "x:",
            "a+b.c-d:/x",
            "http://u:p@h/%20",
            "http://[v1.x:y]/",
            "http://h:/",
        ],
        [
            "",
            "example.com",
            "/path",
            "//host/x",
            "1a:b",
            "http://a b",
            "http://a/%2",
            "a:ä",
            'a:"',
            "a:\\",
            "http://[::1/",
            "http://h:x/",
            "http://a/{}",
            "a:b#c#d",
        ],
    ),
    (
        "uri-reference",
        ["", "/a/b", "a/b:c", "./x:y", "?q", "#f", "//h", "http://x.y/z?q#f", "%41"],
        ["1:b", "/a b", "a\\b", "#a#b", "//h:x", "/%4", "/ä"],
    ),
    (
        "iri",
        ["http://例子.测试/路径?查询=值#片段", "urn:ä", "http://x/?\ue000"],
        ["例子", "http://x/\ue000", "http://a b", "http://x/\u0080"],
    ),
    (
        "iri-reference",
        ["", "路径/a", "//例子", "#片段"],
        ["a b", "\\x", "1:b"],
    ),
    (
        "json-pointer",
        ["", "/", "/a~0b~1c", '/"\\\n\u0000', "/😀//"],
        ["a", "/~", "/~2", "#/a", "/a~"],
    ),
    (
        "relative-json-pointer",
        ["0", "0#", "12/a/b", "1/~0", "0//"],
        ["", "01", "-1", "#", "0/~", "0##", "1#/a"],
    ),
    (
        "uri-template",
        ["", "a{b}c", "{+x,y:3,z*}", "{a.b}", "{%41}", "a😀b", "{v:9999}", "x'y"],
        ["{}", "{a,}", "{v:0}", "{v:10000}", "{a..b}", "a b", "}", "{a", 'a"b', "{=}"],
    ),
    (
        "uuid",
        [
            "123e4567-e89b-12d3-a456-426614174000",
            "00000000-0000-0000-0000-000000000000",
            "ABCDEFAB-CDEF-ABCD-EFAB-CDEFABCDEFAB",
        ],
        [
            "123e4567e89b12d3a456426614174000",
            "123e4567-e89b-12d3-a456-42661417400",
            "{123e4567-e89b-12d3-a456-426614174000}",
            "123e4567-e89b-12d3-a456-42661417400g",
        ],
    ),
]


def test_every_format_has_cases() -> None:
    assert {fmt for fmt, _, _ in CASES} == set(FORMATS)


@pytest.mark.parametrize(("fmt", "valid", "invalid"), CASES, ids=[c[0] for c in CASES])
def test_format_table(grammar_engine: Any, fmt: str, valid: list[str], invalid: list[str]) -> None:
    grammar = format_grammar(fmt)
    assert grammar_engine.grammar_error(grammar) is None, grammar
    for value in valid:
        assert accepts(grammar_engine, fmt, value), (fmt, value)
    for value in invalid:
        assert not accepts(grammar_engine, fmt, value), (fmt, value)


# Beyond the table: strings near the edges the checker's regexes once got wrong (a final
# newline after "$", non-ASCII digits under "\d"), and characters JSON escapes.
EDGE_VALUES = ["2024-01-01\n", "२०२४-01-01", "1.2.3.4\n", "/a\n", "0#\n", "{a\n", 'a"@b', "ä@b"]


def _suite_values(shared_dir: Path | None, fmt: str) -> list[str]:
    if shared_dir is None:
        return []
    path = shared_dir / "corpus/json-schema-test-suite/draft2020-12/optional/format" / f"{fmt}.json"
    groups = json.loads(path.read_text(encoding="utf-8"))
    return [c["data"] for g in groups for c in g["tests"] if isinstance(c["data"], str)]


@pytest.mark.parametrize("fmt", sorted(EXACT_FORMATS))
def test_checker_accepts_what_the_grammar_accepts(
    grammar_engine: Any, request: pytest.FixtureRequest, fmt: str
) -> None:
    # The oracle is llama.cpp's grammar engine: validation after generation (a format beside
    # a pattern) is neither looser nor stricter than the grammar the format compiles to.
    check = format_checker(fmt)
    assert check is not None
    try:
        shared: Path | None = request.getfixturevalue("shared_dir")
    except pytest.skip.Exception:
        shared = None  # the table and the edge values still run
    values = [v for f, good, bad in CASES for v in good + bad if f == fmt]
    values += EDGE_VALUES + [v + "\n" for v in values] + _suite_values(shared, fmt)
    for value in values:
        assert check(value) == accepts(grammar_engine, fmt, value), (fmt, value)
    assert format_checker("hostname") is None  # not exact: checked another way (validate.py)


def test_unknown_formats_give_none() -> None:
    assert format_to_gbnf("color", "p-") is None
    assert format_to_gbnf("DATE", "p-") is None  # format names are case-sensitive


def test_rules_carry_the_prefix() -> None:
    for fmt in FORMATS:
        result = format_to_gbnf(fmt, "root-7-format")
        assert result is not None
        expr, rules = result
        assert expr in rules
        assert all(name.startswith("root-7-format") for name in rules)
        # Every rule referenced is defined here or is json-char; nothing else leaks out.
        referenced = set(re.findall(r"\broot-7-format[a-zA-Z0-9-]*", " ".join(rules.values())))
        assert referenced <= set(rules)


def _superset_reason(fmt: str, value: str) -> str | None:
    """Why a non-exact format's grammar may accept this invalid value (module docstring)."""
    if fmt in ("time", "date-time") and re.search(r":60(\.\d+)?([Zz]|[+-]\d\d:\d\d)$", value):
        return "leap second at a time other than 23:59 UTC"
    if fmt == "hostname":
        if len(value) > 253:
            return "longer than 253 characters"
        if any(label[2:4] == "--" for label in value.split(".")):
            return "Punycode or reserved label"
    return None


SUITE_FORMATS = sorted(FORMATS)


@pytest.mark.corpus
@pytest.mark.parametrize("fmt", SUITE_FORMATS)
def test_json_schema_test_suite(grammar_engine: Any, shared_dir: Path, fmt: str) -> None:
    path = shared_dir / "corpus/json-schema-test-suite/draft2020-12/optional/format" / f"{fmt}.json"
    groups = json.loads(path.read_text(encoding="utf-8"))
    grammar = format_grammar(fmt)
    checked = 0
    for group in groups:
        for case in group["tests"]:
            value = case["data"]
            if not isinstance(value, str):
                continue  # formats apply to strings only; the compiler handles other types
            text = json.dumps(value, ensure_ascii=False)
            accepted = grammar_engine.accepts(grammar, text)
            checked += 1
            if case["valid"]:
                assert accepted, (fmt, case["description"], value)
            elif fmt in EXACT_FORMATS:
                assert not accepted, (fmt, case["description"], value)
            elif accepted:
                assert _superset_reason(fmt, value), (fmt, case["description"], value)
    assert checked >= 5


def test_superset_is_only_what_the_docstring_says(grammar_engine: Any) -> None:
    # The known gaps of the non-exact formats really are accepted (so they need checking
    # afterwards), and the narrowest neighbours of them are still refused.
    assert accepts(grammar_engine, "time", "22:59:60Z")
    assert accepts(grammar_engine, "date-time", "2020-01-01T12:00:60+01:00")
    assert not accepts(grammar_engine, "time", "22:59:61Z")
    assert accepts(grammar_engine, "hostname", ".".join(["a" * 63] * 4))  # 255 characters
    assert accepts(grammar_engine, "hostname", "xn--X")
    assert not EXACT_FORMATS & {"time", "date-time", "hostname"}


# -- properties against Python's own parsers -----------------------------------------------


@FIXTURE_SETTINGS
@given(st.ip_addresses(v=4))
def test_ipv4_accepts_every_address(grammar_engine: Any, ip: ipaddress.IPv4Address) -> None:
    assert accepts(grammar_engine, "ipv4", str(ip))


@FIXTURE_SETTINGS
@given(st.ip_addresses(v=6), st.sampled_from(["compressed", "exploded", "mapped"]))
def test_ipv6_accepts_every_spelling(
    grammar_engine: Any, ip: ipaddress.IPv6Address, form: str
) -> None:
    if form == "mapped":
        # The last 32 bits written as an IPv4 address, after the first six groups.
        groups = ip.exploded.split(":")[:6]
        text = ":".join(groups) + ":" + str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    else:
        text = getattr(ip, form)
    assert accepts(grammar_engine, "ipv6", text)


_IPV6_ALPHABET = "0123456789abcdefABCDEF:.g%"


@FIXTURE_SETTINGS
@given(
    st.one_of(
        st.text(_IPV6_ALPHABET, max_size=20),
        st.ip_addresses(v=6)
        .map(str)
        .flatmap(lambda s: st.integers(0, len(s)).map(lambda i: s[:i] + ":" + s[i:])),
    )
)
def test_ipv6_agrees_with_ipaddress(grammar_engine: Any, text: str) -> None:
    try:
        ipaddress.IPv6Address(text)
        python_says = "%" not in text  # Python accepts zone ids; the format doesn't
    except ValueError:
        python_says = False
    assert accepts(grammar_engine, "ipv6", text) == python_says, text


_OCTET = st.one_of(
    st.sampled_from([0, 9, 10, 99, 100, 199, 200, 249, 250, 255, 256, 260, 300]).map(str),
    st.integers(0, 999).map(str),
    st.integers(0, 99).map(lambda n: f"0{n}"),  # leading zeros are not allowed
    st.sampled_from(["", "a", " 1", "+1"]),
)


@FIXTURE_SETTINGS
@given(
    st.lists(_OCTET, min_size=4, max_size=4).map(".".join)
    | st.lists(_OCTET, min_size=3, max_size=5).map(".".join)
    | st.text("0123456789.", max_size=16)
)
def test_ipv4_agrees_with_ipaddress(grammar_engine: Any, text: str) -> None:
    try:
        ipaddress.IPv4Address(text)
        python_says = True
    except ValueError:
        python_says = False
    assert accepts(grammar_engine, "ipv4", text) == python_says, text


@FIXTURE_SETTINGS
@given(
    st.integers(0, 9999),
    st.integers(0, 13),
    st.sampled_from([0, 1, 9, 10, 19, 28, 29, 30, 31, 32]) | st.integers(0, 99),
)
def test_date_agrees_with_datetime(grammar_engine: Any, y: int, m: int, d: int) -> None:
    # Dates of the right shape, often on the edges: the grammar must say what datetime says.
    text = f"{y:04}-{m:02}-{d:02}"
    try:
        dt.date(y, m, d)
        python_says = True
    except ValueError:
        python_says = False
    assert accepts(grammar_engine, "date", text) == python_says, text


@FIXTURE_SETTINGS
@given(st.dates())
def test_date_accepts_every_date(grammar_engine: Any, day: dt.date) -> None:
    assert accepts(grammar_engine, "date", day.isoformat())


@FIXTURE_SETTINGS
@given(st.datetimes(timezones=st.timezones()), st.sampled_from(["seconds", "microseconds"]))
def test_date_time_accepts_isoformat(grammar_engine: Any, moment: dt.datetime, spec: str) -> None:
    offset = moment.utcoffset()
    if offset is not None and offset.seconds % 60:
        return  # RFC 3339 offsets are whole minutes; some historical zones aren't
    text = moment.isoformat(timespec=spec)
    if offset is None:
        text += "Z"
    assert accepts(grammar_engine, "date-time", text), text


@FIXTURE_SETTINGS
@given(st.uuids())
def test_uuid_accepts_every_uuid(grammar_engine: Any, value: uuid.UUID) -> None:
    assert accepts(grammar_engine, "uuid", str(value))
    assert accepts(grammar_engine, "uuid", str(value).upper())


@FIXTURE_SETTINGS
@given(
    st.lists(st.sampled_from("YMDWHMS"), max_size=5),
    st.lists(st.integers(0, 10**6), min_size=5, max_size=5),
    st.booleans(),
)
def test_duration_agrees_with_the_abnf(
    grammar_engine: Any, units: list[str], numbers: list[int], with_t: bool
) -> None:
    # Random designator sequences, checked against RFC 3339's ABNF written as a regex.
    date_part = "".join(f"{n}{u}" for n, u in zip(numbers, units, strict=False) if u in "YMDW")
    time_part = "".join(f"{n}{u}" for n, u in zip(numbers, units, strict=False) if u in "HMS")
    text = "P" + date_part + ("T" + time_part if with_t else time_part)
    abnf = re.compile(
        r"P(?:(?:\d+D|\d+M(?:\d+D)?|\d+Y(?:\d+M(?:\d+D)?)?)(?:T(?:\d+H(?:\d+M(?:\d+S)?)?"
        r"|\d+M(?:\d+S)?|\d+S))?|T(?:\d+H(?:\d+M(?:\d+S)?)?|\d+M(?:\d+S)?|\d+S)|\d+W)"
    )
    assert accepts(grammar_engine, "duration", text) == bool(abnf.fullmatch(text)), text
