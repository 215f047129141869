"""Numbers written in words: Chinese numerals (二十八, 两万五千, 二〇一八) and English number
words (twenty-eight, three hundred and five), with where the text writes them.

A typed value is grounded to the text's readings (``qwenjson.readings``); a text that writes its
numbers in words had none, so "王芳今年二十八岁，有三个孩子" gave ``age`` no evidence
(``--require-evidence``: exit 5) and an optional ``children`` was left out, as if the text
didn't say it. ``cn2an`` and ``word2number`` read one given string; neither finds the numbers
inside a text with their offsets, which is what a reading needs, so the parsing is here.

Words that are numbers only sometimes are read only where they are clearly one: a single Chinese
numeral only before a measure word (三个, 一名, not 一起 "together" or 统一 "unify"), adjacent
digits without units not at all (三四个人 is "three or four", not 34), positional digits
(二〇一八) only with a 〇/零 or as a year of four (一九九八年); "one" as a pronoun ("no one")
is not told apart: the model chooses among the readings, as it does among digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

__all__ = ["chinese_dates", "numbers_in_words"]

_DIGITS = {
    "零": 0, "〇": 0, "一": 1, "壹": 1, "二": 2, "贰": 2, "貳": 2, "两": 2, "兩": 2, "三": 3,
    "叁": 3, "參": 3, "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "陸": 6, "七": 7,
    "柒": 7, "八": 8, "捌": 8, "九": 9, "玖": 9,
}  # fmt: skip
_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_BIG = {"万": 10**4, "萬": 10**4, "亿": 10**8, "億": 10**8}
_NUMERAL = "".join([*_DIGITS, *_UNITS, *_BIG])
_CN_RUN = re.compile(f"[{_NUMERAL}]+(?:点[{''.join(_DIGITS)}]+)?")
# After a single numeral: the measure words (and units) that make it a count, not part of a
# word. Not 分 or 点 ("十分" is "very", "一点" "a little"), nor 些, 样, 定, 直, 起, 般.
_MEASURE = set(
    "个岁年月日号天周人位名次元块角件本只条张辆台间套家所层楼室栋幢座口米里斤克吨倍项种届期级"
    "章节页部首门场份双对批股支匹头棵颗粒瓶杯碗盒箱包篇句字题道轮局集季代世"
)
# Arabic digits before a Chinese 万 or 亿: "1.5万元" is 15000.
_DIGITS_BIG = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)([万萬亿億])")


def _section(text: str) -> int | None:
    """The value of a run below 万 (一百零五, 二十八, 十二, 两百五), or None if malformed."""
    value, digit, last_unit, after_zero = 0, None, None, False
    for ch in text:
        if ch in _DIGITS:
            if digit is not None:
                return None  # two digits in a row: 三四 is "three or four"
            digit = _DIGITS[ch]
            if digit == 0:
                after_zero, digit = True, None
        else:
            unit = _UNITS[ch]
            if last_unit is not None and unit >= last_unit:
                return None  # 十百, 百百
            if digit is None and (value or after_zero or unit != 10):
                return None  # a unit with no digit: only 十 at the start (十二)
            value += (1 if digit is None else digit) * unit
            digit, last_unit, after_zero = None, unit, False
    if digit is not None:
        # 两百五 is 250 (the digit counts the next unit down); 一百零五 is 105.
        value += digit * (last_unit // 10 if last_unit and not after_zero else 1)
    return value


def _chinese_integer(text: str) -> int | None:
    """The value of a run of Chinese numerals, or None when it is none (or several)."""
    if all(ch in _DIGITS for ch in text):  # positional: 二〇一八
        if len(text) == 1:
            return _DIGITS[text]
        if not any(_DIGITS[ch] == 0 for ch in text):
            return None  # 三四 ("three or four"); a year of four is read in _years
        return int("".join(str(_DIGITS[ch]) for ch in text))
    for big in ("亿", "億", "万", "萬"):
        if big in text:
            head, _, tail = text.rpartition(big)
            high = _chinese_integer(head) if head else None
            if high is None:
                return None
            low = 0
            if tail:
                if len(tail) == 1 and tail in _DIGITS:
                    low = _DIGITS[tail] * _BIG[big] // 10  # 一万五 is 15000
                else:
                    low_value = _chinese_integer(tail.removeprefix("零"))
                    if low_value is None or low_value >= _BIG[big]:
                        return None
                    low = low_value
            return high * _BIG[big] + low
    return _section(text)


def _chinese(text: str) -> Iterator[tuple[Decimal, int, int]]:
    for m in _CN_RUN.finditer(text):
        run = m.group()
        whole, point, frac = run.partition("点")
        value = _chinese_integer(whole)
        if value is None:
            continue
        if len(run) == 1 and text[m.end() : m.end() + 1] not in _MEASURE:
            continue  # 一起, 统一, 十分
        if point:
            yield Decimal(f"{value}.{''.join(str(_DIGITS[ch]) for ch in frac)}"), *m.span()
        else:
            yield Decimal(value), *m.span()
    for m in re.finditer(f"([{''.join(_DIGITS)}]{{4}})年", text):  # 一九九八年
        run = m.group(1)
        yield Decimal("".join(str(_DIGITS[ch]) for ch in run)), m.start(), m.end(1)
    for m in _DIGITS_BIG.finditer(text):
        yield Decimal(m.group(1)) * _BIG[m.group(2)], *m.span()


_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
_SMALL = {word: n for n, word in enumerate(_ONES)}
_TENS = {
    word: 10 * n
    for n, word in enumerate(
        ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"), 2
    )
}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}
_WORD = re.compile(r"[A-Za-z]+")


def _english(text: str) -> Iterator[tuple[Decimal, int, int]]:
    """Each number written in English words, as long as it runs: "two hundred and five",
    "twenty-eight", "three thousand four hundred"."""
    words = [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]
    i = 0
    while i < len(words):
        found = _english_number(text, words, i)
        if found is None:
            i += 1
            continue
        value, end_index = found
        yield Decimal(value), words[i][1], words[end_index - 1][2]
        i = end_index


def _english_number(text: str, words: list[tuple[str, int, int]], i: int) -> tuple[int, int] | None:
    """The number that begins at word ``i`` and the index after its last word, or None."""
    total, group, last, last_scale, start = 0, 0, "", 10**12, i
    while i < len(words):
        word = words[i][0]
        if i > start and text[words[i - 1][2] : words[i][1]] not in (" ", "-"):
            break
        after_round = last in ("", "hundred", "scale", "and")
        if word in _SMALL and (after_round or (last == "tens" and 0 < _SMALL[word] < 10)):
            if _SMALL[word] == 0 and last:
                break  # "twenty zero"
            group, last = group + _SMALL[word], "small"
            if _SMALL[word] == 0:
                i += 1
                break  # zero stands alone
        elif word in _TENS and after_round:
            group, last = group + _TENS[word], "tens"
        elif word == "hundred" and last == "small" and 0 < group < 10:
            group, last = group * 100, "hundred"
        elif word in _SCALES and last != "and" and group and _SCALES[word] < last_scale:
            total, group, last = total + group * _SCALES[word], 0, "scale"
            last_scale = _SCALES[word]
        elif word == "and" and last in ("hundred", "scale") and i + 1 < len(words):
            following = words[i + 1][0]
            if not (following in _TENS or _SMALL.get(following, 0) > 0):
                break
            last = "and"
        else:
            break
        i += 1
    if i == start:
        return None
    return total + group, i


def numbers_in_words(text: str) -> list[tuple[Decimal, int, int]]:
    """Each number ``text`` writes in words, its value and code point offsets [start, end)."""
    return sorted(set([*_chinese(text), *_english(text)]), key=lambda f: (f[1], f[2]))


_CN_DATE = re.compile(
    f"(?P<y>[{''.join(_DIGITS)}0-9]{{4}})年(?P<m>[{_NUMERAL}]{{1,3}})月"
    f"(?P<d>[{_NUMERAL}]{{1,3}})[日号]"
)


def chinese_dates(text: str) -> Iterator[tuple[int, int, int, int, int]]:
    """Each date written in Chinese numerals (二〇一八年三月二十三日): year, month, day and
    its code point offsets."""
    for m in _CN_DATE.finditer(text):
        year = int("".join(ch if ch.isascii() else str(_DIGITS[ch]) for ch in m.group("y")))
        month, day = _chinese_integer(m.group("m")), _chinese_integer(m.group("d"))
        if month is not None and day is not None:
            yield year, month, day, m.start(), m.end()
