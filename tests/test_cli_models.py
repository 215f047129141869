"""`qwenjson pull`, `qwenjson models`, and `extract` pulling a registered model on first use.

Downloads go to the fake hub on 127.0.0.1 (tests/hub_server.py), which serves the real
SmolLM2 GGUF; a user registry (QWENJSON_MODELS_FILE) names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from qwenjson.errors import EXIT_MODEL, EXIT_USAGE
from qwenjson.registry import DEFAULT_MODEL, load_registry
from tests.helpers import Run, qwenjson
from tests.hub_server import COMMIT, FILE, REPO, FakeHub


@pytest.fixture
def user_registry(
    hf_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smol_bytes: bytes, smol_sha: str
) -> Path:
    """A QWENJSON_MODELS_FILE naming the fake hub's SmolLM2 as "smol" (and an unpinned twin)."""
    path = tmp_path / "my-models.toml"
    path.write_text(
        f'["smol"]\nrepo = "{REPO}"\nfile = "{FILE}"\nrevision = "{COMMIT}"\n'
        f'sha256 = "{smol_sha}"\nsize = {len(smol_bytes)}\nquant = "Q4_1"\ncontext = 8192\n'
        'description = "SmolLM2 135M for tests"\n\n'
        f'["smol-unpinned"]\nrepo = "{REPO}"\nfile = "{FILE}"\nsha256 = ""\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(path))
    return path


# -- pull -------------------------------------------------------------------------------------


def test_pull_prints_the_verified_path_and_nothing_else(
    run: Callable[..., Run], user_registry: Path, hf_env: Path, smol_sha: str
) -> None:
    r = run("pull", "smol")
    assert (r.code, r.err) == (0, "")
    path = Path(r.out.removesuffix("\n"))
    assert r.out == f"{path}\n"
    assert path.is_relative_to(hf_env) and path.name == FILE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == smol_sha
    # again: cached, same answer
    assert run("pull", "smol") == r


def test_pull_in_a_pipe_is_silent_on_stderr_even_through_a_resume(
    user_registry: Path, fake_hub: FakeHub, smol_bytes: bytes
) -> None:
    # A cron job: stderr is not a terminal, so no bar, and the dropped connection that
    # huggingface_hub retries with a Range request leaves no log line either.
    fake_hub.drop_after, fake_hub.drops = 25 << 20, 1
    r = _qwenjson("pull", "smol", stdin=b"", env=dict(os.environ))
    assert (r.returncode, r.stderr) == (0, b"")
    assert Path(r.stdout.decode().strip()).read_bytes() == smol_bytes
    assert [g.range is None for g in fake_hub.data_gets()] == [True, False]


def test_pull_unpinned_entry_verifies_against_the_hub_sha(
    run: Callable[..., Run], user_registry: Path, fake_hub: FakeHub, smol_sha: str
) -> None:
    r = run("pull", "smol-unpinned")
    assert r.code == 0, r.err
    assert hashlib.sha256(Path(r.out.strip()).read_bytes()).hexdigest() == smol_sha


def test_pull_offline_without_the_file_fails_with_the_model_exit_code(
    run: Callable[..., Run], user_registry: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = run("pull", "smol")
    assert (r.code, r.out) == (EXIT_MODEL, "")
    assert r.err.startswith("Error: model 'smol' is not downloaded")
    assert "HF_HUB_OFFLINE" in r.err
    assert fake_hub.log == []


def test_pull_wrong_bytes_fails_and_prints_no_path(
    run: Callable[..., Run], user_registry: Path, fake_hub: FakeHub
) -> None:
    fake_hub.corrupt = True
    r = run("pull", "smol")
    assert (r.code, r.out) == (EXIT_MODEL, "")
    assert "checksum mismatch" in r.err


def test_pull_with_a_malformed_hf_endpoint_is_one_clear_error(
    user_registry: Path, fake_hub: FakeHub
) -> None:
    # huggingface_hub parses HF_ENDPOINT when it is imported and prints its own line when it
    # can't: the value is refused before that, as a model error.
    env = dict(os.environ, HF_ENDPOINT="http://[bad")
    r = _qwenjson("pull", "smol", stdin=b"", env=env)
    assert (r.returncode, r.stdout) == (EXIT_MODEL, b"")
    assert r.stderr.decode().splitlines() == [
        "Error: HF_ENDPOINT='http://[bad' is not an http(s) URL of a hub (e.g. "
        "https://huggingface.co or http://127.0.0.1:8080); fix or unset it"
    ]
    assert fake_hub.log == []


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "HF_HUB_DOWNLOAD_TIMEOUT",
            "abc",
            "Error: HF_HUB_DOWNLOAD_TIMEOUT='abc' is not a whole number of seconds (0 or "
            "more); fix or unset it",
        ),
        (
            "HF_HUB_ETAG_TIMEOUT",
            "2.5",
            "Error: HF_HUB_ETAG_TIMEOUT='2.5' is not a whole number of seconds (0 or more); fix "
            "or unset it",
        ),
        (
            "HF_HUB_ETAG_TIMEOUT",
            "-1",
            "Error: HF_HUB_ETAG_TIMEOUT='-1' is not a whole number of seconds (0 or more); fix "
            "or unset it",
        ),
        (
            "HF_TOKEN",
            "hf_é",
            "Error: HF_TOKEN holds a character no HTTP header can carry (only printable ASCII); "
            "copy the token again from the hub's settings page, or unset it",
        ),
    ],
    ids=["download-timeout", "etag-timeout", "negative-timeout", "token"],
)
def test_pull_with_a_setting_huggingface_hub_would_crash_on_is_one_clear_error(
    user_registry: Path, fake_hub: FakeHub, variable: str, value: str, message: str
) -> None:
    # huggingface_hub reads the timeouts as int() when imported (its lazy importer then printed
    # a line on stdout, the junk in `$(qwenjson pull)`), and httpx can't put the token in a
    # header: both were exit 1, "internal error".
    env = dict(os.environ, **{variable: value})
    r = _qwenjson("pull", "smol-unpinned", stdin=b"", env=env)
    assert (r.returncode, r.stdout) == (EXIT_MODEL, b"")
    assert r.stderr.decode().splitlines() == [message]
    assert fake_hub.log == []


def test_pull_of_a_branch_uses_the_verified_copy_when_the_hub_is_down(
    user_registry: Path, fake_hub: FakeHub
) -> None:
    # `qwenjson pull X && qwenjson extract …` in cron: a hub that answers 503 for a minute
    # must not fail a job whose model is here and verified (huggingface_hub does the same).
    first = _qwenjson("pull", "smol-unpinned", stdin=b"", env=dict(os.environ))
    assert first.returncode == 0, first.stderr
    fake_hub.head_status = 503
    again = _qwenjson("pull", "smol-unpinned", stdin=b"", env=dict(os.environ))
    assert (again.returncode, again.stdout) == (0, first.stdout)
    warning = again.stderr.decode()
    assert warning.startswith(f"Warning: could not check for a newer {FILE} (")
    assert "answered HTTP 503" in warning and warning.rstrip().endswith("using the verified copy")
    # Not for an answer that says the file is gone: that is news, not a blip.
    fake_hub.head_status = 404
    gone = _qwenjson("pull", "smol-unpinned", stdin=b"", env=dict(os.environ))
    assert (gone.returncode, gone.stdout) == (EXIT_MODEL, b"")


@pytest.mark.parametrize("name", ["", " "])
def test_pull_of_an_empty_name_is_refused_not_the_default(
    run: Callable[..., Run], user_registry: Path, fake_hub: FakeHub, name: str
) -> None:
    # `qwenjson pull "$MODEL"` with MODEL unset, as `extract --model ""` is refused too.
    r = run("pull", name)
    assert (r.code, r.out) == (EXIT_MODEL, "")
    assert r.err.startswith("Error: the model name is empty")
    assert fake_hub.log == []


def test_pull_unknown_name_suggests_the_closest(run: Callable[..., Run], hf_env: Path) -> None:
    r = run("pull", "qwen2.5-0.5b-instrct")
    assert (r.code, r.out) == (EXIT_MODEL, "")
    assert "did you mean 'qwen2.5-0.5b-instruct'?" in r.err
    for name in load_registry():
        assert name in r.err


def test_pull_refuses_a_local_path(run: Callable[..., Run], hf_env: Path) -> None:
    r = run("pull", "./model.gguf")
    assert (r.code, r.out) == (EXIT_USAGE, "")
    assert "reads as a file path" in r.err


# -- models -----------------------------------------------------------------------------------


def test_models_json_lists_registry_and_download_state(
    run: Callable[..., Run], user_registry: Path, hf_env: Path
) -> None:
    r = run("models", "--json")
    assert (r.code, r.err) == (0, "")
    rows = {row["name"]: row for row in json.loads(r.out)}
    assert set(rows) == set(load_registry())
    assert rows[DEFAULT_MODEL]["default"] is True
    assert rows[DEFAULT_MODEL]["quant"] == "Q4_K_M"
    assert rows["smol"] | {"path": None} == {
        "name": "smol",
        "default": False,
        "quant": "Q4_1",
        "size": rows["smol"]["size"],
        "downloaded": False,
        "partial_bytes": None,
        "path": None,
        "repo": REPO,
        "file": FILE,
        "revision": COMMIT,
        "sha256": rows["smol"]["sha256"],
        "context": 8192,
        "license": None,
        "description": "SmolLM2 135M for tests",
    }
    assert not any(row["downloaded"] for row in rows.values())

    pulled = run("pull", "smol").out.strip()
    rows = {row["name"]: row for row in json.loads(run("models", "--json").out)}
    assert rows["smol"]["downloaded"] is True and rows["smol"]["path"] == pulled
    # The unpinned entry follows "main": pulling the commit-pinned "smol" wrote no refs/main,
    # so which commit main means is unknown offline, and it counts as not downloaded.
    assert rows["smol-unpinned"]["downloaded"] is False


def test_models_table_marks_the_default(
    run: Callable[..., Run], user_registry: Path, hf_env: Path
) -> None:
    r = run("models")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "QUANT", "SIZE", "DOWNLOADED", "DESCRIPTION"]
    default = next(line for line in lines if line.startswith(DEFAULT_MODEL + " "))
    assert default.split()[1:5] == ["*", "Q4_K_M", "491.4", "MB"]
    smol = next(i for i, line in enumerate(lines) if line.startswith("smol "))
    assert lines[smol].split()[1:5] == ["Q4_1", "98.4", "MB", "no"]
    assert lines[smol].endswith("SmolLM2 135M for tests")
    assert str(hf_env) in lines[-1]

    # once downloaded: "yes", and where, on the next line
    path = run("pull", "smol").out.strip()
    lines = run("models").out.splitlines()
    smol = next(i for i, line in enumerate(lines) if line.startswith("smol "))
    assert lines[smol].split()[4] == "yes"
    assert lines[smol + 1].strip() == path


def test_models_shows_an_interrupted_download_and_pull_resumes_it(
    run: Callable[..., Run],
    user_registry: Path,
    hf_env: Path,
    fake_hub: FakeHub,
    smol_bytes: bytes,
    smol_sha: str,
) -> None:
    blobs = hf_env / ("models--" + REPO.replace("/", "--")) / "blobs"
    blobs.mkdir(parents=True)
    part = len(smol_bytes) * 3 // 10 + 1000  # a little over 30%
    (blobs / f"{smol_sha}.incomplete").write_bytes(smol_bytes[:part])
    rows = {row["name"]: row for row in json.loads(run("models", "--json").out)}
    assert (rows["smol"]["downloaded"], rows["smol"]["partial_bytes"]) == (False, part)
    lines = run("models").out.splitlines()
    smol = next(line for line in lines if line.startswith("smol "))
    assert smol.split()[4:6] == ["partly", "(30%)"]

    path = Path(run("pull", "smol").out.strip())
    assert path.read_bytes() == smol_bytes
    assert [g.range for g in fake_hub.data_gets()] == [f"bytes={part}-"]  # resumed, not redone
    rows = {row["name"]: row for row in json.loads(run("models", "--json").out)}
    assert (rows["smol"]["downloaded"], rows["smol"]["partial_bytes"]) == (True, None)


def test_models_with_a_malformed_user_registry_names_file_and_line(
    run: Callable[..., Run], hf_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('["mine"]\nrepo = "a/b"\nfile = "m.gguf"\nsize = "big"\n', encoding="utf-8")
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(bad))
    r = run("models")
    assert (r.code, r.out) == (EXIT_MODEL, "")
    assert r.err.startswith(f"Error: {bad}:4: model 'mine': 'size' must be an integer")


# -- extract pulls on first use ---------------------------------------------------------------


@pytest.mark.model
def test_a_ray_node_loads_the_drivers_registry_entry_not_its_own(
    user_registry: Path,
    fake_hub: FakeHub,
    hf_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    smol_sha: str,
) -> None:
    # A node lacks the driver's QWENJSON_MODELS_FILE (Ray doesn't pass the environment on),
    # or has one naming another file: the name was looked up again there.
    from qwenjson.actors import _load, worker_spec
    from qwenjson.pipeline import ExtractOptions
    from qwenjson.plan import Plan
    from tests.helpers import REAL_PERSON

    spec = worker_spec(Plan(REAL_PERSON, "", 512, ExtractOptions(max_tokens=8)), model="smol")
    other = tmp_path / "node-models.toml"
    other.write_text('["smol"]\nrepo = "nobody/nothing"\nfile = "x.gguf"\nsha256 = ""\n')
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(other))
    runner = _load(spec, "node-1")
    try:
        assert runner.plan.model_sha256 == smol_sha
    finally:
        runner.extractor.generator.close()
    assert all("nobody" not in r.path for r in fake_hub.log)


def _qwenjson(*args: str, stdin: bytes, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return qwenjson(*args, stdin=stdin, env=env, timeout=600)


@pytest.mark.model
def test_extract_pulls_a_registered_model_then_runs_offline(
    user_registry: Path, fake_hub: FakeHub, hf_env: Path, tmp_path: Path
) -> None:
    # A schema the grammar can finish in a few tokens: the point is the download path, and a
    # 135M model on a busy CI machine should not have to write prose.
    schema = {
        "type": "object",
        "properties": {
            "country": {"enum": ["France", "Germany", "Spain"]},
            "kind": {"const": "city"},
        },
        "required": ["country", "kind"],
        "additionalProperties": False,
    }
    schema_file = tmp_path / "city.json"
    schema_file.write_text(json.dumps(schema), encoding="utf-8")
    text = b"Lyon is a city in France with about 520,000 inhabitants."
    env = dict(os.environ)  # the fixtures' HF_ENDPOINT, HF_HOME, QWENJSON_* are in here

    args = ("extract", "--schema", str(schema_file), "--model", "smol", "--max-tokens", "64")
    first = _qwenjson(*args, stdin=text, env=env)
    assert first.returncode == 0, first.stderr.decode()
    document = json.loads(first.stdout)
    jsonschema.Draft202012Validator(schema).validate(document)
    assert first.stdout.decode().count("\n") == 1
    assert len(fake_hub.data_gets()) == 1  # the model came from the hub

    # Second run: offline, with no hub at all; the cached, verified file is used.
    fake_hub.stop()
    second = _qwenjson(*args, "--offline", stdin=text, env=env)
    assert second.returncode == 0, second.stderr.decode()
    assert second.stdout == first.stdout  # greedy: same model, same answer


@pytest.mark.model
def test_extract_offline_with_a_registered_model_not_downloaded_says_how_to_pull(
    user_registry: Path, fake_hub: FakeHub, tmp_path: Path
) -> None:
    schema_file = tmp_path / "s.json"
    schema_file.write_text('{"type":"object"}', encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = _qwenjson("extract", "--schema", str(schema_file), "--model", "smol", stdin=b"x", env=env)
    assert (r.returncode, r.stdout) == (EXIT_MODEL, b"")
    assert b"qwenjson pull smol" in r.stderr
    assert fake_hub.log == []


@pytest.mark.parametrize("command", ["pull", "models"])
def test_help_has_an_example(run: Callable[..., Run], command: str) -> None:
    r = run(command, "--help")
    assert r.code == 0
    assert f"Example: qwenjson {command}" in r.out


def test_an_interrupted_download_of_a_model_without_a_size_shows_as_partly() -> None:
    from qwenjson.cli import _downloaded_cell
    from qwenjson.hub import format_size

    row = {"downloaded": False, "partial_bytes": 31_457_280, "size": None}
    assert _downloaded_cell(row) == f"partly ({format_size(31_457_280)})"
    assert _downloaded_cell({**row, "partial_bytes": None}) == "no"


def test_pull_of_a_file_that_is_no_model_is_the_model_exit_code(
    run: Callable[..., Run], hf_env: Path, fake_hub: FakeHub
) -> None:
    # It printed the path, exit 0, and `llama-cli -m "$(qwenjson pull hf:…)"` failed there.
    fake_hub.add_file(REPO, "notes.gguf", b"not a model at all")
    r = run("pull", f"hf:{REPO}/notes.gguf")
    assert (r.code, r.out) == (EXIT_MODEL, "")
    assert r.err.startswith("Error: ") and "GGUF" in r.err


def test_a_cache_under_a_name_that_is_not_utf8_prints_its_path_as_the_os_gave_it(
    user_registry: Path, fake_hub: FakeHub, tmp_path: Path, smol_bytes: bytes
) -> None:
    # A directory named in Latin-1 (b"caf\xe9"): pull downloaded and verified, then failed to
    # print the path (UnicodeEncodeError, exit 1), and so did `models`.
    home = os.fsdecode(bytes(tmp_path) + b"/caf\xe9")
    env = dict(os.environ, HF_HOME=home)
    r = _qwenjson("pull", "smol", stdin=b"", env=env)
    assert (r.returncode, r.stderr) == (0, b"")
    path = r.stdout.removesuffix(b"\n")
    assert b"/caf\xe9/" in path and Path(os.fsdecode(path)).read_bytes() == smol_bytes
    table = _qwenjson("models", stdin=b"", env=env)
    assert (table.returncode, table.stderr) == (0, b"")
    assert b"    " + path + b"\n" in table.stdout
    listed = _qwenjson("models", "--json", stdin=b"", env=env)
    assert (listed.returncode, listed.stderr) == (0, b"")
    row = next(r for r in json.loads(listed.stdout.decode("utf-8")) if r["name"] == "smol")
    assert os.fsencode(row["path"]) == path
