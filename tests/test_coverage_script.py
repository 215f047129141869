"""scripts/coverage.py on a tiny corpus and a tiny test suite: its tables count what they claim."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "coverage.py"


@pytest.fixture(scope="module")
def coverage() -> ModuleType:
    return load_script(SCRIPT)


def _row(out: str, name: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.startswith(name + " "))


def test_corpus_table(
    coverage: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subset = tmp_path / "Tiny"
    subset.mkdir()
    (subset / "a.json").write_text('{"type": "string"}')
    (subset / "b.json.gz").write_bytes(gzip.compress(b'{"type": "integer", "minimum": 3}'))
    (subset / "c.json").write_text("false")  # unsatisfiable: refused
    (subset / "notes.txt").write_text("not a schema file")
    assert coverage.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # subset, schemas, compiled, %, +valid., refused, unparsable, crashes, p50, p99
    assert _row(out, "Tiny")[:8] == ["Tiny", "3", "2", "66.7%", "0", "1", "0", "0"]
    assert _row(out, "TOTAL")[1:3] == ["3", "2"]

    (subset / "d.json").write_text("{not json")
    assert coverage.main([str(tmp_path)]) == 1  # an unreadable file is counted as a crash
    assert _row(capsys.readouterr().out, "Tiny")[7] == "1"


def test_suite_table(
    coverage: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "draft2020-12"
    draft.mkdir()
    group = {
        "description": "integers",
        "schema": {"type": "integer"},
        "tests": [
            {"description": "int", "data": 1, "valid": True},
            {"description": "float with zero fraction", "data": 2.0, "valid": True},
            {"description": "string", "data": "1", "valid": False},
        ],
    }
    refused = {"description": "nothing", "schema": False, "tests": []}
    (draft / "type.json").write_text(json.dumps([group, refused]))
    assert coverage.main(["--test-suite", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # file, groups, compiled, refused, valid ok, invalid ok, (by valid.), failed
    assert _row(out, "draft2020-12/type") == [
        "draft2020-12/type",
        "2",
        "1",
        "1",
        "2/2",
        "1/1",
        "0",
        "0",
    ]
