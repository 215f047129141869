"""The input text as a grounded value may spell it, and the typed values it can be read as.

``SourceText`` is what a grounded string is checked against (a span of the text, written as
JSON writes it); ``SourceText.readings`` the closed sets a grounded date or number is checked
against (``qwenjson.readings``). Both answer the same questions, so the constraint
(``qwenjson.grounding``) and evidence (``qwenjson.evidence``) treat them alike.
"""

from __future__ import annotations

import bisect
import json
import unicodedata
from collections.abc import Iterator

from qwenjson.fields import Kind
from qwenjson.readings import Readings, dates, numbers

__all__ = ["AROUND", "SourceText"]


# How much of the input on each side of a piece ``SourceText`` is given: enough for
# ``may_cut`` (the base of a run of marks, the letters of a flag) in any real text.
AROUND = 16


def _escaped(char: str) -> bytes:
    return json.dumps(char, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")


# Scripts written without blanks between words (Thai, Lao, Myanmar, Khmer): as in CJK, any
# character boundary may be a word's (a grapheme's inside still isn't: marks stay with their
# letter). Else a value there could only be a whole run between blanks.
_UNSPACED = (("\u0e00", "\u0eff"), ("\u1000", "\u109f"), ("\u1780", "\u17ff"))


def _in_word(char: str) -> bool:
    """A letter or digit of a script that separates words with blanks (not CJK, Thai and the
    like, where any character boundary between letters is a word boundary; their digits still
    make whole numbers)."""
    if char.isascii():  # (most of most texts: the Unicode look-ups below cost a third more)
        return char.isalnum()
    if not char.isalnum() or unicodedata.east_asian_width(char) in ("W", "F"):
        return False
    if unicodedata.category(char) == "Nd":
        return True
    return not any(lo <= char <= hi for lo, hi in _UNSPACED)


# Where a letter is not a syllable's end or start in those scripts: after a vowel written
# before its consonant (Thai เ แ โ ใ ไ, Lao ເ ແ ໂ ໃ ໄ) or a stacking sign (Khmer coeng,
# Myanmar virama), and before a vowel written as a letter after it (Thai ะ า ำ ๅ, Lao ະ າ ຳ).
_LEADS = frozenset("\u0e40\u0e41\u0e42\u0e43\u0e44\u0ec0\u0ec1\u0ec2\u0ec3\u0ec4\u17d2\u1039")
_TRAILS = frozenset("\u0e30\u0e32\u0e33\u0e45\u0eb0\u0eb2\u0eb3")


def _hangul_inside(char: str) -> bool:
    """A vowel or final consonant of a decomposed Hangul syllable (not a mark, yet part of
    the syllable a reader sees)."""
    return "\u1160" <= char <= "\u11ff" or "\ud7b0" <= char <= "\ud7ff"


_JOINERS = frozenset("\u200c\u200d")


def _regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"  # the letters flags are made of


def may_cut(text: str, i: int) -> bool:
    """Whether a value may start or end between ``text[i - 1]`` and ``text[i]``: not inside a
    word, nor inside what a reader sees as one character (before a combining mark, a variation
    selector or a skin tone, beside a joiner, between the two letters of a flag): "José" in
    decomposed form has no value "Jose", a family emoji no value "👨"."""
    if i <= 0 or i >= len(text):
        return True
    before, after = text[i - 1], text[i]
    # The letter a run of combining marks sits on ("u" of a decomposed "ü", the consonant of a
    # Devanagari vowel sign): "Mü|ller" is inside a word as "Mu|ller" is.
    base = i - 1
    while base > 0 and not text[base].isascii() and unicodedata.category(text[base])[0] == "M":
        base -= 1
    if _in_word(text[base]) and _in_word(after):
        return False
    if unicodedata.category(after)[0] == "M" or after in _JOINERS or before in _JOINERS:
        return False
    if _hangul_inside(after) or before in _LEADS or after in _TRAILS:
        return False
    if "\ufe00" <= after <= "\ufe0f" or "\U0001f3fb" <= after <= "\U0001f3ff":
        return False
    if _regional(before) and _regional(after):
        run = 0
        while i - 1 - run >= 0 and _regional(text[i - 1 - run]):
            run += 1
        return run % 2 == 0  # after a whole flag, not inside one
    return True


class SourceText:
    """The input text as JSON string content, with where each of its characters starts.

    A grounded value's content (the bytes between its quotes) must be a run of whole
    characters of this escaped form that neither starts nor ends inside a word ("Osl" is not
    a value of "Oslo"; in Chinese any character boundary will do); offsets map back to code
    points of the text.
    """

    def __init__(self, text: str, offset: int = 0, around: tuple[str, str] = ("", "")) -> None:
        """``around``: the input's characters just before and after ``text`` when it is a
        piece of a longer input: its edges are then places a value may start or end only
        where the whole input's are (a name cut by the piece's end is whole in the next
        piece; it was kept cut, and the whole one dropped as the same mention)."""
        self.text = text
        self.offset = offset  # code points before ``text`` in the input as the user gave it
        pieces = [_escaped(c) for c in text]
        self.data = b"".join(pieces)
        before, after = around
        whole = before + text + after
        # boundary byte offset -> code point index, at each place a value may start or end
        self._index: dict[int, int] = {}
        pos = 0
        for i, piece in enumerate(pieces):
            if may_cut(whole, len(before) + i):
                self._index[pos] = i
            pos += len(piece)
        if may_cut(whole, len(before) + len(pieces)):
            self._index[pos] = len(pieces)
        # A piece's edge inside a run of letters is none, in Chinese too (where any character
        # boundary is a word's): "欧阳" of "欧阳芳伟" cut there is no name, and the next piece
        # has the name whole.
        if before and (before[-1] + text[:1]).isalnum():
            self._index.pop(0, None)
        if after and (text[-1:] + after[0]).isalnum():
            self._index.pop(pos, None)

    def occurrences(self, content: bytes) -> Iterator[int]:
        """Byte offsets where ``content`` occurs starting at a boundary (a character's start,
        not inside a word)."""
        data, index = self.data, self._index
        start = data.find(content)
        while start >= 0:
            if start in index:
                yield start
            start = data.find(content, start + 1)

    def has(self, content: bytes) -> bool:
        """Whether ``content`` can still grow into a span (it occurs at a boundary)."""
        return next(self.occurrences(content), None) is not None

    def has_within(self, content: bytes, limit: int) -> bool:
        """Whether ``content`` can still grow into a span of at most ``limit`` characters: at
        some place it occurs, a value may end within ``limit`` characters of its start."""
        cuts = self.__dict__.get("_cuts")
        if cuts is None:
            cuts = self.__dict__["_cuts"] = sorted(self._index)
        for start in self.occurrences(content):
            at = bisect.bisect_left(cuts, start + len(content))
            if at < len(cuts) and self._index[cuts[at]] - self._index[start] <= limit:
                return True
        return False

    def spans(self, content: bytes) -> tuple[tuple[int, int], ...]:
        """Code point offsets ``[start, end)`` in the input of each whole-character
        occurrence of ``content``, in the text's order (kept: a list's items ask again for
        each repeat, and a fork for each token it tries)."""
        cache: dict[bytes, tuple[tuple[int, int], ...]] = self.__dict__.setdefault("_spans", {})
        found = cache.get(content)
        if found is None:
            at = (self.span_at(start, len(content)) for start in self.occurrences(content))
            found = cache[content] = tuple(s for s in at if s is not None)
        return found

    def span(self, content: bytes, after: int = 0) -> tuple[int, int] | None:
        """Code point offsets ``[start, end)`` in the input of the first whole-character
        occurrence of ``content`` (preferring one starting at or after ``after``), or None."""
        first: tuple[int, int] | None = None
        for start in self.occurrences(content):
            found = self.span_at(start, len(content))
            if found is None:
                continue
            if found[0] >= after:
                return found
            if first is None:
                first = found
        return first

    def says(self, value: str, span: tuple[int, int] | list[int]) -> bool:
        """Whether the input's characters at ``span`` (input coordinates) are ``value``."""
        start, end = span
        return self.text[start - self.offset : end - self.offset] == value

    def span_at(self, start: int, length: int) -> tuple[int, int] | None:
        """Code point offsets of the ``length`` escaped bytes at ``start``, if they start and
        end at boundaries."""
        first, end = self._index.get(start), self._index.get(start + length)
        if first is None or end is None:
            return None
        return first + self.offset, end + self.offset

    def continuations(self, content: bytes, limit: int) -> Iterator[bytes]:
        """For each place ``content`` occurs, the next ``limit`` bytes of the text."""
        if not content:
            for start in self._index:
                yield self.data[start : start + limit]
            return
        for start in self.occurrences(content):
            end = start + len(content)
            yield self.data[end : end + limit]

    def values(self, kind: Kind) -> SourceText | Readings:
        """What a grounded value of ``kind`` is checked against: this text's spans (``text``),
        or its readings."""
        return self if kind == "text" else self.readings(kind)

    def readings(self, kind: Kind) -> Readings:
        """The values of ``kind`` (``date``, ``number``, ``integer``) the text can be read as,
        with offsets in the input's coordinates (computed once per text)."""
        cache: dict[Kind, Readings] = self.__dict__.setdefault("_readings", {})
        found = cache.get(kind)
        if found is None:
            if kind == "date":
                found = dates(self.text, self.offset)
            else:
                found = numbers(self.text, self.offset, integer=kind == "integer")
            cache[kind] = found
        return found
