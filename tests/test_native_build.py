"""qwenjson on whatever llama-cpp-python build is installed, and on a native AMX build.

A plain `pip install .` on a cloud Xeon with AMX builds llama.cpp natively, and a model loaded
the default way dies with SIGSEGV in the first decode (ggml-org/llama.cpp#20824). qwenjson then
loads models without llama.cpp's extra buffer types (qwenjson/buildcheck.py).

The first test runs on the build installed where pytest runs: the project's .venv (portable:
extra buffer types stay on) and, through the second test, .venv-native, which
scripts/setup-dev.sh makes on CPUs with AMX from a natively built wheel: there the build must
report AMX, a default load must crash (else this proves nothing), and qwenjson must choose the
load that decodes, in its engine and through the command, and so must the scripts that measure
llama-cpp-python's own ``Llama`` (bench.py, quality.py, seed_wall_time.py: ``load_llama``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qwenjson.buildcheck import build_uses_amx, use_extra_buffers
from qwenjson.engine import Engine
from tests.conftest import load_script
from tests.grammar_engine import GrammarEngine
from tests.helpers import PERSON_GRAMMAR, PERSON_MESSAGES

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
NATIVE_VENV = ROOT / ".venv-native"


def cpu_has_amx() -> bool:
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def test_the_installed_build_decodes(smollm2: Path) -> None:
    with Engine(smollm2, n_ctx=512, n_threads=1) as e:
        assert e.extra_buffers is use_extra_buffers() is (not build_uses_amx())
        result = e.generate(PERSON_MESSAGES, PERSON_GRAMMAR, max_tokens=80)
    assert result.finish_reason == "stop"
    assert GrammarEngine(smollm2).accepts(PERSON_GRAMMAR, result.text)
    assert json.loads(result.text)["name"] == "Li Ming"


# A default load (extra buffer types on) and one decode, in the native venv.
DEFAULT_LOAD = """
import sys
import llama_cpp.llama_cpp as ll
ll.llama_backend_init()
model = ll.llama_model_load_from_file(sys.argv[1].encode(), ll.llama_model_default_params())
ctx = ll.llama_init_from_model(model, ll.llama_context_default_params())
vocab = ll.llama_model_get_vocab(model)
tokens = (ll.llama_token * 2)(ll.llama_vocab_bos(vocab), ll.llama_vocab_bos(vocab))
print("decode:", ll.llama_decode(ctx, ll.llama_batch_get_one(tokens, 2)), flush=True)
"""


def native(
    *args: str, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The native venv's python with ``args``, in the repository (its qwenjson is this one)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(NATIVE_VENV / "bin" / "python"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform != "linux" or not cpu_has_amx(), reason="this CPU has no AMX: no crash to avoid"
)
def test_a_native_amx_build_crashes_by_default_and_qwenjson_avoids_it(smollm2: Path) -> None:
    if not (NATIVE_VENV / "bin" / "python").exists():
        pytest.skip(f"no {NATIVE_VENV} (scripts/setup-dev.sh makes it on CPUs with AMX)")
    crash = native("-c", DEFAULT_LOAD, str(smollm2))
    assert crash.returncode == -signal.SIGSEGV, (crash.returncode, crash.stdout, crash.stderr)
    # The engine's choice there, on a build that reports AMX: the test above, called in the
    # native venv (without pytest's start-up, which costs more than the test).
    check = (
        "from pathlib import Path; from qwenjson.buildcheck import build_uses_amx; "
        "from tests.test_native_build import test_the_installed_build_decodes as t; "
        f"t(Path({str(smollm2)!r})); print(build_uses_amx())"
    )
    r = native("-c", check)
    assert (r.returncode, r.stdout.strip()) == (0, "True"), r.stderr[-3000:]
    # And the command, as a user who ran the README's install line would.
    schema = '{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}'
    args = ("-m", "qwenjson", "extract", "-s", schema, "-m", str(smollm2), "--threads", "1")
    r = native(*args, stdin="My name is Ada Lovelace.")
    assert r.returncode == 0, r.stderr
    assert "ggml-org/llama.cpp#20824" in r.stderr  # the note that a portable build is faster
    assert isinstance(json.loads(r.stdout)["name"], str)


# The model loaded as a script loads it, then a few greedy tokens: argv model, which loader.
SCRIPT_LOAD = """
import sys
from pathlib import Path
from tests.conftest import load_script
model, loader = sys.argv[1], sys.argv[2]
if loader == "bench":  # bench.py's side (a), llama-cpp-python's own path
    llm = load_script(Path("scripts/bench.py")).SideA(model, 1, 1, 512).llm
elif loader == "quality":  # quality.py's anchor
    llm = load_script(Path("scripts/quality.py")).Anchor(Path(model), 1).llm
else:  # a plain Llama, as those scripts loaded it before
    from llama_cpp import Llama
    llm = Llama(model, n_ctx=512, n_threads=1, verbose=False)
out = llm.create_completion("The capital of France is", max_tokens=4, temperature=0)
print(llm.model_params.use_extra_bufts, out["choices"][0]["text"].strip())
"""


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform != "linux" or not cpu_has_amx(), reason="this CPU has no AMX: no crash to avoid"
)
def test_the_scripts_baselines_load_the_model_so_a_native_amx_build_decodes(
    smollm2: Path, tmp_path: Path
) -> None:
    if not (NATIVE_VENV / "bin" / "python").exists():
        pytest.skip(f"no {NATIVE_VENV} (scripts/setup-dev.sh makes it on CPUs with AMX)")
    crash = native("-c", SCRIPT_LOAD, str(smollm2), "plain")
    assert crash.returncode == -signal.SIGSEGV, (crash.returncode, crash.stdout, crash.stderr)
    for loader in ("bench", "quality"):
        r = native("-c", SCRIPT_LOAD, str(smollm2), loader)
        assert (r.returncode, r.stdout.strip()) == (0, "False Paris."), (loader, r.stderr[-3000:])
    # seed_wall_time.py's baseline is a `python -c` program of its own: run as it runs it.
    seed = load_script(ROOT / "scripts" / "seed_wall_time.py")
    schema = tmp_path / "schema.json"
    schema.write_text(
        '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
    )
    text = tmp_path / "input.txt"
    text.write_text("I live in Paris.")
    r = native("-c", seed.LLAMA_CPP_PYTHON, str(smollm2), str(schema), str(text), "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert isinstance(json.loads(r.stdout)["city"], str)
