"""Exact GBNF for integer ranges: the canonical decimal forms of every integer in [lo, hi].

Canonical means what `json.dumps` writes for an int: no `+`, no leading zeros, no `-0`.
Either bound may be ``None`` (unbounded). The expressions only use literals, digit classes and
fixed repetition counts, so they stay small: O(digits²) symbols for any bound.
"""

from __future__ import annotations

from qwenjson.schema.gbnf import CharClass, Expr, Group, Literal, Repeat, alt, optional, seq

_DIGIT = CharClass("0-9")
_NONZERO = CharClass("1-9")


def _digit_class(lo: int, hi: int) -> Expr:
    if lo == hi:
        return Literal(str(lo))
    return _DIGIT if (lo, hi) == (0, 9) else CharClass(f"{lo}-{hi}")


def _any_digits(n: int) -> list[Expr]:
    return [] if n == 0 else [_DIGIT] if n == 1 else [Repeat(_DIGIT, n, n)]


def _same_length(lo: str, hi: str) -> list[list[Expr]]:
    """Alternatives (each a symbol sequence) for digit strings of equal length in [lo, hi]."""
    n = len(lo)
    if n == 0:
        return [[]]
    a, b = int(lo[0]), int(hi[0])
    if a == b:
        return [[Literal(str(a)), *rest] for rest in _same_length(lo[1:], hi[1:])]
    rest_lo_min = lo[1:] == "0" * (n - 1)
    rest_hi_max = hi[1:] == "9" * (n - 1)
    alts: list[list[Expr]] = []
    first_full = a if rest_lo_min else a + 1
    last_full = b if rest_hi_max else b - 1
    if not rest_lo_min:
        alts += [[Literal(str(a)), *rest] for rest in _same_length(lo[1:], "9" * (n - 1))]
    if first_full <= last_full:
        alts.append([_digit_class(first_full, last_full), *_any_digits(n - 1)])
    if not rest_hi_max:
        alts += [[Literal(str(b)), *rest] for rest in _same_length("0" * (n - 1), hi[1:])]
    return alts


def _nonnegative(lo: int, hi: int | None) -> list[list[Expr]]:
    """Alternatives for the integers in [lo, hi], 0 <= lo, hi None = unbounded."""
    alts: list[list[Expr]] = []
    if lo == 0:
        alts.append([Literal("0")])
        lo = 1
        if hi == 0:
            return alts
    if hi is not None and lo > hi:
        return alts
    lo_len = len(str(lo))
    hi_len = len(str(hi)) if hi is not None else lo_len
    for length in range(lo_len, hi_len + 1):
        start = max(lo, 10 ** (length - 1))
        end = 10**length - 1 if hi is None else min(hi, 10**length - 1)
        if start <= end:
            alts += _same_length(str(start), str(end))
    if hi is None:
        # Every number with more digits than lo.
        alts.append([_NONZERO, Repeat(_DIGIT, lo_len, None)])
    return alts


def int_range(lo: int | None, hi: int | None) -> Expr:
    """A GBNF alternation for the canonical integers in [lo, hi].

    Raises ``ValueError`` when the range is empty.
    """
    if lo is not None and hi is not None and lo > hi:
        raise ValueError("empty integer range")
    alts: list[list[Expr]] = []
    # Negative part: "-" then the magnitudes in [max(1, -hi), -lo].
    if lo is None or lo < 0:
        mag_lo = 1 if hi is None or hi >= 0 else -hi
        mag_hi = None if lo is None else -lo
        alts += [[Literal("-"), *rest] for rest in _nonnegative(mag_lo, mag_hi)]
    if hi is None or hi >= 0:
        alts += _nonnegative(max(lo, 0) if lo is not None else 0, hi)
    # seq merges the quoted digits of each alternative ("1" "2" → "12").
    return alt(seq(*symbols) for symbols in alts)


# Fractions after an integer part: some digit not zero, or only zeros ("3.0" is the integer 3).
_FRAC_NONZERO = seq(Literal("."), Repeat(_DIGIT, 0, None), _NONZERO, Repeat(_DIGIT, 0, None))
_FRAC_ZERO = optional(seq(Literal("."), Repeat(Literal("0"), 1, None)))
# What `json.dumps` writes for magnitudes below 1e-4 (5e-05) and from 1e16 on (1e+16).
_MANTISSA = seq(_NONZERO, optional(seq(Literal("."), Repeat(_DIGIT, 1, None))))
_TINY = seq(
    _MANTISSA,
    Literal("e-"),
    alt([seq(Literal("0"), CharClass("5-9")), seq(_NONZERO, Repeat(_DIGIT, 0, None))]),
)
_HUGE = seq(_MANTISSA, Literal("e+"), Repeat(_DIGIT, 1, None))
# Bounds this large would need exponent forms inside the range: left to validation.
EXACT_NUMBER_LIMIT = 10**15


def _magnitudes(a: int, a_ex: bool, b: int | None, b_ex: bool) -> list[Expr]:
    """Alternatives for unsigned canonical numbers m with a <(=) m <(=) b."""
    alts: list[Expr] = []
    first = a + 1 if a_ex else a
    last = None if b is None else (b - 1 if b_ex else b)
    # The integer part always in parentheses, even when a single literal.
    if last is None or first <= last:
        alts.append(seq(Group(int_range(first, last)), _FRAC_ZERO))
    if b is None or a <= b - 1:
        alts.append(seq(Group(int_range(a, None if b is None else b - 1)), _FRAC_NONZERO))
    if a == 0 and (b is None or b > 0):
        alts.append(_TINY)
    if b is None:
        alts.append(_HUGE)
    return alts


def number_range(lo: int | None, lo_ex: bool, hi: int | None, hi_ex: bool) -> Expr | None:
    """GBNF alternatives for canonical JSON numbers in a range with integer bounds.

    ``lo_ex``/``hi_ex`` make a bound exclusive. None when a bound is too large for the plain
    decimal forms to cover the range exactly (the caller falls back to validation).
    """
    for bound in (lo, hi):
        if bound is not None and abs(bound) >= EXACT_NUMBER_LIMIT:
            return None
    alts: list[Expr] = []
    # Non-negative numbers, written without a sign.
    if hi is None or hi > 0 or (hi == 0 and not hi_ex):
        a, a_ex = (0, False) if lo is None or lo < 0 else (lo, lo_ex)
        alts += _magnitudes(a, a_ex, hi, hi_ex)
    # Negative numbers (and -0.0), written with "-": their magnitudes lie in [-hi, -lo].
    if lo is None or lo < 0 or (lo == 0 and not lo_ex):
        a, a_ex = (0, False) if hi is None or hi > 0 else (-hi, hi_ex)
        if hi is not None and hi == 0 and hi_ex:
            a, a_ex = 0, True
        negative = _magnitudes(a, a_ex, None if lo is None else -lo, lo_ex)
        alts += [seq(Literal("-"), Group(m)) for m in negative]
    if not alts:
        raise ValueError("empty number range")
    return alt(alts)
