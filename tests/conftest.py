"""Shared fixtures. Keep this small and additive: several test modules rely on it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.grammar_engine import GrammarEngine

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
