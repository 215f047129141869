"""Pure helpers of the engine: no model needed."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwenjson.engine import default_threads
from qwenjson.kvcache import default_cache_dir
from qwenjson.utf8 import REPRESENTATIVE as _REPRESENTATIVE
from qwenjson.utf8 import characters, other_cases
from qwenjson.utf8 import utf8_prefix as _utf8_prefix


@pytest.mark.parametrize(
    ("data", "kept"),
    [
        (b"", b""),
        (b"abc", b"abc"),
        ("读书".encode(), "读书".encode()),
        ("读书".encode()[:-1], "读".encode()),
        ("读书".encode()[:-2], "读".encode()),
        ("a😀".encode()[:-1], b"a"),
        ("a😀".encode(), "a😀".encode()),
        ("é".encode()[:1], b""),
    ],
)
def test_utf8_prefix_drops_only_an_incomplete_last_character(data: bytes, kept: bytes) -> None:
    assert _utf8_prefix(data) == kept
    kept.decode("utf-8")


def test_every_utf8_lead_byte_has_a_representative_character() -> None:
    leads = [*range(1, 0x80), *range(0xC2, 0xF5)]
    assert sorted(_REPRESENTATIVE) == leads
    for lead, char in _REPRESENTATIVE.items():
        assert char[0] == lead
        assert len(char.decode("utf-8")) == 1


def test_default_threads_use_the_cores_we_may_run_on() -> None:
    cores = len(os.sched_getaffinity(0))
    decode, batch = default_threads()
    assert batch == cores
    assert 1 <= decode <= batch
    if cores <= 4:
        assert decode == cores


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert str(default_cache_dir()) == "/somewhere/qwenjson/kv"


@given(st.binary(max_size=24) | st.text(max_size=8).map(str.encode))
def test_characters_cut_a_piece_into_whole_characters_and_stray_bytes(piece: bytes) -> None:
    chars = characters(piece)
    assert b"".join(chars) == piece
    for char in chars:
        if len(char) > 1:
            assert len(char.decode("utf-8")) == 1  # multi-byte only when it is one character


def test_other_cases_are_single_characters() -> None:
    assert other_cases(b"a") == [b"A"]
    assert other_cases("É".encode()) == ["é".encode()]
    assert other_cases("ß".encode()) == []  # upper case "SS" is two
    assert other_cases("中".encode()) == [] and other_cases(b"\xe4") == []
