"""Every valid document, written in canonical form, is accepted: MaskBench's valid instances.

MaskBench (guidance-ai/jsonschemabench, ``maskbench/data``) gives valid instances for the
schemas of ``../shared/corpus/jsonschemabench``. Judged on llama.cpp's grammar engine: each one
qwenjson's validator accepts must be accepted, in canonical form, by the exact grammar, and,
when it has no key the extract profile leaves out, by that profile too (``run_bench``).

- ``QWENJSON_MASKBENCH=/path/to/maskbench/data`` runs that over the whole corpus (about 9 min
  on 2 cores); without it that test is skipped.
- CI has no network, and MaskBench's data is not ours to copy in (its repository states no
  licence): the causes of the refusals it showed are kept as schemas of our own in
  ``tests/test_compiler.py`` (rule names) and ``tests/test_grammar_engine.py`` (key order).
- ``scripts/maskbench.py`` prints the figures per subset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qwenjson.validate import make_validator
from tests.conftest import SHARED_DIR, load_script
from tests.grammar_engine import (
    BenchSchema,
    GrammarEngine,
    bench_id,
    closed_copy,
    load_bench,
    maskbench_files,
    run_bench,
)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "maskbench.py"


@pytest.fixture(scope="module")
def maskbench_script() -> ModuleType:
    return load_script(SCRIPT)


def _bench_file(data: Path, name: str, schema: Any, valid: list[Any]) -> None:
    tests = [{"description": "d", "valid": True, "data": v} for v in valid]
    tests.append({"description": "bad", "valid": False, "data": "not an object"})
    (data / name).write_text(json.dumps({"schema": schema, "tests": tests}))


def test_script_counts_per_subset(
    maskbench_script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus, data = tmp_path / "corpus", tmp_path / "data"
    (corpus / "Tiny").mkdir(parents=True)
    data.mkdir()
    schema = {"type": "object", "properties": {"b": {"type": "integer"}, "a": {}}}
    (corpus / "Tiny" / "s.json").write_text(json.dumps(schema))
    (corpus / "Tiny" / "f.json").write_text("false")  # refused: not counted as compiled
    # Two valid instances; the second has an undeclared key, so the extract profile skips it;
    # "x" is valid for MaskBench, not for the validator.
    _bench_file(data, "Tiny---s.json", schema, [{"a": 1, "b": 2}, {"c": 0}, {"b": "x"}])
    _bench_file(data, "Tiny---f.json", False, [])
    _bench_file(data, "Elsewhere---s.json", schema, [{"b": "refused, were it judged"}])
    status = maskbench_script.main([str(data), "--corpus", str(corpus)])
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.startswith("Tiny "))
    # subset, schemas, compiled, valid, not-valid, unrepr., exact, refused, extract, refused
    assert row == ["Tiny", "2", "1", "3", "1", "0", "2", "0", "1", "0"]
    assert status == 0


class _RefusingEngine(GrammarEngine):
    """llama.cpp's engine, except that every text is refused."""

    def accepts(self, gbnf: str, text: str) -> bool:
        return False


def test_a_refused_instance_is_reported(grammar_engine: GrammarEngine) -> None:
    refusing = _RefusingEngine()
    bench = BenchSchema("Tiny", "s.json", {"type": "integer"}, (1,), True)
    result = run_bench(bench, refusing)
    assert (result.refused, result.extract_refused) == (1, 1)
    assert result.failures == ["Tiny/s #0 (exact): 1", "Tiny/s #0 (extract): 1"]


def test_closed_copy_closes_what_the_extract_profile_closes() -> None:
    schema = {
        "$defs": {"kept": {"x-group": {"properties": {"a": {}}}}},
        "properties": {"p": {"$ref": "#/$defs/kept/x-group"}, "q": {"enum": [{"properties": {}}]}},
        "required": ["r"],
        "not": {"properties": {"n": {}}, "required": ["n"]},
    }
    closed = closed_copy(schema)
    assert list(closed["properties"]) == ["p", "q"]  # the order canonical_json follows
    assert closed["additionalProperties"] is False
    assert closed["patternProperties"] == {"^r$": True}
    # Under an unknown keyword, since a $ref may point there; not inside `not` or data.
    assert closed["$defs"]["kept"]["x-group"]["additionalProperties"] is False
    assert "additionalProperties" not in closed["not"]
    assert closed["properties"]["q"] == {"enum": [{"properties": {}}]}
    validator = make_validator(closed)
    assert validator.is_valid({"p": {"a": 1}, "r": 2})
    assert not validator.is_valid({"p": {"a": 1}, "r": 2, "s": 3})
    assert not validator.is_valid({"p": {"b": 1}, "r": 2})


def test_the_extract_profile_is_asked_in_the_order_of_the_branch_it_takes(
    grammar_engine: GrammarEngine,
) -> None:
    # {a, t, e} matches the open first branch (e undeclared there) and so is ordered by it for
    # the exact grammar; closed, only the second branch takes it (Github_hard o10495).
    branches = [{"properties": {"a": {}, "t": {}}}, {"properties": {"e": {}, "a": {}, "t": {}}}]
    bench = BenchSchema("Tiny", "s.json", {"anyOf": branches}, ({"a": 1, "t": 2, "e": 3},), True)
    result = run_bench(bench, grammar_engine)
    assert (result.checked, result.extract_checked) == (1, 1)
    assert result.failures == []


# -- the property on the corpus -------------------------------------------------------------------

CORPUS = SHARED_DIR / "corpus" / "jsonschemabench"


def _maskbench_params() -> list[Any]:
    data = os.environ.get("QWENJSON_MASKBENCH")
    why = None
    if not data:
        why = "set QWENJSON_MASKBENCH to MaskBench's maskbench/data directory to run this"
    elif not Path(data).is_dir() or not CORPUS.is_dir():
        why = f"needs {data} and {CORPUS}"
    if why is not None:
        return [pytest.param(None, marks=pytest.mark.skip(reason=why))]
    return [pytest.param(p, id=bench_id(p)) for p in maskbench_files(Path(data), CORPUS)]


@pytest.mark.corpus
@pytest.mark.parametrize("bench_file", _maskbench_params())
def test_every_valid_instance_is_accepted(bench_file: Path, grammar_engine: GrammarEngine) -> None:
    result = run_bench(load_bench(bench_file, CORPUS), grammar_engine)
    assert result.status in ("compiled", "refused"), f"{result.status}: {result.detail}"
    assert result.failures == [], "\n".join(f[:300] for f in result.failures)
