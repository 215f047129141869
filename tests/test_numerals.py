"""Numbers written in words (``qwenjson.numerals``) and the readings they give.

The oracles are writers: an integer spelled out by the plain textbook rules (written here, the
other way round from the reader under test) must be read back as itself, over its whole span.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwenjson.numerals import numbers_in_words
from qwenjson.readings import dates, numbers

_CN = "零一二三四五六七八九"


def _chinese_below_10000(n: int, *, first: bool) -> str:
    out, zero = "", False
    for unit, name in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // unit % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out += "零"
        zero = False
        # 十二, not 一十二, at the start of the number; 一百一十 inside it
        out += ("" if unit == 10 and digit == 1 and first and not out else _CN[digit]) + name
    return out


def _chinese(n: int) -> str:
    """``n`` (below 10**12) in Chinese numerals, as a textbook writes it."""
    if n == 0:
        return "零"
    out = ""
    for big, name in ((10**8, "亿"), (10**4, "万"), (1, "")):
        part = n // big % 10**4 if big < 10**8 else n // big
        if part == 0:
            continue
        if out and part < 1000 and not out.endswith("零"):
            out += "零"  # 一万零五, 一亿零五百万
        out += _chinese_below_10000(part, first=not out) + name
    return out


_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def _english_below_1000(n: int, and_: bool) -> str:
    words = []
    if n >= 100:
        words.append(f"{_ONES[n // 100]} hundred")
        n %= 100
        if n and and_:
            words.append("and")
    if n >= 20:
        words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
    elif n:
        words.append(_ONES[n])
    return " ".join(words)


def _english(n: int, and_: bool) -> str:
    """``n`` (below 10**12) in English words, with or without the British "and"."""
    if n == 0:
        return "zero"
    words = []
    for big, name in ((10**9, " billion"), (10**6, " million"), (10**3, " thousand"), (1, "")):
        part = n // big % 1000
        if part:
            words.append(_english_below_1000(part, and_) + name)
    return " ".join(words)


def _read(text: str) -> list[tuple[Decimal, str]]:
    return [(value, text[s:e]) for value, s, e in numbers_in_words(text)]


# From 2: a lone 一 or 零 is not read (一个 is mostly "a", 零件 "parts").
@given(n=st.integers(min_value=2, max_value=10**12 - 1))
def test_an_integer_in_chinese_numerals_is_read_as_itself(n: int) -> None:
    written = _chinese(n)
    text = f"共有{written}个"
    assert (Decimal(n), written) in _read(text)


@given(n=st.integers(min_value=11, max_value=10**12 - 1))
def test_an_integer_in_digits_and_chinese_units_is_read_as_itself(n: int) -> None:
    # 3万5千, 5千3百万, 1万零500: the textbook numerals with each digit in Arabic (一十二 for
    # 十二: a unit needs a digit before it). Read as 3 of 30000 and 5000 before.
    written = "".join(
        str(_CN.index(ch)) if ch in _CN[1:] else ch for ch in _chinese(n).replace("零十", "零一十")
    )
    written = "1" + written if written.startswith("十") else written
    if len(re.findall(r"\d+", written)) < 2:
        return  # one run: 3万, 5千, read above (_DIGITS_BIG)
    assert (Decimal(n), written) in _read(f"月薪{written}元")


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("工资三千", [("3000", "三千")]),  # at the text's end: no 千克 there (it read 3)
        ("三千克", [("3", "三")]),
        ("3万5", [("35000", "3万5")]),  # the digit counts the next unit down, as 两万五
        ("-3万5千元亏损", [("-35000", "-3万5千")]),  # a minus at the text's start
        ("-3万元亏损", [("-30000", "-3万")]),
        ("3百5千, 3万500, 3万5千克", []),  # malformed, or kilograms
        # 负 or 零下 before numerals: a minus, the magnitude read too, as for 负5 (零下五度 and
        # 负三千 gave -5 and -3000 alone; 负三 and 负三千米 nothing).
        ("零下五度", [("-5", "零下五"), ("5", "五")]),
        ("负三千", [("-3000", "负三千"), ("3000", "三千")]),
        ("负三", [("-3", "负三"), ("3", "三")]),  # no measure word needed after a minus
        ("他要负一切责任, 欺负一个人, 担负一份责任", []),  # 负 inside a word, a lone 一
        ("气温为负三", []),  # after a character, a lone numeral needs its measure word
        ("负三千米", [("-3", "负三"), ("3", "三")]),
        ("负三块五", [("-3.5", "负三块五"), ("3.5", "三块五")]),
        # 负 before digits and a big unit: a minus, the magnitude read too (was 8000 alone).
        ("负8千元", [("-8000", "负8千"), ("8000", "8千")]),
        ("负3万5千", [("-35000", "负3万5千"), ("35000", "3万5千")]),
        ("负8千米", [("-8", "负8")]),  # kilometres: was no minus at all
        ("零下5度, 负5", [("-5", "零下5"), ("-5", "负5")]),
        ("It was minus 40 and negative 2.5", [("-40", "minus 40"), ("-2.5", "negative 2.5")]),
        ("minus five", [("-5", "minus five"), ("5", "five")]),
        ("terminus 4", []),
    ],
)
def test_signs_and_mixed_units(text: str, read: list[tuple[str, str]]) -> None:
    assert _read(text) == [(Decimal(v), w) for v, w in read]


@given(n=st.integers(min_value=0, max_value=10**12 - 1), and_=st.booleans())
def test_an_integer_in_english_words_is_read_as_itself(n: int, and_: bool) -> None:
    written = _english(n, and_)
    text = f"there were {written} of them"
    assert _read(text) == [(Decimal(n), written)]


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("两万五千人", [("25000", "两万五千")]),
        ("两百五", [("250", "两百五")]),  # the digit counts the next unit down
        ("一万五", [("15000", "一万五")]),
        (
            "一百零五, 一千零十, 一百十",
            [("105", "一百零五"), ("1010", "一千零十"), ("110", "一百十")],
        ),
        ("二〇一八年", [("2018", "二〇一八")]),
        ("一九九八年出生", [("1998", "一九九八")]),  # a year of four
        ("三四五六七年, 〇五年", []),
        ("三点五公斤", [("3.5", "三点五")]),
        ("营收三点五亿元", [("350000000.0", "三点五亿")]),
        ("负三点五度", [("-3.5", "负三点五"), ("3.5", "三点五")]),
        ("廿三日", [("23", "廿三")]),
        ("月薪1.5万元", [("15000.0", "1.5万")]),
        ("月薪1,500万元", [("15000000", "1,500万")]),
        ("3万亿元, 亏损-3万元", [("3000000000000", "3万亿"), ("-30000", "-3万")]),
        ("有三个孩子", [("3", "三")]),  # a lone numeral before a measure word
        ("有一个孩子", []),  # a lone 一 is mostly the article "a": 一个工程师
        ("三四个人", []),  # "three or four"
        ("一起去，统一，十分好，一点，十字路口，三角形，五道口，一块儿，一部分", []),
        ("晚上八点四十分, 三点零五分", []),  # clock times, not 8.4
        ("nineteen ninety, at ten twenty", []),  # a year, a time: said in two parts
        ("one two three", [("1", "one"), ("2", "two"), ("3", "three")]),
        ("Twenty Eight", [("28", "Twenty Eight")]),
        ("ninety-nine and one", [("99", "ninety-nine"), ("1", "one")]),
        ("twenty zero", [("20", "twenty"), ("0", "zero")]),
        ("fifteen hundred", [("1500", "fifteen hundred")]),
        ("three point five million", [("3500000.0", "three point five million")]),
        ("the twenty-first century, two thirds", []),  # ordinals, fractions
        ("five months", [("5", "five")]),
        ("the zone, anyone, often, file_one, Ella tenía tres hijos, te\u0301n", []),
        # a second review's
        ("年薪20万-30万", [("200000", "20万"), ("300000", "30万")]),  # a range, no minus
        ("叁佰元伍角, 三块五", [("300.5", "叁佰元伍角"), ("3.5", "三块五")]),  # not 300, 3
        ("壹万贰仟叁佰肆拾伍元陆角柒分", [("12345.67", "壹万贰仟叁佰肆拾伍元陆角柒分")]),
        ("陆家嘴, 零件, 五台山, 三番五次, 三点一刻, 两点一线, 一点一点", []),
        ("月薪8千, 三千克", [("8000", "8千"), ("3", "三")]),  # 3 kilograms
        ("thirty seconds", [("30", "thirty")]),
        (
            "zero point five, two and a half",
            [("0.5", "zero point five"), ("2.5", "two and a half")],
        ),
        ("one hundred and first", []),
    ],
)
def test_numbers_in_words_of_a_text(text: str, read: list[tuple[str, str]]) -> None:
    assert [(str(value), span) for value, span in _read(text)] == read


_PIECES = [
    *"零〇一二两三四五六七八九十百千万亿廿点负个年月日号分0123456789,.-，．１５ xeE×^⁵⁻+米",
    *["one", "twenty", "hundred", "and", "point", "first", "\u0301", "e400", "e-400", "10^"],
]


@given(st.lists(st.sampled_from(_PIECES), max_size=40).map("".join))
def test_any_text_gives_readings_that_slice_to_themselves(text: str) -> None:
    # No exception (a run of 亿 recursed past the stack; 5,000 〇 overflowed int()), and each
    # reading a JSON number whose span lies in the text.
    for value, start, end in numbers_in_words(text):
        assert 0 <= start < end <= len(text)
        assert value.is_finite()
    for integer in (False, True):
        for r in numbers(text, integer=integer).readings:
            value = json.loads(r.content)
            assert isinstance(value, int | float)
            assert math.isfinite(value) and (value != 0 or not Decimal(r.content.decode()))
            assert len(r.content) <= 24
            assert 0 <= r.span[0] < r.span[1] <= len(text)
    dates(text)


def test_a_mantissa_too_long_to_offer_is_no_number() -> None:
    # A million digits before e1 overflowed Decimal's exponent (decimal.Overflow); after
    # "0." they rounded to 0, offered for a number that isn't 0.
    assert [r.content for r in numbers("1" * 1_000_000 + "e1").readings] == [b"1"]
    tiny = "0." + "0" * 1_000_000 + "1e-5"
    assert [r.content for r in numbers(tiny).readings] == [b"-5", b"5"]


def test_a_long_run_of_numerals_is_no_number() -> None:
    # RecursionError each (亿 by 亿; a teen before a teen: "nineteen eighty-four"), or
    # int() past 4,300 digits.
    long = ["一" + "亿" * 1200, "一" + "〇" * 5000, "1" * 5000 + "万", "一万" * 20000]
    for text in [*long, "nineteen " * 2000]:
        assert numbers(text).readings == [], text[:10]


def test_numbers_in_words_are_readings_of_a_text_with_their_offsets() -> None:
    text = "王芳今年二十八岁，有三个孩子，体重六十五点五公斤，年薪 twenty thousand。"
    found = {r.content: r.span for r in numbers(text, offset=5).readings}
    assert {k: text[s - 5 : e - 5] for k, (s, e) in found.items()} == {
        b"28": "二十八",
        b"3": "三",
        b"65.5": "六十五点五",
        b"20000": "twenty thousand",
    }
    integers = [r.content for r in numbers(text, integer=True).readings]
    assert integers == [b"28", b"3", b"20000"]  # 65.5 is no integer
    assert all(isinstance(json.loads(c), int) for c in integers)


@pytest.mark.parametrize(
    ("text", "iso", "written"),
    [
        ("生于二〇一八年三月二十三日。", b"2018-03-23", "二〇一八年三月二十三日"),
        ("2018年十二月五号入职", b"2018-12-05", "2018年十二月五号"),
        ("二〇一八年三月廿三日", b"2018-03-23", "二〇一八年三月廿三日"),
        ("１９９８年三月五日", b"1998-03-05", "１９９８年三月五日"),
    ],
)
def test_a_date_in_chinese_numerals_is_read_as_its_iso_date(
    text: str, iso: bytes, written: str
) -> None:
    found = [(r.content, text[r.span[0] : r.span[1]]) for r in dates(text).readings]
    assert (iso, written) in found


def test_a_chinese_date_that_is_no_date_is_not_read() -> None:
    assert dates("二〇一八年二月三十日").readings == []
    assert dates("12018年三月五日").readings == []
