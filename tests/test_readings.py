"""The dates and numbers a text can be read as (``qwenjson.readings``).

The oracles are the obvious ones: a date written with ``strftime`` in a given form must be read
back as its ISO date (``date.isoformat``), a number written with Python's own format spec must
be read back as a JSON number equal to it.
"""

from __future__ import annotations

import datetime
import json
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwenjson.readings import dates, numbers

_DATE_FORMS = [
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y年%m月%d日",
    "%d/%m/%Y",
    "%d-%m-%Y",
    "%d.%m.%Y",
    "%m/%d/%Y",
    "%d %b %Y",
    "%d-%b-%Y",
    "%d %B %Y",
    "%b %d, %Y",
    "%B %d %Y",
    "%d/%m/%y",
]


@given(
    day=st.dates(min_value=datetime.date(1970, 1, 1), max_value=datetime.date(2068, 12, 31)),
    form=st.sampled_from(_DATE_FORMS),
    before=st.sampled_from(["", "Date: ", "日期：", "on "]),
    after=st.sampled_from(["", " 10:22", ".", "，"]),
)
def test_a_written_date_is_read_as_its_iso_date(
    day: datetime.date, form: str, before: str, after: str
) -> None:
    written = day.strftime(form)
    text = before + written + after
    found = dates(text, offset=7).readings
    assert day.isoformat().encode() in [r.content for r in found]
    for r in found:
        if r.content == day.isoformat().encode():
            assert text[r.span[0] - 7 : r.span[1] - 7] == written


def test_day_first_and_month_first_are_both_offered_only_when_both_are_dates() -> None:
    assert [r.content for r in dates("03/04/2018").readings] == [b"2018-04-03", b"2018-03-04"]
    assert [r.content for r in dates("23/04/2018").readings] == [b"2018-04-23"]
    assert [r.content for r in dates("31/02/2018 or 2018-13-01").readings] == []


def test_things_that_are_not_dates() -> None:
    for text in ["Tel 03-7845 6778", "May 2018", "1.2.3.4", "version 10.12.2018.1", "12345678"]:
        assert dates(text).readings == [], text


@given(
    value=st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False),
    spec=st.sampled_from([",.2f", ".2f", ",.0f", ".0f"]),
    prefix=st.sampled_from(["", "RM", "$", "total ", "合计：", "Rs.", "RM.", "No."]),
)
def test_a_written_number_is_read_as_a_json_number_equal_to_it(
    value: object, spec: str, prefix: str
) -> None:
    written = format(value, spec)
    text = f"{prefix}{written} paid"
    read = [json.loads(r.content) for r in numbers(text).readings]
    assert float(written.replace(",", "")) in read
    assert all(isinstance(json.loads(r.content), int | float) for r in numbers(text).readings)


@pytest.mark.parametrize(
    ("text", "numbers_read", "integers_read"),
    [
        ("TOTAL RM41.20", [b"41.20", b"41.2"], []),
        ("12,50 EUR", [b"12.50", b"12.5"], []),
        ("1,234,567 people", [b"1234567"], [b"1234567"]),
        ("from 2018-03-23", [b"2018", b"3", b"23"], [b"2018", b"3", b"23"]),  # no negatives
        ("it fell to -5 degrees", [b"-5"], [b"-5"]),
        ("7.00 and 007", [b"7.00", b"7", b"7"], [b"7", b"7"]),
        ("-0.00", [b"0.00", b"0"], [b"0"]),
        ("no digits here", [], []),
    ],
)
def test_numbers_of_a_text(
    text: str, numbers_read: list[bytes], integers_read: list[bytes]
) -> None:
    assert [r.content for r in numbers(text).readings] == numbers_read
    assert [r.content for r in numbers(text, integer=True).readings] == integers_read


@given(
    mantissa=st.decimals(min_value=-999, max_value=999, places=3, allow_nan=False),
    exponent=st.integers(min_value=-30, max_value=30),
    form=st.sampled_from(["{m}e{x}", "{m}E{x}", "{m} × 10^{x}", "{m}x10^{x}", "{m}×10{s}"]),
    around=st.sampled_from(["measured {} here", "{}", "约{}个", "It took {}.", "(~{}), then"]),
)
def test_a_number_in_scientific_notation_is_read_as_itself(
    mantissa: Decimal, exponent: int, form: str, around: str
) -> None:
    superscript = str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    written = form.format(m=mantissa, x=exponent, s=superscript)
    text = around.format(written)
    value = mantissa.scaleb(exponent)
    found = [r for r in numbers(text).readings if Decimal(r.content.decode()) == value]
    assert found, (text, [r.content for r in numbers(text).readings])
    assert any(text[r.span[0] : r.span[1]] == written for r in found)


@given(
    value=st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False),
    fullwidth=st.booleans(),
)
def test_a_number_written_the_european_or_fullwidth_way_is_read_too(
    value: object, fullwidth: bool
) -> None:
    # 1.234,50 was read as 1.234 (and 1234.5 refused); ￥１，２００ as 1 and 200.
    english = format(value, ",.2f")
    european = english.translate(str.maketrans(",.", ".,"))
    for written in (english, european):
        if fullwidth:
            written = written.translate(str.maketrans("0123456789,.", "０１２３４５６７８９，．"))
        read = [json.loads(r.content) for r in numbers(f"Summe: {written} EUR").readings]
        assert float(english.replace(",", "")) in read, written


@pytest.mark.parametrize(
    ("text", "numbers_read", "integers_read"),
    [
        # After a letter and a point: no decimal point before it (were never read).
        ("Rs.1,250.00", [b"1250.00", b"1250"], [b"1250"]),
        ("Vol.12, No.3, pp.45–67", [b"12", b"3", b"45", b"67"], [b"12", b"3", b"45", b"67"]),
        # Runs that are no one number are read part by part (were 23.03, 1.234, 12 alone).
        ("23.03.2018", [b"23", b"3", b"2018"], [b"23", b"3", b"2018"]),
        ("192.168.1.1", [b"192", b"168", b"1", b"1"], [b"192", b"168", b"1", b"1"]),
        ("Apples,12,3.50", [b"12", b"3.50", b"3.5"], [b"12"]),
        ("1,2,3", [b"1", b"2", b"3"], [b"1", b"2", b"3"]),
        # Decimal commas of any length, thousands dots, lakhs, apostrophes.
        (
            "0,5 l and 3,14159",
            [b"0.5", b"0", b"5", b"3.14159", b"3", b"14159"],
            [b"0", b"5", b"3", b"14159"],
        ),
        ("Total 12,50, Tax 2,10", [b"12.50", b"12.5", b"2.10", b"2.1"], []),
        ("1.234.567 Einwohner", [b"1234567"], [b"1234567"]),
        ("₹1,23,456.00", [b"123456.00", b"123456"], [b"123456"]),
        ("CHF 1'234.50", [b"1234.50", b"1234.5"], []),
        ("1,234 people", [b"1234"], [b"1234"]),  # a thousand and more, not 1.234
        # A dash after a letter may be either; the unsigned reading's source is the digits.
        ("RM-5", [b"-5", b"5"], [b"-5", b"5"]),
        ("Temperature –5 °C", [b"-5"], [b"-5"]),  # an en dash as a sign
        # A Chinese comma between numbers is a list's (was 100200300); one comma not before
        # two digits or a thousands group may be either (was 2019.2020 alone).
        (
            "价格100，200，300元",
            [b"100200300", b"100", b"200", b"300"],
            [b"100200300", b"100", b"200", b"300"],
        ),
        ("years 2019,2020", [b"2019.2020", b"2019.202", b"2019", b"2020"], [b"2019", b"2020"]),
        # A point with nothing before it is a decimal point (was read 5 and 99), its sign kept;
        # not a point of dot leaders or an ellipsis.
        (".5 mg, $.99", [b"0.5", b"0.99"], []),
        ("r = -.45", [b"-0.45"], []),
        ("QTY......2, pages 10..15", [b"2", b"10", b"15"], [b"2", b"10", b"15"]),
        # "，" between digits: a thousands comma or a list's, both read.
        ("12，345元", [b"12345", b"12", b"345"], [b"12345", b"12", b"345"]),
        # Longer than any number the tracker lets be written: begun, it could never end.
        ("IBAN 1234567890123456789012345 and 7", [b"7"], [b"7"]),
    ],
)
def test_numbers_a_reader_sees(
    text: str, numbers_read: list[bytes], integers_read: list[bytes]
) -> None:
    assert [r.content for r in numbers(text).readings] == numbers_read
    assert [r.content for r in numbers(text, integer=True).readings] == integers_read
    for r in numbers(text).readings:
        assert re.sub(r"[,.'，．]", "", text[r.span[0] : r.span[1]].lstrip("-–")).isdigit()


@pytest.mark.parametrize(
    ("text", "numbers_read", "integers_read"),
    [
        # 8 of 8千 is no number of its own, as 3 of 3万 (was offered: 8 and -8 for -8千);
        # 8 of 8千米 is, eight kilometres.
        ("亏损-8千元", [b"-8000"], [b"-8000"]),
        ("8千米", [b"8"], [b"8"]),
        # Scientific notation, whole (was 1.5 and 3 alone): as written where JSON takes it, and
        # written out; the parts stay offered, as for any run that may be something else.
        ("1.5e3 ms", [b"1.5", b"3", b"1.5e3", b"1500"], [b"3", b"1500"]),
        ("Tm -2.5E-1", [b"-2.5", b"-1", b"1", b"-2.5E-1", b"-0.25"], [b"-1", b"1"]),
        ("2.5 × 10^4 cells", [b"2.5", b"10", b"4", b"2.5e4", b"25000"], [b"10", b"4", b"25000"]),
        ("3x10⁻⁵ km", [b"3", b"10", b"3e-5", b"0.00003"], [b"3", b"10"]),
        ("007e2, v1e3", [b"7", b"2", b"1", b"3", b"7e2", b"700"], [b"7", b"2", b"1", b"3", b"700"]),
        # Not inside a word or another number; non-ASCII digits as JSON's (from a review of
        # the first version: 1,500 × 10^3 gave 500e3, 1e٣ was offered as written, not JSON).
        (
            "1.5e3ms v1e3 1e3f",
            [b"1.5", b"3", b"1", b"3", b"1", b"3"],
            [b"3", b"1", b"3", b"1", b"3"],
        ),
        ("1,500 × 10^3", [b"1500", b"10", b"3"], [b"1500", b"10", b"3"]),
        ("1.5e３", [b"1.5", b"3", b"1.5e3", b"1500"], [b"3", b"1500"]),
        (".5e3", [b"0.5", b"3", b"0.5e3", b"500"], [b"3", b"500"]),
        # Kilo- units other than 克米瓦卡: 220千伏 is 220 kV (was 220000 alone).
        ("220千伏, 5千赫, 3千焦", [b"220", b"5", b"3"], [b"220", b"5", b"3"]),
        # Past a double: JSON parsers would read it as infinity or 0.
        (
            "1e400 1e-400",
            [b"1", b"400", b"1", b"-400", b"400"],
            [b"1", b"400", b"1", b"-400", b"400"],
        ),
    ],
)
def test_numbers_with_units_and_exponents(
    text: str, numbers_read: list[bytes], integers_read: list[bytes]
) -> None:
    assert [r.content for r in numbers(text).readings] == numbers_read
    assert [r.content for r in numbers(text, integer=True).readings] == integers_read
    for r in numbers(text).readings:  # evidence: the number as the text writes it, no blanks
        said = text[r.span[0] : r.span[1]]
        assert said == said.strip() and said[-1] not in "元米 "


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("23-25 March 2018", [b"2018-03-23", b"2018-03-25"]),  # the start was refused
        ("June 12-14, 2019", [b"2019-06-12", b"2019-06-14"]),  # was 2014-06-12 alone
        ("Sent: Mar 23 10:30", []),  # an hour is not a year (was 2010-03-23)
        ("1 Mar 18:00", []),
        ("May 3, 45 people", []),
        ("1/2/20185", []),
        ("２０１８／３／２３", [b"2018-03-23"]),
        ("2018 年 3 月 23 日", [b"2018-03-23"]),
        ("10-12 May, 45 people", []),  # no two-digit year after a comma
        ("1 May, 18 June 2019", [b"2019-06-18"]),  # ... and the date after it is read
        ("2018-03-23 号码", [b"2018-03-23"]),  # the span stops before 号码 (test below)
    ],
)
def test_dates_a_reader_sees(text: str, read: list[bytes]) -> None:
    assert list(dict.fromkeys(r.content for r in dates(text).readings)) == read


def test_readings_answer_like_a_source_text() -> None:
    found = numbers("paid 41.20, then 41.20 again")
    assert found.has(b"4") and found.has(b"41.") and not found.has(b"42")
    assert found.span(b"41.2") is not None  # a whole value; 41 only begins one (below)
    assert found.span(b"41.2") == (5, 10)
    assert found.span(b"41.2", after=6) == (17, 22)
    assert found.span(b"41") is None
    assert sorted(set(found.continuations(b"41.", 8))) == [b"2", b"20"]


def test_the_minus_sign_of_typeset_and_fullwidth_text_is_a_minus() -> None:
    # "−7 °C" read only as 7: -7, the value, could not be written with its source.
    assert [r.content for r in numbers("−7 °C").readings] == [b"-7"]
    assert [r.content for r in numbers("－3度").readings] == [b"-3"]
    assert [r.content for r in numbers("5−3").readings] == [b"5", b"3"]  # a dash between


def test_a_date_span_stops_before_the_next_word() -> None:
    (found,) = dates("2018-03-23 号码").readings
    assert found.span == (0, 10)
