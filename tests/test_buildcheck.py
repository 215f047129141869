from __future__ import annotations

import platform
from pathlib import Path

import pytest

from qwenjson.buildcheck import amx_warning, load_llama, model_params, use_extra_buffers

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


# One thread for prompts too: Llama's default (every core) crawls when another process holds one.
SMALL = {"n_ctx": 256, "n_threads": 1, "n_threads_batch": 1, "verbose": False}


def _complete(llm: object, prompt: str = "The capital of France is") -> str:
    out = llm.create_completion(prompt, max_tokens=4, temperature=0)  # type: ignore[attr-defined]
    return str(out["choices"][0]["text"])


@pytest.mark.model
def test_load_llama_gives_llama_cpp_pythons_own_llama_loaded_as_the_engine_loads(
    smollm2: Path,
) -> None:
    import llama_cpp
    import llama_cpp.llama_cpp as ll

    original = ll.llama_model_default_params
    plain = llama_cpp.Llama(str(smollm2), **SMALL)
    llm = load_llama(smollm2, **SMALL)
    assert isinstance(llm, llama_cpp.Llama)
    assert bool(llm.model_params.use_extra_bufts) is use_extra_buffers()
    assert bool(model_params().use_extra_bufts) is use_extra_buffers()  # the engine's
    tokens = llm.tokenize(b"Hello, world")
    assert tokens == plain.tokenize(b"Hello, world")
    assert llm.detokenize(tokens).strip() == b"Hello, world"
    # The way an AMX build gets it, here too: the model decodes, and the defaults are put back.
    safe = load_llama(smollm2, extra_buffers=False, **SMALL)
    assert bool(safe.model_params.use_extra_bufts) is False
    assert "Paris" in _complete(safe)
    # On a portable build (the project's venv) it is plain llama-cpp-python: the same greedy
    # tokens. (A plain Llama would crash decoding on an AMX build: tests/test_native_build.py.)
    text = _complete(llm)
    assert "Paris" in text and text == _complete(plain if use_extra_buffers() else safe)
    assert ll.llama_model_default_params is original
    assert bool(ll.llama_model_default_params().use_extra_bufts) is True
    for model in (plain, llm, safe):
        model.close()
