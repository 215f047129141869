"""UTF-8 boundaries: where a character ends (forced text), one character per lead byte, a
piece cut into characters and a character's other cases (grounded values respelled); and what
is wrong with a command-line argument, or input bytes, that aren't UTF-8."""

from __future__ import annotations

import codecs
import re

__all__ = [
    "REPRESENTATIVE",
    "bad_byte",
    "characters",
    "not_utf8",
    "other_cases",
    "utf8_prefix",
]


def _size(lead: int) -> int:
    """The length of the UTF-8 character a lead byte starts (1 for ASCII, and for a byte that
    can't lead: a continuation byte standing alone)."""
    return 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


def utf8_prefix(data: bytes) -> bytes:
    """``data`` without an incomplete UTF-8 character at its end."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: keep looking for the lead
        return data if back >= _size(byte) else data[: end - back]
    return data


def _representatives() -> dict[int, bytes]:
    """For each byte that can start a UTF-8 character, one character starting with it."""
    table = {b: bytes([b]) for b in range(1, 0x80)}
    for lead in range(0xC2, 0xF5):
        for second in (0x80, 0x90, 0xA0, 0xB8):
            candidate = bytes([lead, second]) + b"\x80" * (_size(lead) - 2)
            try:
                candidate.decode("utf-8")
            except UnicodeDecodeError:
                continue
            table[lead] = candidate
            break
    return table


# Stands for "any character starting with this byte" when a token boundary is judged
# (``forced.ForcedText.stable_end``).
REPRESENTATIVE = _representatives()


def characters(piece: bytes) -> list[bytes]:
    """``piece`` cut into UTF-8 characters (a byte that doesn't decode stands alone: a token
    may end inside a character)."""
    out: list[bytes] = []
    i = 0
    while i < len(piece):
        char = piece[i : i + _size(piece[i])]
        try:
            char.decode("utf-8")
        except UnicodeDecodeError:
            char = piece[i : i + 1]
        out.append(char)
        i += len(char)
    return out


def other_cases(char: bytes) -> list[bytes]:
    """The other cases of one UTF-8 character that are one character too (``İ`` lowers to two)."""
    try:
        c = char.decode("utf-8")
    except UnicodeDecodeError:
        return []
    others = dict.fromkeys((c.lower(), c.upper()))
    return [v.encode("utf-8") for v in others if v != c and len(v) == 1]


def bad_byte(data: bytes, *, bom: bool = False) -> str | None:
    """Where ``data`` isn't UTF-8, said for a user ("invalid byte 0xff at offset 5", offsets
    counted in ``data`` as given, a BOM included), or None. ``bom``: a leading UTF-8 BOM is
    allowed (the caller drops it when decoding)."""
    body = data[len(codecs.BOM_UTF8) :] if bom and data.startswith(codecs.BOM_UTF8) else data
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"invalid byte 0x{body[e.start]:02x} at offset {e.start + len(data) - len(body)}"
    return None


def not_utf8(text: str) -> str | None:
    """Where ``text`` can't be written as UTF-8, said for a user ("byte 0xff at byte 6"), or
    None. Bytes of a command line that aren't UTF-8 reach Python as lone surrogates U+DC80 to
    U+DCFF (``surrogateescape``): the byte is named, at its offset among the argument's bytes.
    Any other surrogate (in a library caller's string) is named as one."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    i = found.start()
    code = ord(text[i])
    at = len(text[:i].encode("utf-8"))
    if 0xDC80 <= code <= 0xDCFF:
        return f"byte 0x{code & 0xFF:02x} at byte {at}"
    return f"a surrogate code point U+{code:04X} at byte {at}"


# The one thing UTF-8 can't write. A search in C: every text is asked once or twice before
# the model reads it (the runner, then the extractor), and a loop over its characters took
# 0.65 s for 10 MB of text, this 0.06 s (with no copy, as encoding to find out would make).
_SURROGATE = re.compile("[\ud800-\udfff]")
