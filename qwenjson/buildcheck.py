"""Spot a llama-cpp-python build known to crash on this CPU, before it crashes.

A default `pip install llama-cpp-python` compiles llama.cpp with -march=native. On Intel Xeons
with AMX (Sapphire Rapids and later, common in cloud VMs) that turns on the AMX matmul path,
and the first llama_decode dies with SIGSEGV in ggml_backend_amx_mul_mat
(ggml-org/llama.cpp#20824). A segfault gives the user nothing to go on, so say it first.
"""

from __future__ import annotations

import platform

REBUILD = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON '
    '-DGGML_BMI2=ON" pip install --force-reinstall --no-cache-dir llama-cpp-python==0.3.36'
)


def amx_warning(system_info: str | None = None) -> str | None:
    """A warning when this llama.cpp build uses AMX on x86 (crash-prone), else None."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    if system_info is None:
        import llama_cpp

        system_info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    if "AMX" not in system_info.upper():
        return None
    return (
        "this llama-cpp-python build uses Intel AMX, which crashes llama.cpp on many cloud "
        f"Xeons (ggml-org/llama.cpp#20824). If qwenjson dies with a segfault, rebuild: {REBUILD}"
    )
