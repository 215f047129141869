"""Character sets for the regex translator: sorted, disjoint code-point ranges, and what
ECMA-262's escapes (``\\d``, ``\\w``, ``\\s``, ``.``), case folding and Unicode categories
(``\\p{…}``) mean as ranges."""

from __future__ import annotations

import bisect
import functools
import unicodedata

from qwenjson.errors import UnsupportedKeywordError

_MAX_CP = 0x10FFFF
Ranges = tuple[tuple[int, int], ...]


# --------------------------------------------------------------------------------------------
# Character sets: sorted, disjoint, non-adjacent inclusive code-point ranges.


def _normalize(ranges: list[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _complement(ranges: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_CP:
        out.append((nxt, _MAX_CP))
    return tuple(out)


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _subtract(a: Ranges, b: Ranges) -> Ranges:
    return _intersect(a, _complement(b))


def _contains(ranges: Ranges, cp: int) -> bool:
    i = bisect.bisect_right(ranges, (cp, _MAX_CP)) - 1
    return i >= 0 and ranges[i][0] <= cp <= ranges[i][1]


def _size(ranges: Ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


# Every character a JSON string can carry in UTF-8 text: lone surrogates can't be generated.
UNIVERSE: Ranges = ((0, 0xD7FF), (0xE000, _MAX_CP))
# The characters JSON writes as themselves (canonical form): not `"`, `\`, nor U+0000–U+001F.
_PLAIN: Ranges = _intersect(UNIVERSE, _complement(((0, 0x1F), (0x22, 0x22), (0x5C, 0x5C))))

_DIGIT: Ranges = ((0x30, 0x39),)
_WORD: Ranges = _normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
# ECMA-262 WhiteSpace and LineTerminator (what `\s` matches there): not Python's `\s`.
_SPACE: Ranges = _normalize(
    [
        (0x09, 0x0D),  # \t \n \v \f \r
        (0x20, 0x20),
        (0xA0, 0xA0),
        (0x1680, 0x1680),
        (0x2000, 0x200A),
        (0x2028, 0x2029),  # line and paragraph separators
        (0x202F, 0x202F),
        (0x205F, 0x205F),
        (0x3000, 0x3000),
        (0xFEFF, 0xFEFF),  # byte order mark
    ]
)
# ECMA `.` matches anything but the line terminators.
_DOT: Ranges = _complement(((0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)))

_LINE_TERMINATORS: Ranges = _complement(_DOT)
# What the character-class escapes mean in ECMA-262 (for Python's matcher, see to_python_regex).
_SEMANTIC_ESCAPES: dict[str, Ranges] = {
    "d": _DIGIT,
    "D": _complement(_DIGIT),
    "w": _WORD,
    "W": _complement(_WORD),
    "s": _SPACE,
    "S": _complement(_SPACE),
}


# Every character with a case mapping lies below U+20000 (the planes above hold CJK ideographs
# and unassigned code points); tests/test_regex.py checks this against the running Python.
_CASED_LIMIT = 0x20000


@functools.cache
def _cased_code_points() -> tuple[int, ...]:
    """Code points whose simple lower or upper case is another single code point (computed once)."""
    out = []
    for cp in range(_CASED_LIMIT):
        ch = chr(cp)
        lo, up = ch.lower(), ch.upper()
        if (len(lo) == 1 and lo != ch) or (len(up) == 1 and up != ch):
            out.append(cp)
    return tuple(out)


@functools.cache
def _case_classes() -> dict[int, tuple[int, ...]]:
    """Each cased code point → every code point with the same simple case folding."""
    groups: dict[str, set[int]] = {}
    for cp in _cased_code_points():
        ch = chr(cp)
        key = ch.lower() if len(ch.lower()) == 1 else ch
        key = key.upper() if len(key.upper()) == 1 else key
        groups.setdefault(key, set()).add(cp)
        groups[key].add(ord(key))
    out: dict[int, tuple[int, ...]] = {}
    for members in groups.values():
        for cp in members:
            out[cp] = tuple(sorted(members))
    return out


def _fold_case(ranges: Ranges) -> Ranges:
    """``ranges`` closed under case-insensitive matching."""
    classes = _case_classes()
    extra = [
        (other, other)
        for cp in _cased_code_points()
        if _contains(ranges, cp)
        for other in classes.get(cp, ())
    ]
    return _normalize(list(ranges) + extra) if extra else ranges


# ECMA-262 General_Category names and aliases (PropertyValueAliases.txt) → unicodedata prefixes.
_GENERAL_CATEGORIES: dict[str, tuple[str, ...]] = {}
for _names, _cats in [
    (("L", "Letter"), ("Lu", "Ll", "Lt", "Lm", "Lo")),
    (("LC", "Cased_Letter"), ("Lu", "Ll", "Lt")),
    (("Lu", "Uppercase_Letter"), ("Lu",)),
    (("Ll", "Lowercase_Letter"), ("Ll",)),
    (("Lt", "Titlecase_Letter"), ("Lt",)),
    (("Lm", "Modifier_Letter"), ("Lm",)),
    (("Lo", "Other_Letter"), ("Lo",)),
    (("M", "Mark", "Combining_Mark"), ("Mn", "Mc", "Me")),
    (("Mn", "Nonspacing_Mark"), ("Mn",)),
    (("Mc", "Spacing_Mark"), ("Mc",)),
    (("Me", "Enclosing_Mark"), ("Me",)),
    (("N", "Number"), ("Nd", "Nl", "No")),
    (("Nd", "Decimal_Number", "digit"), ("Nd",)),
    (("Nl", "Letter_Number"), ("Nl",)),
    (("No", "Other_Number"), ("No",)),
    (("P", "Punctuation", "punct"), ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po")),
    (("Pc", "Connector_Punctuation"), ("Pc",)),
    (("Pd", "Dash_Punctuation"), ("Pd",)),
    (("Ps", "Open_Punctuation"), ("Ps",)),
    (("Pe", "Close_Punctuation"), ("Pe",)),
    (("Pi", "Initial_Punctuation"), ("Pi",)),
    (("Pf", "Final_Punctuation"), ("Pf",)),
    (("Po", "Other_Punctuation"), ("Po",)),
    (("S", "Symbol"), ("Sm", "Sc", "Sk", "So")),
    (("Sm", "Math_Symbol"), ("Sm",)),
    (("Sc", "Currency_Symbol"), ("Sc",)),
    (("Sk", "Modifier_Symbol"), ("Sk",)),
    (("So", "Other_Symbol"), ("So",)),
    (("Z", "Separator"), ("Zs", "Zl", "Zp")),
    (("Zs", "Space_Separator"), ("Zs",)),
    (("Zl", "Line_Separator"), ("Zl",)),
    (("Zp", "Paragraph_Separator"), ("Zp",)),
    (("C", "Other"), ("Cc", "Cf", "Cs", "Co", "Cn")),
    (("Cc", "Control", "cntrl"), ("Cc",)),
    (("Cf", "Format"), ("Cf",)),
    (("Co", "Private_Use"), ("Co",)),
    (("Cn", "Unassigned"), ("Cn",)),
]:
    for _name in _names:
        _GENERAL_CATEGORIES[_name] = _cats


@functools.cache
def _all_category_ranges() -> dict[str, Ranges]:
    """Each Unicode general category → its code points (one pass over Unicode, done once)."""
    out: dict[str, list[tuple[int, int]]] = {}
    category = unicodedata.category
    prev, start = category("\x00"), 0
    for cp in range(1, _MAX_CP + 2):
        cat = category(chr(cp)) if cp <= _MAX_CP else ""
        if cat != prev:
            out.setdefault(prev, []).append((start, cp - 1))
            prev, start = cat, cp
    return {cat: tuple(ranges) for cat, ranges in out.items()}


def _category_ranges(cats: tuple[str, ...]) -> Ranges:
    table = _all_category_ranges()
    return _normalize([r for cat in cats for r in table.get(cat, ())])


def _property_ranges(name: str) -> Ranges:
    key = name.split("=", 1)[1] if name.startswith(("General_Category=", "gc=")) else name
    if key in _GENERAL_CATEGORIES:
        return _category_ranges(_GENERAL_CATEGORIES[key])
    if key in ("Any",):
        return ((0, _MAX_CP),)
    if key in ("ASCII",):
        return ((0, 0x7F),)
    raise UnsupportedKeywordError(
        "pattern", "", f"Unicode property \\p{{{name}}} (only general categories are supported)"
    )
