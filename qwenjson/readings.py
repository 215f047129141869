"""The dates and numbers a text contains, as JSON writes them: what a typed value may be.

A grounded string is copied from the text as written; a date or a number can't be, because the
schema asks for another spelling (``2018-03-23`` where a receipt prints ``23/03/2018``, ``41.2``
where it prints ``RM41.20``). Measured on the dev set's receipts (``scripts/quality.py``), the
0.5B, left to convert on its own, wrote ``2808-08-20`` for ``28/08/2017`` and ``4120.0`` for
``41.20``: 2 of 20 dates and 12 of 20 totals right. So such a value is grounded to a *reading*
of the text instead: every date or number found in it, converted here (deterministically) to
the spelling the schema needs. The model then only chooses which one, token by token, as it
chooses a span for a string; ``Readings`` offers the same questions as ``SourceText`` (may this
content still grow into a value, where does a whole value come from).

A text written day-first or month-first (``03/04/2018``) is read both ways when both are
dates: the model picks.

Measured (``scripts/quality.py --source sroie --source citations``, Qwen2 0.5B, greedy): receipt
dates right 2 → 19 of 20, totals 12 → 14 of 20, the receipts' score 37.5% → 61.2%; the
citations' (whose ``year`` is an integer) unchanged at 85.3%.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from qwenjson.numerals import (
    ascii_digits,
    chinese_dates,
    numbers_in_words,
    part_of_a_larger_number,
)

__all__ = ["MAX_NUMBER_BYTES", "Readings", "dates", "numbers"]

# The longest number written: a double needs at most 24 characters ("-1.2345678901234567e-308")
# and an int64 20. Measured on the dev set's receipts: the 0.5B, unsure of a total, wrote
# digits until the token budget ran out (a 300-digit "total", 470 s), so the tracker refuses a
# longer one; a longer reading (a 25-digit account number) is not offered either, or the model
# could begin it and never end it.
MAX_NUMBER_BYTES = 24


@dataclass(frozen=True)
class Reading:
    """One value the text spells: its JSON content and where the text says it."""

    content: bytes
    span: tuple[int, int]


class Readings:
    """A closed set of values read from a text, asked as a grounded value asks ``SourceText``:
    a value's content must be a prefix of one of them while written, and all of one at its end.
    """

    def __init__(self, readings: list[Reading]) -> None:
        self.readings = readings

    def __bool__(self) -> bool:
        return bool(self.readings)

    def within(self, admits: Callable[[bytes], bool]) -> Readings:
        """The readings whose content ``admits`` takes."""
        return Readings([r for r in self.readings if admits(r.content)])

    def has(self, content: bytes) -> bool:
        """Whether ``content`` can still grow into one of the values."""
        return any(r.content.startswith(content) for r in self.readings)

    def span(self, content: bytes, after: int = 0) -> tuple[int, int] | None:
        """Where the text says the value ``content`` (the first place at or after ``after``,
        else the first), or None when it isn't one of the values."""
        places = [r.span for r in self.readings if r.content == content]
        later = [s for s in places if s[0] >= after]
        return (later or places)[0] if places else None

    def continuations(self, content: bytes, limit: int) -> Iterator[bytes]:
        """The rest of each value that ``content`` begins (at most ``limit`` bytes)."""
        for r in self.readings:
            if r.content.startswith(content):
                yield r.content[len(content) : len(content) + limit]


# -- numbers ---------------------------------------------------------------------------------------

# Fullwidth separators and minus signs as their ASCII forms, one character for one (offsets stay
# the text's): ``２０１８／３／２３`` reads as a date, ``－３`` as -3. Digits of any script are
# ``\d`` already (made ASCII for JSON below).
_SAME_WIDTH = str.maketrans({"／": "/", "－": "-", "\u2212": "-"})
# The fullwidth comma and point between digits as "," and ".": "，" may be a thousands comma
# (``￥１，２００``) or the Chinese comma between the numbers of a list (``100，200，300元``), so
# a run that holds one is read both whole and part by part (``numbers``).
_FULLWIDTH_SEPARATOR = re.compile(r"(?<=\d)[，．](?=\d)")


def _plain(text: str) -> str:
    """``text`` with the separators read as their ASCII forms, the same length."""
    text = text.translate(_SAME_WIDTH)
    return _FULLWIDTH_SEPARATOR.sub(lambda m: "," if m.group() == "，" else ".", text)


# A run of digits joined by single separators (``1,234.50``, ``23.03.2018``, ``12,3.50``): read
# whole where it is one number, else part by part. A run starts at any digit not inside another
# (``Rs.1,250.00``, ``No.5``, ``pp.123``). A dash before it may be a minus (below).
_RUN = re.compile(r"(?P<sign>[-\u2013])?(?P<run>\d+(?:[.,']\d+)*)")

# A run as one number: thousands grouped by commas (or apostrophes, ``1'234.50``), or in lakhs
# (``1,23,456.00``), with a decimal point; or thousands grouped by dots with a decimal comma
# (``1.234,50``), or a decimal comma alone (``12,50``, ``0,5``); ``1,234`` is a thousand and
# more, as English and Chinese texts write it, not a decimal.
_POINT = re.compile(
    r"(?:\d+|\d{1,3}(?:,\d{3})+|\d{1,3}(?:'\d{3})+|\d{1,2}(?:,\d{2})*,\d{3})(?:\.\d+)?"
)
_COMMA = re.compile(r"(?:\d+|\d{1,3}(?:\.\d{3})+)(?:,\d+)?")
# One comma, not before exactly two digits nor a thousands group: a decimal comma (``12,5``) or
# a list (``2019,2020``, ``Apples,12,3``): both are read. (``12,50`` is cents, ``1,234`` more
# than a thousand.)
_EITHER = re.compile(r"\d+,(?:\d|\d{3,})")


def _as_numbers(run: str) -> list[tuple[str, str | None]]:
    """What ``run`` is as one number, (integer digits, decimal digits or None); none when it
    is no one number (``23.03.2018``, ``1,2,3``)."""
    found: list[tuple[str, str | None]] = []
    if _POINT.fullmatch(run):
        whole, _, frac = run.partition(".")
        found.append((re.sub(r"[,']", "", whole), frac or None))
    elif _COMMA.fullmatch(run) and ("," in run or run.count(".") > 1):
        whole, _, frac = run.partition(",")  # 1.234,50; 12,50; 1.234.567
        found.append((whole.replace(".", ""), frac or None))
    return list(dict.fromkeys(found))


def _parts(run: str) -> Iterator[tuple[int, int]]:
    """Where the numbers of a run that is no one number are, as offsets into ``run``: each
    comma-separated part that is one (``12,3.50``: 12 and 3.50), else each part between its
    separators (``23.03.2018``, ``192.168.1.1``)."""
    at = 0
    for part in run.split(","):
        if _POINT.fullmatch(part):
            yield at, at + len(part)
        else:
            here = at
            for piece in re.split(r"[.']", part):
                yield here, here + len(piece)
                here += len(piece) + 1
        at += len(part) + 1


# The signs a number is read with after ``_sign`` has said what the dash before it is.
_SIGN_MARKS = {"minus": ["-"], "dash": [""], "either": ["-", ""]}


def _leading_point(text: str, at: int) -> bool:
    """Whether the run at ``at`` follows a decimal point with nothing before it: ``.5``,
    ``r = -.45``; not the point of an abbreviation (``Rs.5``, ``No.5``) or of dot leaders and
    ellipses (``QTY......2``, ``10..15``)."""
    return (
        at > 0
        and text[at - 1] == "."
        and (at < 2 or not (text[at - 2].isalnum() or text[at - 2] == "."))
    )


def _sign(text: str, at: int) -> str:
    """What the dash at ``at`` before a number is: ``minus``, ``dash`` (after a digit or
    another dash: ``2018-03-23``, ``45–67``), or ``either`` (after a letter, ``RM-5``, or after
    a number and blanks, ``45 - 67``)."""
    before = text[max(at - 32, 0) : at].rstrip(" \t")  # a bounded look back: runs are many
    if at > 0 and (text[at - 1].isdigit() or text[at - 1] in "-\u2013"):
        return "dash"
    if (at > 0 and text[at - 1].isalpha()) or (before and before[-1].isdigit()):
        return "either"
    return "minus"


def numbers(text: str, offset: int = 0, *, integer: bool = False) -> Readings:
    """The numbers of ``text`` as JSON number literals: ``RM1,234.50`` reads as ``1234.50``
    and ``1234.5`` (both spellings of one value), ``12,50`` and ``1.234,50`` with a decimal
    comma, ``23.03.2018`` as 23, 3 and 2018. With ``integer``, only whole
    numbers (``41.20`` gives none; ``7.0`` gives ``7``)."""
    found: list[Reading] = []
    plain = _plain(text)
    for m in _RUN.finditer(plain):
        run, start = m.group("run"), m.start("run")
        m_start: int | None = None
        sign = _sign(plain, m.start()) if m.group("sign") else "dash"
        first = start  # where the run's first number is written, its sign aside
        values = [(start, m.end(), v) for v in _as_numbers(run)]
        if _leading_point(plain, start) and not m.group("sign") and run.isdigit():
            first = start - 1  # .5, $.99, and with the dash before the point, -.45
            values = [(first, m.end(), ("0", run))]
            dash = first - 1
            if dash >= 0 and plain[dash] in "-\u2013":
                sign, m_start = _sign(plain, dash), dash
        elif (
            not values
            or (_EITHER.fullmatch(run) and not _POINT.fullmatch(run))
            or "，" in text[start : m.end()]
        ):
            for s, e in _parts(run):
                values += [(start + s, start + e, v) for v in _as_numbers(run[s:e])]
        signed_from = m_start if first != start and m_start is not None else m.start()
        for s, e, (whole, frac) in values:
            signs = _SIGN_MARKS[sign]
            if s != first:
                signs = [""]  # a sign belongs to the run's first number
            for mark in signs:
                span = (signed_from if mark else s) + offset, e + offset
                for spelling in _spellings(whole, frac, integer):
                    negative = mark + spelling if spelling.strip("0.") else spelling
                    if len(negative) <= MAX_NUMBER_BYTES:
                        found.append(Reading(negative.encode(), span))
    found += _scientific(plain, offset, integer)
    # 3 in "3万" is no number of its own: 30000 is (read below).
    found = [r for r in found if not part_of_a_larger_number(plain, r.span[1] - offset)]
    for value, s, e in numbers_in_words(plain):  # 二十八, twenty-eight, 1.5万
        worded = _word_spelling(value, integer)
        if worded is not None and len(worded) <= MAX_NUMBER_BYTES:
            found.append(Reading(worded.encode(), (s + offset, e + offset)))
    return Readings(list(dict.fromkeys(found)))


# Scientific notation: 1.5e3, 6.02E23, 2.5 × 10^4, 3x10⁵, also between Chinese characters
# (约3×10⁵个). Its parts are read too (the run loop above: 1.5 and 3), as for any run that may be
# something else (a part number, 3e5). Not inside a word or another number (v1e3, 1e3f, the 500
# of 1,500 × 10^3).
_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_SUPERSCRIPT = str.maketrans(_SUPERSCRIPTS + "⁺⁻", "0123456789+-")
_SCIENTIFIC = re.compile(
    r"(?:(?P<sign>[-\u2013])|(?<![A-Za-z_.,\-\u2013])(?<!\d))(?P<m>\d+(?:\.\d+)?|\.\d+)"
    r"(?:(?P<e>[eE])(?P<x>[+-]?\d{1,3})"
    rf"|\s?[×xX*·]\s?10(?:\^(?P<p>[+-]?\d{{1,3}})|(?P<s>[⁺⁻]?[{_SUPERSCRIPTS}]{{1,3}})))"
    rf"(?![A-Za-z_{_SUPERSCRIPTS}]|\d|\.\d)"
)
# A number literal JSON accepts as written.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _scientific(plain: str, offset: int, integer: bool) -> list[Reading]:
    """The numbers ``plain`` writes in scientific notation, in JSON's (``6.02E23`` as written,
    ``2.5e4`` for ``2.5 × 10^4``) and written out where that fits (``1500``, ``0.001``)."""
    found: list[Reading] = []
    for m in _SCIENTIFIC.finditer(plain):
        # ASCII digits, JSON's; a mantissa longer than any offered number is none (and a
        # million digits would overflow Decimal's exponent or round to 0).
        mantissa = ascii_digits(m.group("m"))
        if len(mantissa) > MAX_NUMBER_BYTES:
            continue
        written = m.group("x") or m.group("p") or (m.group("s") or "").translate(_SUPERSCRIPT)
        exponent = ascii_digits(written)
        value = Decimal(mantissa).scaleb(int(exponent))
        if value and not -300 <= value.adjusted() <= 300:
            continue  # a double can't hold it: JSON parsers read it as infinity or 0
        # JSON's mantissa: 7e2 for 007e2, 0.5e3 for .5e3.
        mantissa = re.sub(r"^0+(?=[0-9])", "", mantissa)
        mantissa = "0" + mantissa if mantissa.startswith(".") else mantissa
        spellings = [_word_spelling(value, integer)]
        if not integer:
            spellings.insert(0, f"{mantissa}{m.group('e') or 'e'}{exponent}")
        sign = _sign(plain, m.start()) if m.group("sign") else "dash"
        for mark in _SIGN_MARKS[sign]:
            span = (m.start() if mark else m.start("m")) + offset, m.end() + offset
            for spelling in spellings:
                if spelling is None or not _JSON_NUMBER.fullmatch(spelling):
                    continue
                signed = mark + spelling if value else spelling
                if len(signed) <= MAX_NUMBER_BYTES:
                    found.append(Reading(signed.encode(), span))
    return found


def _word_spelling(value: Decimal, integer: bool) -> str | None:
    """A number written in words as JSON writes it (``3.5``, ``15000``); None for a fraction
    where an integer is asked."""
    if value.adjusted() >= MAX_NUMBER_BYTES:
        return None  # too long to offer (and str(int()) refuses 4,300 digits and more)
    if value == value.to_integral_value():
        return str(int(value))
    return None if integer else format(value.normalize(), "f")


def _spellings(whole: str, frac: str | None, integer: bool) -> list[str]:
    """A number's JSON spellings: ``1234.50`` and ``1234.5``; with ``integer`` whole ones only."""
    digits = ascii_digits(whole).lstrip("0") or "0"
    if frac is None:
        return [digits]
    frac = ascii_digits(frac)
    short = frac.rstrip("0")
    if integer:
        return [] if short else [digits]
    return list(dict.fromkeys([f"{digits}.{frac}", f"{digits}.{short}" if short else digits]))


# -- dates -----------------------------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<d>\d{1,2})(?!\d)(?:st|nd|rd|th)?"
# A two-digit year is not an hour (``Mar 23 10:30``, ``1 Mar 18:00``).
_YEAR = r"(?P<y>\d{4}(?!\d)|\d{2}(?![\d:]))"
_YEAR4 = r"(?P<y>\d{4})(?!\d)"
# Between a month's name and its year: a comma only before a four-digit year ("3 May, 45 people"
# is no date, and "1 May, 18 June 2019" goes on to its second date).
_BEFORE_YEAR = r"(?:[\s\-/.]*,[\s\-/.,]*(?=\d{4})|[\s\-/.]*)"
_DATE_FORMS = [
    # 2018-03-23, 2018/3/23, 2018.03.23, 2018年3月23日
    re.compile(
        r"(?<!\d)(?P<y>\d{4})\s*(?:[-/.]|年)\s*(?P<m>\d{1,2})\s*(?:[-/.]|月)\s*(?P<d>\d{1,2})"
        r"(?!\d)(?:[日号]|\s+[日号](?![\u4e00-\u9fff]))?"
    ),
    # 23/03/2018, 03-23-18, 23.03.2018: day-first or month-first
    re.compile(
        r"(?<![\d/.-])(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})"
        r"(?!\d)(?![/.-]\d)"
    ),
    # 23 Mar 2018, 23-MAR-18, 23rd March, 2018
    re.compile(
        r"(?<![\d\w])" + _DAY + r"[\s\-/.]*" + _MONTH + _BEFORE_YEAR + _YEAR,
        re.IGNORECASE,
    ),
    # Mar 23, 2018; March 23rd 2018 (a four-digit year: "May 3, 45 people" is no date)
    re.compile(
        r"(?<![\w])" + _MONTH + r"[\s\-/.]*" + _DAY + r",?[\s\-/.]*" + _YEAR4,
        re.IGNORECASE,
    ),
]
# Ranges, both ends dates: 23-25 March 2018; June 12-14, 2019.
_RANGE_FORMS = [
    re.compile(
        r"(?<![\d\w])(?P<d>\d{1,2})(?:st|nd|rd|th)?\s*[-\u2013]\s*(?P<d2>\d{1,2})(?:st|nd|rd|th)?"
        r"[\s\-/.]*" + _MONTH + _BEFORE_YEAR + _YEAR,
        re.IGNORECASE,
    ),
    re.compile(
        r"(?<![\w])" + _MONTH + r"[\s\-/.]*(?P<d>\d{1,2})(?:st|nd|rd|th)?\s*[-\u2013]\s*"
        r"(?P<d2>\d{1,2})(?!\d)(?:st|nd|rd|th)?,?[\s\-/.]*" + _YEAR4,
        re.IGNORECASE,
    ),
]


def _year(digits: str) -> int:
    # Two-digit years pivot as POSIX strptime's %y does: 69-99 -> 1900s, 00-68 -> 2000s.
    value = int(digits)
    if len(digits) == 2:
        return value + (1900 if value >= 69 else 2000)
    return value


def _iso(year: int, month: int, day: int) -> str | None:
    try:
        return datetime.date(year, month, day).isoformat()
    except ValueError:
        return None


def dates(text: str, offset: int = 0) -> Readings:
    """The calendar dates of ``text`` as ``YYYY-MM-DD``: ISO and ``年月日`` forms, numeric
    day-first and month-first (``23/03/2018``; both readings when both are dates; two-digit
    years as ``strptime``'s ``%y``), with English month names (``23 Mar 2018``, ``March 23,
    2018``), and both ends of a range (``23-25 March 2018``, ``June 12-14, 2019``)."""
    found: list[Reading] = []
    plain = _plain(text)
    for form in [*_DATE_FORMS, *_RANGE_FORMS]:
        for m in form.finditer(plain):
            groups = m.groupdict()
            year = _year(groups["y"])
            if groups.get("a") is not None:
                a, b = int(groups["a"]), int(groups["b"])
                candidates = [_iso(year, b, a), _iso(year, a, b)]  # day-first first
            elif groups.get("mon") is not None:
                month = _MONTHS[groups["mon"].lower()]
                days = [groups["d"], groups.get("d2")]
                candidates = [_iso(year, month, int(d)) for d in days if d is not None]
            else:
                candidates = [_iso(year, int(groups["m"]), int(groups["d"]))]
            span = (m.start() + offset, m.end() + offset)
            for iso in dict.fromkeys(c for c in candidates if c is not None):
                found.append(Reading(iso.encode(), span))
    for year, month, day, start, end in chinese_dates(plain):  # 二〇一八年三月二十三日
        iso_date = _iso(year, month, day)
        if iso_date is not None:
            found.append(Reading(iso_date.encode(), (start + offset, end + offset)))
    found.sort(key=lambda r: r.span)
    return Readings(list(dict.fromkeys(found)))
