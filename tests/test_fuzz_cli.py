"""Property-based fuzzing of the command line (a bounded run; scripts/fuzz_cli.py runs longer).

Random schemas (JSON with NaN, huge numbers, duplicate keys, deep nesting; concise; garbage),
random inputs and JSONL records (NaN, 1e400, 5000 digits, lone surrogates, non-objects, bytes
that aren't UTF-8) and random option combinations, on the real SmolLM2 model: never an internal
error, always a documented exit code, stdout empty or strict JSON that validates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz_cli import Case, SharedModel, cases, problems, run_case

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def model(smollm2: Path) -> Iterator[SharedModel]:
    shared = SharedModel(smollm2)
    yield shared
    shared.discard()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_fuzz_the_command_line(model: SharedModel, workdir: Path) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,  # the same cases on every run of the suite
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(cases(workdir))
    def check(case: Case) -> None:
        outcome = run_case(case, workdir, model)
        assert not problems(case, outcome), (case, outcome.code, outcome.err, outcome.crash)

    check()
