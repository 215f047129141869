"""Keep a llama-cpp-python build that would crash on this CPU from crashing.

A default `pip install llama-cpp-python` compiles llama.cpp with -march=native. On Intel Xeons
with AMX (Sapphire Rapids and later, common in cloud VMs) that turns on the AMX matmul path,
and the first llama_decode dies with SIGSEGV in ggml_backend_amx_mul_mat
(ggml-org/llama.cpp#20824). The AMX matmul lives in llama.cpp's "extra buffer types" (the
weights are repacked into them at load): a model loaded with
``llama_model_params.use_extra_bufts = false`` never reaches it and decodes correctly on the
same build (tests/test_native_build.py proves both on a native build). So on a build that
reports AMX, models are loaded that way, and the user is told how to build portably (the cost:
README, "Install and run", measured with scripts/bench_amx.py).
"""

from __future__ import annotations

import platform

REBUILD = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON '
    '-DGGML_BMI2=ON" pip install --force-reinstall --no-cache-dir llama-cpp-python==0.3.36'
)


def build_uses_amx(system_info: str | None = None) -> bool:
    """Whether this llama.cpp build (its ``llama_print_system_info``) uses AMX on x86."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if system_info is None:
        import llama_cpp

        system_info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    return "AMX" in system_info.upper()


def use_extra_buffers(system_info: str | None = None) -> bool:
    """The ``use_extra_bufts`` to load models with: off on an AMX build (the crash), else on
    (llama.cpp's default, with its weight repacking)."""
    return not build_uses_amx(system_info)


def amx_warning(system_info: str | None = None) -> str | None:
    """A note when this llama.cpp build uses AMX on x86 (models loaded the safe way), else None."""
    if not build_uses_amx(system_info):
        return None
    return (
        "this llama-cpp-python build uses Intel AMX, which crashes llama.cpp on many cloud "
        "Xeons (ggml-org/llama.cpp#20824), so qwenjson loads the model without llama.cpp's "
        f"extra buffer types (AMX and weight repacking). A portable build needs neither: {REBUILD}"
    )
