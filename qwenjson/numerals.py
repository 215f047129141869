"""Numbers written in words: Chinese numerals (二十八, 两万五千, 二〇一八, 1,500万, 3万5千) and
English number words (twenty-eight, three hundred and five, three point five million), a sign in
words before a number (minus 40, 负5, 零下五度), with where the text writes them.

A typed value is grounded to the text's readings (``qwenjson.readings``); a text that writes its
numbers in words had none, so "王芳今年二十八岁，有三个孩子" gave ``age`` no evidence
(``--require-evidence``: exit 5) and an optional ``children`` was left out, as if the text
didn't say it. ``cn2an`` and ``word2number`` read one given string; neither finds the numbers
inside a text with their offsets, which is what a reading needs, so the parsing is here.

Words that are numbers only sometimes are read only where they are clearly one, since a number
offered where the text has none lets a small model fill a field the text doesn't give: a lone
Chinese numeral only before a measure word (三个, 两位; never a lone 一, mostly the article "a":
一个工程师, 一块儿, 一部分), adjacent digits without units not at all (三四个人 is "three or
four", not 34), positional digits (二〇一八) only with a 〇/零 inside or as a year of four
(一九九八年), no decimal that is a clock time (八点四十分), nothing before an ordinal
(twenty-first) or inside another word (tres, file_one). "one" as a pronoun ("no one") is not
told apart: the model chooses among the readings, as it does among digits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from decimal import Decimal

__all__ = ["ascii_digits", "chinese_dates", "numbers_in_words", "part_of_a_larger_number"]

_DIGITS = {
    "零": 0, "〇": 0, "一": 1, "壹": 1, "二": 2, "贰": 2, "貳": 2, "两": 2, "兩": 2, "三": 3,
    "叁": 3, "參": 3, "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "陸": 6, "七": 7,
    "柒": 7, "八": 8, "捌": 8, "九": 9, "玖": 9,
}  # fmt: skip
_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_TENS_CHARS = {"廿": "二十", "卅": "三十", "卌": "四十"}  # 廿三 is 23
_BIG = {"万": 10**4, "萬": 10**4, "亿": 10**8, "億": 10**8}
_DIGIT_CLASS = "".join(_DIGITS)
_BIG_CLASS = "".join(_BIG)
_NUMERAL = _DIGIT_CLASS + "".join([*_UNITS, *_TENS_CHARS]) + _BIG_CLASS
# A run, a decimal part (三点五), and big units after it (三点五亿); 负 before it, a minus.
_CN_RUN = re.compile(
    f"(?P<minus>负|零下)?(?P<run>[{_NUMERAL}]+)(?:点(?P<frac>[{_DIGIT_CLASS}]+)(?P<big>[{_BIG_CLASS}]*))?"
)
# A run longer than this is no number a field can take (readings.MAX_NUMBER_BYTES digits at
# most) and would only cost time: 亿 repeated 1,000 times.
_MAX_RUN = 24
# After a lone numeral: the measure words (and units) that make it a count. Not 分 or 点 (十分
# "very", 一点 "a little"), nor 字 角 道 里 (十字路口, 三角形, 五道口, 三里屯), nor 些 样 定 直.
_MEASURE = set(
    "个岁年月日号天周人位名次元块件本只条张辆台间套家所层楼室栋幢座口米斤克吨倍项种届期级"
    "章节页部首门场份双对批股支匹头棵颗粒瓶杯碗盒箱包篇句题轮局集季代世度"
)
# Idioms and place names where a lone numeral sits before a measure word (五台山 is a mountain,
# 三番五次 "again and again").
_NOT_COUNTS = ("五台山", "七台河", "三门峡", "五棵松", "三元桥", "八股", "三番五次", "陆家嘴")
# A decimal (三点五) only before these or no Chinese character: 两点一线, 一点一点 and 三点一刻
# (a quarter past three) are no decimals.
_AFTER_DECIMAL = _MEASURE | set("公千毫厘度成%")
_FINANCIAL = set("壹贰貳叁參肆伍陆陸柒捌玖拾佰仟")  # amounts' numerals: no lone 陆 (陆家嘴)
# Yuan and its tenths and hundredths: 三元五角 is 3.5, 叁佰元伍角陆分 300.56, 三块五 3.5.
_AMOUNT = re.compile(
    f"(?P<yuan>[元块圆])(?P<jiao>[{_DIGIT_CLASS}])(?:[角毛](?:(?P<fen>[{_DIGIT_CLASS}])分)?)?"
)
# 千克, 千米, 千瓦, 千卡, 千伏, 千赫, 千焦, 千帕, 千升, 千牛, 千兆: kilo- (or giga-), not a thousand
# (220千伏 is 220 kV).
_KILO_CLASS = "克米瓦卡伏赫焦帕升牛兆"
_KILO = frozenset(_KILO_CLASS)


def _kilo_at(text: str, at: int) -> bool:
    """Whether a kilo- unit's character is at ``at`` (after a 千). A set, not a string: "" (the
    text's end) is in every string."""
    return text[at : at + 1] in _KILO


# A dash after a number or a unit is a range's (20万-30万, ８千－１万), not a minus.
_RANGE_BEFORE = _NUMERAL + "0123456789０１２３４５６７８９千百十"
# Arabic digits (a thousands comma, a decimal point) before 千, 万 or 亿: "1,500万元" is
# 15000000, "8千" 8000.
_DIGITS_BIG = re.compile(
    r"(?<![\d.,，])(?P<minus>-|负|零下)?(?P<run>\d{1,3}(?:[,，]\d{3})+|\d+)(?:\.(?P<frac>\d+))?"
    f"(?P<big>千(?![{_KILO_CLASS}])[{_BIG_CLASS}]*|[{_BIG_CLASS}]+)"
)


def part_of_a_larger_number(text: str, end: int) -> bool:
    """Whether the digits that end at ``end`` of ``text`` are no number of their own: a big
    unit follows (3 of 3万 is 30000, 8 of 8千元 is 8000), not a kilo- (8千米 is 8 km)."""
    unit = text[end : end + 1]
    return unit in _BIG or (unit == "千" and not _kilo_at(text, end + 1))


# Arabic digits among Chinese units, two runs at least (3万5千 is 35000; 3万 alone is above).
_MIXED = re.compile(
    r"(?<![\d.,，])(?P<minus>-|负|零下)?(?P<body>\d+[千百十万萬亿億](?:零?\d+[千百十万萬亿億]?|[万萬亿億])+)"
)


def _digit_value(ch: str) -> int:
    return _DIGITS[ch] if ch in _DIGITS else int(unicodedata.decimal(ch))


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
            if digit is None and unit != 10:
                return None  # a unit with no digit: only 十 (十二, 一百十, 一千零十)
            value += (1 if digit is None else digit) * unit
            digit, last_unit, after_zero = None, unit, False
    if digit is not None:
        # 两百五 is 250 (the digit counts the next unit down); 一百零五 is 105.
        value += digit * (last_unit // 10 if last_unit and not after_zero else 1)
    return value


def _chinese_integer(text: str) -> int | None:
    """The value of a run of Chinese numerals, or None when it is none (or several)."""
    for short, full in _TENS_CHARS.items():
        text = text.replace(short, full)
    if all(ch in _DIGITS for ch in text):  # positional: 二〇一八
        if len(text) == 1:
            return _DIGITS[text]
        if _DIGITS[text[0]] == 0 or not any(_DIGITS[ch] == 0 for ch in text):
            return None  # 三四 ("three or four"), 〇五; a year of four is read in _years
        return int("".join(str(_DIGITS[ch]) for ch in text))
    high, low_limit = 0, None
    for big, scale in (("亿", 10**8), ("億", 10**8), ("万", 10**4), ("萬", 10**4)):
        if big not in text:
            continue
        head, _, tail = text.partition(big)
        if not head or big in tail:
            return None  # 万 first, or twice at one level
        head_value = _chinese_integer(head)
        if head_value is None:
            return None
        if len(tail) == 1 and tail in _DIGITS:
            return high + head_value * scale + _DIGITS[tail] * scale // 10  # 一万五: 15000
        high, text, low_limit = high + head_value * scale, tail.removeprefix("零"), scale
        if not text:
            return high
    low = _section(text)
    if low is None or (low_limit is not None and low >= low_limit):
        return None
    return high + low


def _scaled(value: Decimal, bigs: str) -> Decimal:
    for big in bigs:  # 万亿 is 10**12
        value *= _BIG[big]
    return value


def _chinese(text: str) -> Iterator[tuple[Decimal, int, int]]:
    for m in _CN_RUN.finditer(text):
        run, frac, bigs = m.group("run"), m.group("frac"), m.group("big") or ""
        if len(m.group()) > _MAX_RUN:
            continue
        kilo = frac is None and run[-1] in "千仟" and _kilo_at(text, m.end())
        if kilo:  # 三千克 is 3 kilograms
            run = run[:-1]
            if not run:
                continue
        value = _chinese_integer(run)
        if value is None:
            continue
        minus = m.group("minus") is not None
        if kilo:  # 负三千米: -3 (and 3), as 负8千米
            yield from _with_magnitude(Decimal(value), m, m.end() - 1)
            continue
        after = text[m.end() : m.end() + 1]
        if frac is not None and not bigs and _chinese_char(after) and after not in _AFTER_DECIMAL:
            continue  # 八点四十分, 三点一刻: a time; 两点一线: an idiom
        lone = len(run) == 1 and frac is None and not bigs
        # A lone numeral is a number after 零下, or after a 负 that begins a word (负三, 为 负三),
        # not after one inside a word: 欺负一个人, 担负一切.
        signed = minus and (
            m.group("minus") == "零下" or not _chinese_char(text[m.start() - 1 : m.start()])
        )
        if lone and not signed and not _lone_count(text, m.start("run")):
            continue  # 一个 (mostly "a"), 一起, 统一, 十分, 零件, 陆家嘴
        if any(idiom in text[max(m.start() - 3, 0) : m.end() + 3] for idiom in _NOT_COUNTS):
            continue
        end = m.end()
        if frac is not None:
            number = _scaled(Decimal(f"{value}.{''.join(str(_DIGITS[ch]) for ch in frac)}"), bigs)
        else:
            number = Decimal(value)
            amount = _AMOUNT.match(text, m.end()) if not bigs else None
            if amount is not None:  # 三块五: 3.5, not 3 (a total cut at its yuan)
                cents = f"{_DIGITS[amount.group('jiao')]}{_DIGITS.get(amount.group('fen'), 0)}"
                number, end = number + Decimal(cents) / 100, amount.end()
        yield from _with_magnitude(number, m, end)
    year = f"(?<![{_NUMERAL}\\d])([{_DIGIT_CLASS}]{{4}})年"
    for m in re.finditer(year, text):  # 一九九八年
        yield Decimal("".join(str(_DIGITS[ch]) for ch in m.group(1))), m.start(), m.end(1)
    mixed = [
        m
        for m in _MIXED.finditer(text)
        if len(m.group()) <= _MAX_RUN and len(re.findall(r"\d+", m.group())) > 1
    ]
    for m in _DIGITS_BIG.finditer(text):
        if len(m.group()) > _MAX_RUN or any(x.start() <= m.start() < x.end() for x in mixed):
            continue  # 3万 of 3万5千: 35000, not 30000
        digits = re.sub("[,，]", "", m.group("run"))
        frac = m.group("frac")
        bigs = m.group("big")
        number = Decimal(f"{digits}.{frac}" if frac else digits)
        number = _scaled(number * (1000 if bigs[0] == "千" else 1), bigs.lstrip("千"))
        yield from _signed(number, m, "run", text)
    yield from _mixed(text, mixed)


def _with_magnitude(
    number: Decimal, m: re.Match[str], end: int
) -> Iterator[tuple[Decimal, int, int]]:
    """A numeral run (``_CN_RUN``) read up to ``end``: after 负 or 零下, minus ``number`` and
    ``number`` alone (负三度: -3 and 3, as 负5 gives -5 and 5: a magnitude may be asked)."""
    if m.group("minus") is not None:
        yield -number, m.start(), end
    yield number, m.start("run"), end


def _signed(
    number: Decimal, m: re.Match[str], body: str, text: str
) -> Iterator[tuple[Decimal, int, int]]:
    """``number`` (the match's ``body`` group) with the sign before it: a dash is a minus only
    where no word or number comes just before (亏损-3万: -30000; 20万-30万: a range); 负 and 零下
    always are, and the number alone is read too (as for 负5: a magnitude may be asked)."""
    sign = m.group("minus")
    if sign is None:
        yield number, m.start(body), m.end()
    elif sign != "-":
        yield -number, m.start(), m.end()
        yield number, m.start(body), m.end()
    elif _dash_joins(text[m.start() - 1] if m.start() else ""):
        yield number, m.start(body), m.end()
    else:
        yield -number, m.start(), m.end()


def _dash_joins(before: str) -> bool:
    """Whether a dash after ``before`` (the character before it, "" at the text's start) is
    no minus: it joins a word or number to this one (亏损-3万 is -30000; 20万-30万 a range)."""
    return bool(before) and (
        (before.isascii() and before.isalnum()) or before in _RANGE_BEFORE or before == "-"
    )


def _mixed(text: str, found: list[re.Match[str]]) -> Iterator[tuple[Decimal, int, int]]:
    """The amounts written in Arabic digits and Chinese units together (3万5千, 5千3百万,
    1万零500), each read whole."""
    for m in found:
        value = _mixed_value(m.group("body"))
        kilo = m.group("body")[-1] in "千仟" and _kilo_at(text, m.end())
        if value is not None and not kilo:
            yield from _signed(Decimal(value), m, "body", text)


def _mixed_value(body: str) -> int | None:
    """The value of ``body`` (``_MIXED``), read as ``_chinese_integer`` reads numerals, each
    digit run standing for one numeral; None when it is malformed (3百5千, 3万500)."""
    total, section, pending, unit, big, after_zero = 0, 0, None, None, None, False
    for token in re.findall(r"零|\d+|\D", body):
        if token == "零":
            after_zero = True
        elif token.isdigit():
            if pending is not None:
                return None
            pending = int(token)
        elif token in _UNITS:
            size = _UNITS[token]
            if pending is None or pending >= 10 or (unit is not None and size >= unit):
                return None
            section, pending, unit, after_zero = section + pending * size, None, size, False
        else:
            scale = _BIG[token]
            section += pending or 0
            if (big is not None and scale >= big) or not 0 < section < 10**4:
                return None
            total, section, pending, unit, big = total + section * scale, 0, None, None, scale
            after_zero = False
    if pending is not None:
        below = unit or big or 10
        if after_zero:  # 1万零500: 500 below the unit before the 零
            if pending >= below:
                return None
            section += pending
        elif pending < 10:  # 3万5, 5千3: the digit counts the next unit down
            section += pending * (below // 10)
        else:
            return None
    return total + section


def _chinese_char(ch: str) -> bool:
    return bool(ch) and "\u4e00" <= ch <= "\u9fff"


def _lone_count(text: str, at: int) -> bool:
    """Whether the lone numeral at ``at`` counts something: before a measure word, and not
    一 (mostly "a"), 零/〇 (零件, parts) or an amount's numeral outside an amount (陆家嘴)."""
    ch = text[at]
    after = text[at + 1 : at + 2]
    if ch in "一零〇" or ch in _FINANCIAL:
        return False
    return after in _MEASURE


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
_NUMBER_WORDS = {*_SMALL, *_TENS, "hundred", *_SCALES, "and", "point"}


def _ordinal(word: str) -> str:
    irregular = {
        "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
        "nine": "ninth", "twelve": "twelfth",
    }  # fmt: skip
    if word in irregular:
        return irregular[word]
    return word[:-1] + "ieth" if word.endswith("y") else word + "th"  # twentieth, sixth


# A number before one of these is part of an ordinal or a fraction (twenty-first, three fifths):
# no reading for either word.
_ORDINALS = {
    form
    for word in [*_ONES[1:], *_TENS, "hundred", *_SCALES]
    for form in (_ordinal(word), _ordinal(word) + "s")
} - {"second", "seconds"} | {"half", "halves", "quarter", "quarters"}  # five seconds: 5


def _words(text: str) -> list[tuple[str, int, int]]:
    """The text's words: runs of letters with their marks, digits and "_" (so "tres", "teń"
    and "file_one" are single words, none of them a number word), lower-cased."""
    words: list[tuple[str, int, int]] = []
    start = None
    for i, ch in enumerate(text + " "):
        inside = ch == "_" or unicodedata.category(ch)[0] in "LMN"
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            words.append((text[start:i].lower(), start, i))
            start = None
    return words


def _english(text: str) -> Iterator[tuple[Decimal, int, int]]:
    """Each number written in English words, as long as it runs: "two hundred and five",
    "twenty-eight", "fifteen hundred", "three point five million"."""
    words = _words(text)
    i = 0
    while i < len(words):
        if words[i][0] not in _NUMBER_WORDS:
            i += 1
            continue
        found = _english_number(text, words, i)
        if found is None:
            i += 1
            continue
        value, end_index = found
        following = [w for w, _, _ in words[end_index : end_index + 2]]
        if _joined(text, words, end_index) and following[0] in _ORDINALS:
            end_index += 1  # twenty-first: neither 20 nor "first"
        elif (
            _joined(text, words, end_index)
            and following[:1] == ["and"]
            and (
                len(following) > 1
                and following[1] in _ORDINALS
                and _joined(text, words, end_index + 1)
            )
        ):
            end_index += 2  # one hundred and first
        elif value is not None:
            yield value, words[i][1], words[end_index - 1][2]
        i = end_index


def _joined(text: str, words: list[tuple[str, int, int]], i: int) -> bool:
    """Whether word ``i`` follows word ``i - 1`` with one blank or one hyphen between them."""
    return 0 < i < len(words) and text[words[i - 1][2] : words[i][1]] in (" ", "-")


def _english_number(
    text: str, words: list[tuple[str, int, int]], i: int
) -> tuple[Decimal | None, int] | None:
    """The number that begins at word ``i`` and the index after its last word (the value
    None: words that are no number to offer), or None when none begins there."""
    total, group, last, last_scale, start = 0, 0, "", 10**12, i
    while i < len(words):
        word = words[i][0]
        if i > start and not _joined(text, words, i):
            break
        after_round = last in ("", "hundred", "scale", "and")
        if word in _SMALL and (after_round or (last == "tens" and 0 < _SMALL[word] < 10)):
            if _SMALL[word] == 0 and last:
                break  # "twenty zero"
            group, last = group + _SMALL[word], "small" if _SMALL[word] < 10 else "teen"
            if _SMALL[word] == 0:
                i += 1
                if _joined(text, words, i) and words[i][0] == "point":
                    return _decimal(text, words, i, 0)  # zero point five
                break  # zero stands alone
        elif word in _TENS and after_round:
            group, last = group + _TENS[word], "tens"
        elif word == "hundred" and 0 < group < (10 if total else 100):
            group, last = group * 100, "hundred"  # and fifteen hundred, twenty-five hundred
        elif word in _SCALES and last != "and" and group and _SCALES[word] < last_scale:
            total, group, last = total + group * _SCALES[word], 0, "scale"
            last_scale = _SCALES[word]
        elif word == "and" and last in ("hundred", "scale") and i + 1 < len(words):
            following = words[i + 1][0]
            if not (following in _TENS or _SMALL.get(following, 0) > 0):
                break
            last = "and"
        elif word == "point" and last in ("small", "teen", "tens") and total == 0:
            return _decimal(text, words, i, group)
        else:
            break
        i += 1
    if i == start:
        return None
    if last == "teen" and (tail := _two_digits_end(text, words, i)) is not None:
        return None, tail  # nineteen eighty-four (a year), eleven fifteen (a time)
    half = [w for w, _, _ in words[i : i + 3]] == ["and", "a", "half"]
    if half and all(_joined(text, words, k) for k in (i, i + 1, i + 2)):
        return Decimal(total + group) + Decimal("0.5"), i + 3  # two and a half
    return Decimal(total + group), i


def _two_digits_end(text: str, words: list[tuple[str, int, int]], i: int) -> int | None:
    """The index after a number of 10 to 99 in words that begins at word ``i`` right after
    the word before it ("eighty-four", "fifteen"), or None. (Not recursive: a run of 2,000
    teens recursed past the stack.)"""
    if not _joined(text, words, i):
        return None
    word = words[i][0]
    if _SMALL.get(word, 0) >= 10:
        return i + 1
    if word not in _TENS:
        return None
    if _joined(text, words, i + 1) and 0 < _SMALL.get(words[i + 1][0], 0) < 10:
        return i + 2
    return i + 1


def _decimal(
    text: str, words: list[tuple[str, int, int]], at: int, whole: int
) -> tuple[Decimal | None, int] | None:
    """``whole`` "point" digits, and a scale after them: "three point five million"."""
    digits, i = "", at + 1
    while i < len(words) and _joined(text, words, i) and _SMALL.get(words[i][0], 10) < 10:
        digits += str(_SMALL[words[i][0]])
        i += 1
    if not digits:
        return None
    value = Decimal(f"{whole}.{digits}")
    if i < len(words) and _joined(text, words, i) and words[i][0] in _SCALES:
        value, i = value * _SCALES[words[i][0]], i + 1
    return value, i


def numbers_in_words(text: str) -> list[tuple[Decimal, int, int]]:
    """Each number ``text`` writes in words, its value and code point offsets [start, end)."""
    found = [*_chinese(text), *_english(text), *_signed_digits(text)]
    for value, start, end in _english(text):
        sign = _SIGN_WORD_BEFORE.search(text, max(start - 12, 0), start)
        if sign is not None and value:
            found.append((-value, sign.start(), end))  # minus forty: -40 (and 40, read above)
    return sorted(set(found), key=lambda f: (f[1], f[2]))


# A sign in words before a number: "minus 40", "negative five", 负5, 零下5度. The number alone
# is read too: the model chooses (a temperature may be asked as a magnitude).
_SIGN_WORD_BEFORE = re.compile(r"(?<![^\W\d_])(?:minus|negative) $", re.IGNORECASE)
_SIGNED_DIGITS = re.compile(
    r"(?:(?<![^\W\d_])(?:minus|negative) |负|零下)(?P<n>\d+(?:\.\d+)?)"
    f"(?![\\d.,，百十万萬亿億]|千(?![{_KILO_CLASS}]))",
    re.IGNORECASE,
)


def _signed_digits(text: str) -> Iterator[tuple[Decimal, int, int]]:
    for m in _SIGNED_DIGITS.finditer(text):
        if len(m.group("n")) <= _MAX_RUN:
            number = Decimal(ascii_digits(m.group("n")))
            if number:
                yield -number, m.start(), m.end()


def ascii_digits(text: str) -> str:
    """``text`` with its decimal digits (fullwidth ３, Arabic-Indic ٣…) as ASCII ones, as JSON
    writes numbers; other characters (a point, a sign) as they are."""
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


_CN_DATE = re.compile(
    f"(?<![{_NUMERAL}\\d])(?P<y>[{_DIGIT_CLASS}]{{4}}|\\d{{4}})年(?P<m>[{_NUMERAL}]{{1,3}}|\\d{{1,2}})"
    f"月(?P<d>[{_NUMERAL}]{{1,3}}|\\d{{1,2}})[日号]"
)


def _date_part(text: str) -> int | None:
    if all(ch.isdigit() and ch not in _DIGITS for ch in text):
        return int("".join(str(_digit_value(ch)) for ch in text))
    return _chinese_integer(text)


def chinese_dates(text: str) -> Iterator[tuple[int, int, int, int, int]]:
    """Each date written with Chinese numerals in it (二〇一八年三月二十三日, 2018年三月五号):
    year, month, day and its code point offsets. (All digits: ``readings.dates`` reads it.)"""
    for m in _CN_DATE.finditer(text):
        if all(ch.isdigit() for ch in m.group("y") + m.group("m") + m.group("d")):
            continue
        year = int("".join(str(_digit_value(ch)) for ch in m.group("y")))
        month, day = _date_part(m.group("m")), _date_part(m.group("d"))
        if month is not None and day is not None:
            yield year, month, day, m.start(), m.end()
