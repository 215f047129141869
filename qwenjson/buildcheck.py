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

Every model that decodes is loaded through here, so that this one place decides: the engine
with ``model_params()``, scripts that measure llama-cpp-python's own ``Llama`` (the baselines of
bench.py, quality.py, seed_wall_time.py) with ``load_llama()``.
"""

from __future__ import annotations

import platform
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_cpp import Llama

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


def model_params(extra_buffers: bool | None = None) -> Any:
    """llama.cpp's default ``llama_model_params`` with ``use_extra_bufts`` as this build needs
    (``use_extra_buffers()``), or as ``extra_buffers`` says."""
    import llama_cpp.llama_cpp as ll

    return _with_extra_buffers(ll.llama_model_default_params(), extra_buffers)


def _with_extra_buffers(params: Any, extra_buffers: bool | None) -> Any:
    params.use_extra_bufts = use_extra_buffers() if extra_buffers is None else extra_buffers
    return params


# Held while ``Llama`` is built with our defaults in place (see load_llama).
_defaults_lock = threading.Lock()


def load_llama(
    model_path: str | Path, *, extra_buffers: bool | None = None, **kwargs: Any
) -> Llama:
    """llama-cpp-python's ``Llama(model_path, **kwargs)``, its model loaded as ``model_params``
    says: unchanged on a portable build, without the extra buffer types on an AMX build.

    ``Llama`` takes no argument for it (0.3.36): its ``__init__`` starts from
    ``llama_model_default_params()``, so those defaults are ours while it runs, and the model's
    parameters are checked afterwards (a later llama-cpp-python that builds them otherwise is
    an error here, not a crash in the first decode).
    """
    import llama_cpp
    import llama_cpp.llama_cpp as ll

    wanted = use_extra_buffers() if extra_buffers is None else extra_buffers
    default = ll.llama_model_default_params
    with _defaults_lock:
        ll.llama_model_default_params = lambda: _with_extra_buffers(default(), wanted)
        try:
            llm = llama_cpp.Llama(str(model_path), **kwargs)
        finally:
            ll.llama_model_default_params = default
    if bool(llm.model_params.use_extra_bufts) != wanted:
        llm.close()
        raise RuntimeError(
            "llama-cpp-python no longer takes its model parameters from "
            "llama_model_default_params(): qwenjson.buildcheck.load_llama needs updating"
        )
    return llm


def amx_warning(system_info: str | None = None) -> str | None:
    """A note when this llama.cpp build uses AMX on x86 (models loaded the safe way), else None."""
    if not build_uses_amx(system_info):
        return None
    return (
        "this llama-cpp-python build uses Intel AMX, which crashes llama.cpp on many cloud "
        "Xeons (ggml-org/llama.cpp#20824), so qwenjson loads the model without llama.cpp's "
        f"extra buffer types (AMX and weight repacking). A portable build needs neither: {REBUILD}"
    )
