"""UTF-8 boundaries for forced text: where a character ends, and one character per lead byte."""

from __future__ import annotations

__all__ = ["REPRESENTATIVE", "utf8_prefix"]


def utf8_prefix(data: bytes) -> bytes:
    """``data`` without an incomplete UTF-8 character at its end."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: keep looking for the lead
        need = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
        return data if back >= need else data[: end - back]
    return data


def _representatives() -> dict[int, bytes]:
    """For each byte that can start a UTF-8 character, one character starting with it."""
    table = {b: bytes([b]) for b in range(1, 0x80)}
    for lead in range(0xC2, 0xF5):
        for second in (0x80, 0x90, 0xA0, 0xB8):
            size = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
            candidate = bytes([lead, second]) + b"\x80" * (size - 2)
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
