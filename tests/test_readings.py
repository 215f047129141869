"""The dates and numbers a text can be read as (``qwenjson.readings``).

The oracles are the obvious ones: a date written with ``strftime`` in a given form must be read
back as its ISO date (``date.isoformat``), a number written with Python's own format spec must
be read back as a JSON number equal to it.
"""

from __future__ import annotations

import datetime
import json

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
    prefix=st.sampled_from(["", "RM", "$", "total ", "合计："]),
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
