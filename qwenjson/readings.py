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
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Readings", "dates", "numbers"]


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

# Digits with optional thousands separators (``1,234,567``) or none, then an optional decimal
# part after a point, or after a comma followed by exactly two digits (``12,50``: the European
# money form; ``1,234`` is a thousands separator). A minus counts as a sign only where it can't
# be a dash between numbers (``2018-03-23`` holds no negative numbers); after a letter
# (``RM-5``, ``A-5``) it may be either, and both readings are offered. The minus sign U+2212
# (``−7 °C``, as typeset text writes it) and the fullwidth U+FF0D are minus signs too.
_NUMBER = re.compile(
    r"(?<![\d.])(?<!\d,)(?P<sign>(?<![\d\-\u2212\uff0d])[\-\u2212\uff0d])?"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)"
    r"(?:\.(?P<frac>\d+)|,(?P<cents>\d{2})(?![\d,]))?"
    r"(?![\d])"
)


def _ascii_digits(digits: str) -> str:
    return digits if digits.isascii() else "".join(str(unicodedata.decimal(d)) for d in digits)


def numbers(text: str, offset: int = 0, *, integer: bool = False) -> Readings:
    """The numbers of ``text`` as JSON number literals: ``RM1,234.50`` reads as ``1234.50``
    and ``1234.5`` (both spellings of one value), ``12,50`` as ``12.50`` and ``12.5``. With
    ``integer``, only whole numbers (``41.20`` gives none; ``7.0`` gives ``7``)."""
    found: list[Reading] = []
    for m in _NUMBER.finditer(text):
        sign = "-" if m.group("sign") else ""
        # ASCII digits for JSON, whatever digits the text uses (fullwidth ３ in Chinese text).
        whole = _ascii_digits(m.group("int").replace(",", "")).lstrip("0") or "0"
        frac = m.group("frac") or m.group("cents")
        frac = None if frac is None else _ascii_digits(frac)
        span = (m.start() + offset, m.end() + offset)
        spellings: list[str] = []
        if frac is None:
            spellings.append(sign + whole)
        elif integer:
            if frac.strip("0") == "":
                spellings.append(sign + whole)
        else:
            spellings.append(f"{sign}{whole}.{frac}")
            short = frac.rstrip("0")
            spellings.append(f"{sign}{whole}.{short}" if short else f"{sign}{whole}")
        if sign and all(s.strip("-0.") == "" for s in spellings):
            spellings = [s.lstrip("-") for s in spellings]  # JSON has no -0 worth writing
        elif sign and m.start() > 0 and text[m.start() - 1].isalpha():
            spellings += [s.lstrip("-") for s in spellings]
        for s in dict.fromkeys(spellings):
            found.append(Reading(s.encode(), span))
    return Readings(found)


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
_YEAR = r"(?P<y>\d{4}|\d{2})"
_DATE_FORMS = [
    # 2018-03-23, 2018/3/23, 2018.03.23, 2018年3月23日
    re.compile(
        r"(?<!\d)(?P<y>\d{4})\s*(?:[-/.]|年)\s*(?P<m>\d{1,2})\s*(?:[-/.]|月)\s*(?P<d>\d{1,2})"
        r"(?!\d)(?:日|号)?"
    ),
    # 23/03/2018, 03-23-18, 23.03.2018: day-first or month-first
    re.compile(
        r"(?<![\d/.-])(?P<a>\d{1,2})(?P<sep>[-/.])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})"
        r"(?![\d/.-]\d)"
    ),
    # 23 Mar 2018, 23-MAR-18, 23rd March, 2018
    re.compile(
        r"(?<![\d\w])" + _DAY + r"[\s\-/.]*" + _MONTH + r"[\s\-/.,]*" + _YEAR + r"(?!\d)",
        re.IGNORECASE,
    ),
    # Mar 23, 2018; March 23rd 2018
    re.compile(
        r"(?<![\w])" + _MONTH + r"[\s\-/.]*" + _DAY + r",?[\s\-/.]*" + _YEAR + r"(?!\d)",
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
    years as ``strptime``'s ``%y``), and with English month names (``23 Mar 2018``, ``March
    23, 2018``)."""
    found: list[Reading] = []
    for form in _DATE_FORMS:
        for m in form.finditer(text):
            groups = m.groupdict()
            year = _year(groups["y"])
            if groups.get("a") is not None:
                a, b = int(groups["a"]), int(groups["b"])
                candidates = [_iso(year, b, a), _iso(year, a, b)]  # day-first first
            elif groups.get("mon") is not None:
                month = _MONTHS[groups["mon"].lower()]
                candidates = [_iso(year, month, int(groups["d"]))]
            else:
                candidates = [_iso(year, int(groups["m"]), int(groups["d"]))]
            span = (m.start() + offset, m.end() + offset)
            for iso in dict.fromkeys(c for c in candidates if c is not None):
                found.append(Reading(iso.encode(), span))
    found.sort(key=lambda r: r.span)
    return Readings(found)
