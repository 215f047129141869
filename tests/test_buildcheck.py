from __future__ import annotations

import platform

import pytest

from qwenjson.buildcheck import amx_warning, use_extra_buffers

X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.skipif(not X86, reason="the AMX check applies to x86 only")
def test_warns_for_an_amx_build() -> None:
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AMX_INT8 = 1 | AVX512 = 1 |"
    message = amx_warning(info)
    assert message is not None and "GGML_NATIVE=OFF" in message and "#20824" in message


def test_quiet_for_a_portable_build() -> None:
    assert amx_warning("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | FMA = 1 | BMI2 = 1 |") is None


@pytest.mark.skipif(not X86, reason="the AMX check applies to x86 only")
def test_extra_buffer_types_are_off_only_for_an_amx_build() -> None:
    assert use_extra_buffers("CPU : AVX = 1 | AVX2 = 1 | AMX_INT8 = 1 | AVX512 = 1 |") is False
    assert use_extra_buffers("CPU : AVX = 1 | AVX2 = 1 | FMA = 1 | REPACK = 1 |") is True


def test_the_installed_build_is_not_amx() -> None:
    # The project's own setup builds llama.cpp portably (scripts/setup-dev.sh); if this fails,
    # the venv holds a native build, which runs slower here (and .venv-native is the one that
    # tests it: tests/test_native_build.py).
    assert amx_warning() is None
