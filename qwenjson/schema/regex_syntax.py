"""ECMA-262 regex syntax → the Python syntax with the same meaning (``\\cX``, ``\\u{…}``,
``\\p{…}``, ``(?<name>…)``), for the standard library's parser and for Python's matcher."""

from __future__ import annotations

import functools
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from qwenjson.errors import SchemaError, UnsupportedKeywordError
from qwenjson.schema.regex_charsets import (
    _LINE_TERMINATORS,
    _MAX_CP,
    _SEMANTIC_ESCAPES,
    Ranges,
    _complement,
    _property_ranges,
)

# warnings.catch_warnings swaps the process's filter list: two threads compiling patterns at
# once put back each other's, and an "ignore" was left in front of the caller's filters for good
# (its own warnings then silenced). So our quiet blocks take turns.
_quiet_lock = threading.RLock()


@contextmanager
def quiet_re() -> Iterator[None]:
    """No warnings from ``re`` in the block ("Possible nested set": ECMA has no nested sets)."""
    with _quiet_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _class_body(ranges: Ranges) -> str:
    """Python class items for ``ranges``, escaped so they are safe anywhere inside a class."""

    def char(cp: int) -> str:
        if cp < 0x80 and chr(cp).isalnum():
            return chr(cp)
        return f"\\x{cp:02x}" if cp <= 0xFF else f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"

    return "".join(char(lo) if lo == hi else f"{char(lo)}-{char(hi)}" for lo, hi in ranges)


def _ecma_to_python(pattern: str, semantic: bool = False) -> str:
    """Rewrite the ECMAScript-only syntax of ``pattern`` into Python syntax with the same meaning.

    Patterns in JSON Schema are ECMA-262 regular expressions with Unicode semantics. Most of the
    syntax is shared with Python's; the rest is rewritten here, escape by escape, before Python's
    parser sees it. The grammar path handles the semantic differences (`\\d`, `\\w`, `\\s`, `.`,
    `$`) on the tree; with ``semantic`` they are rewritten here too, for Python's matcher.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise SchemaError(f"invalid regular expression {pattern!r}: trailing backslash")
            d = pattern[i + 1]
            if d == "c" and i + 2 < n and pattern[i + 2].isascii() and pattern[i + 2].isalpha():
                out.append(f"\\x{ord(pattern[i + 2]) % 32:02x}")  # \cX: control character X
                i += 3
                continue
            if d == "u" and pattern.startswith("{", i + 2):
                end = pattern.find("}", i + 3)
                digits = pattern[i + 3 : end] if end > 0 else ""
                if not re.fullmatch(r"[0-9A-Fa-f]{1,6}", digits) or int(digits, 16) > _MAX_CP:
                    raise SchemaError(f"invalid regular expression {pattern!r}: bad \\u{{…}}")
                out.append(f"\\U{int(digits, 16):08x}")
                i = end + 1
                continue
            pair = re.match(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", pattern[i:], re.I)
            if d == "u" and pair:
                # A surrogate pair written as two escapes is one code point (ECMA u flag).
                high, low = int(pair[1], 16), int(pair[2], 16)
                out.append(f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}")
                i += 12
                continue
            if d in "pP":
                end = pattern.find("}", i + 3) if pattern.startswith("{", i + 2) else -1
                if end < 0:
                    raise SchemaError(f"invalid regular expression {pattern!r}: bad \\{d}{{…}}")
                ranges = _property_ranges(pattern[i + 3 : end])
                if d == "P":
                    ranges = _complement(ranges)
                body = _class_body(ranges)
                out.append(body if in_class else f"[{body}]")
                i = end + 1
                continue
            if d == "k":
                name = re.match(r"k<([A-Za-z_][A-Za-z0-9_]*)>", pattern[i + 1 :])
                if not semantic or not name:
                    raise UnsupportedKeywordError("pattern", "", "backreference \\k<…>")
                out.append(f"(?P={name[1]})")
                i += 1 + name.end()
                continue
            if semantic and d in _SEMANTIC_ESCAPES:
                ranges = _SEMANTIC_ESCAPES[d]
                out.append(_class_body(ranges) if in_class else f"[{_class_body(ranges)}]")
                i += 2
                continue
            if semantic and d in "bB" and not in_class:
                out.append(f"(?a:\\{d})")  # ECMA's word boundaries are ASCII-only, like its \\w
                i += 2
                continue
            if d in "AZzGgi":
                # Python-only escapes (anchors and friends) are syntax errors in ECMA-262 with the
                # `u` flag; translating them to Python's meaning would be wrong.
                raise SchemaError(f"invalid regular expression {pattern!r}: unknown escape \\{d}")
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            if pattern.startswith("[^]", i):
                out.append("[\\s\\S]")  # ECMA: any character
                i += 3
                continue
            if pattern.startswith("[]", i):
                if not semantic:
                    raise UnsupportedKeywordError("pattern", "", "empty class [] never matches")
                out.append("(?!)")  # matches nowhere, like ECMA's empty class
                i += 2
                continue
            in_class = True
            out.append("[^" if pattern.startswith("[^", i) else "[")
            i += len(out[-1])
            continue
        if semantic and c in ".$":
            # ECMA `.` excludes every line terminator; `$` (no m flag) is the end of input only.
            out.append(f"[^{_class_body(_LINE_TERMINATORS)}]" if c == "." else "\\Z")
            i += 1
            continue
        if c == "{" and re.match(r"\{,\d+\}", pattern[i:]):
            # Python reads `a{,2}` as a{0,2}; ECMA-262 as text (or an error with the u flag).
            raise UnsupportedKeywordError(
                "pattern", "", f"{{,n}} means different things in ECMA-262 and Python: {pattern!r}"
            )
        if (
            c == "("
            and pattern.startswith("(?<", i)
            and not pattern.startswith(("(?<=", "(?<!"), i)
        ):
            out.append("(?P<")  # ECMA named group
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def to_python_regex(pattern: str) -> str:
    """A Python regex whose ``re.search`` means what ``pattern`` means in ECMA-262 (JSON Schema).

    For checking ``pattern`` after generation: Python's own reading differs (``\\d`` and ``\\w``
    match non-ASCII digits and letters, ``\\s`` another set of spaces, ``.`` matches ``\\r``,
    ``$`` matches before a final newline, no ``\\p{…}``). Lookaround and backreferences are kept.
    Raises :class:`SchemaError` for an invalid pattern.

    Example: ``re.search(to_python_regex("^\\\\d$"), "৪")`` → ``None``.
    """
    python_pattern = _ecma_to_python(pattern, semantic=True)
    try:
        with quiet_re():
            re.compile(python_pattern)
    except re.error as exc:
        raise SchemaError(f"invalid regular expression {pattern!r}: {exc}") from None
    return python_pattern


@functools.lru_cache(maxsize=4096)
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled so that ``search`` means what it means in ECMA-262: one compiled
    regex per pattern for the process, shared by the compiler's checks and by validation.
    Raises :class:`SchemaError` for an invalid pattern (not cached)."""
    return re.compile(to_python_regex(pattern))


# What may follow a backslash in ECMA-262 with the u flag (outside classes; inside, also "-").
_ECMA_ESCAPES = frozenset("fnrtvcxu0123456789dDwWsSbBpPk^$\\.*+?()[]{}|/")
_QUANTIFIER = re.compile(r"[*+?]|\{\d+(?:,\d*)?\}")


def _python_only_syntax(pattern: str) -> str | None:
    """What in ``pattern`` Python accepts but ECMA-262 (u flag) doesn't, or None."""
    i, n = 0, len(pattern)
    in_class = False
    quantified = 0  # 1 right after a quantifier, 2 after a lazy one ("*?")
    while i < n:
        c = pattern[i]
        if c == "\\":
            d = pattern[i + 1 : i + 2]
            if not (d in _ECMA_ESCAPES or (in_class and d == "-")):
                return f"\\{d} is not an ECMA-262 escape"
            if d == "0" and pattern[i + 2 : i + 3].isdigit():
                return "octal escapes are not ECMA-262 (with the u flag)"
            i, quantified = i + 2, 0
            continue
        if in_class:
            in_class = c != "]"
            i += 1
            continue
        quantifier = _QUANTIFIER.match(pattern, i)
        if quantifier and not pattern.startswith("(?", i - 1):
            if quantified == 1 and c == "?":
                quantified = 2
            elif quantified:
                return "a quantifier after a quantifier (Python's possessive form)"
            else:
                quantified = 1
            i = quantifier.end()
            continue
        quantified = 0
        if c == "[":
            in_class = True
            i += 2 if pattern.startswith("[^", i) else 1
            if pattern.startswith("]", i):  # [] and [^] are complete classes in ECMA-262
                in_class, i = False, i + 1
            continue
        if pattern.startswith("(?", i) and not re.match(
            r"\(\?(?::|=|!|<=|<!|<[A-Za-z_$][\w$]*>)", pattern[i:]
        ):
            return "(?…) groups other than (?: (?= (?! (?<= (?<! (?<name> are not ECMA-262"
        i += 1
    return None


def is_ecma_regex(pattern: str) -> bool:
    """Whether ``pattern`` is a valid ECMA-262 regular expression (u flag): the ``regex`` format.

    Stricter than Python's parser (no ``(?P<…>)``, ``(?i)``, ``(?#…)``, ``\\a``, possessive
    quantifiers) and more lenient where ECMA-262 is (``\\cX``, ``\\p{…}``, ``[]``, lookbehind of
    any width). Unicode properties other than general categories count as invalid (unchecked).
    """
    if _python_only_syntax(pattern) is not None:
        return False
    try:
        python_pattern = _ecma_to_python(pattern, semantic=True)
    except SchemaError:  # UnsupportedKeywordError included: an unknown \p{…}, or {,n}
        return False
    # Only syntax is checked here, and Python wants fixed-width lookbehind: look ahead instead.
    syntax = python_pattern.replace("(?<=", "(?=").replace("(?<!", "(?!")
    try:
        with quiet_re():
            re.compile(syntax)
    except (re.error, RecursionError, OverflowError):
        return False
    return True
