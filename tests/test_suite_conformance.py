"""The official JSON-Schema-Test-Suite, judged by llama.cpp's own grammar engine.

For every test group whose schema compiles: each valid instance, in canonical form, is accepted
by the grammar; each invalid instance is rejected by the grammar, or by validation after
generation when the compiler says validation is needed. A group the compiler refuses counts as
refused, not failed, but the refusal must be a clean ``SchemaError``. Remote ``$ref``s
(``remotes/``) are never fetched: those groups must be refused. qwenjson asserts ``format``, so
the strings draft2020-12/format.json calls valid only because ``format`` is an annotation by
default are judged as invalid (see ``run_group``).

Only the top-level keyword files of draft2020-12 and draft7 are asserted here; ``optional/``
(format assertion, ECMA-262 regex details, bignums) is reported, not asserted, by
``scripts/coverage.py --test-suite DIR``, which prints all of it as a table per keyword file.
"""

from __future__ import annotations

import pytest

from tests.conftest import SHARED_DIR
from tests.grammar_engine import GrammarEngine, SuiteGroup, load_suite, run_group

SUITE_DIR = SHARED_DIR / "corpus" / "json-schema-test-suite"

if SUITE_DIR.is_dir():
    GROUPS = [pytest.param(g, id=g.id) for g in load_suite(SUITE_DIR)]
else:
    GROUPS = [pytest.param(None, marks=pytest.mark.skip(reason=f"needs {SUITE_DIR}"))]


@pytest.mark.corpus
@pytest.mark.parametrize("group", GROUPS)
def test_group(group: SuiteGroup, grammar_engine: GrammarEngine) -> None:
    result = run_group(group, grammar_engine)
    assert result.status in ("compiled", "refused"), f"{result.status}: {result.detail}"
    if result.status == "refused":
        assert result.detail, "a refusal must say why"
    if group.file == "refRemote":
        assert result.status == "refused", "a remote $ref must be refused, never fetched"
    assert result.failures == [], "\n".join(result.failures)
