"""The model registry: the built-in models.toml, user registries, and name resolution."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from qwenjson.errors import EXIT_MODEL, ModelError
from qwenjson.registry import (
    DEFAULT_MODEL,
    ModelSpec,
    builtin_registry_text,
    closest_name,
    load_registry,
    parse_registry,
    resolve_model,
)

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = {
    "qwen2.5-0.5b-instruct": "Q4_K_M",
    "qwen2.5-0.5b-instruct-q4_0": "Q4_0",
    "qwen2.5-0.5b-instruct-q8_0": "Q8_0",
    "qwen2.5-1.5b-instruct": "Q4_K_M",
    "qwen2.5-3b-instruct": "Q4_K_M",
    "qwen2.5-coder-0.5b-instruct": "Q4_K_M",
}


@pytest.fixture(autouse=True)
def no_user_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QWENJSON_MODELS_FILE", raising=False)


# -- the built-in registry --------------------------------------------------------------------


def test_builtin_registry_has_the_official_qwen_models_pinned() -> None:
    registry = load_registry()
    assert {name: spec.quant for name, spec in registry.items()} == BUILTIN
    assert DEFAULT_MODEL in registry
    for name, spec in registry.items():
        assert spec.name == name
        assert spec.repo.startswith("Qwen/") and spec.repo.endswith("-GGUF"), name
        # the official file names spell the quantization in lower case
        assert spec.file.endswith(f"-{spec.quant.lower()}.gguf"), name
        assert re.fullmatch(r"[0-9a-f]{40}", spec.revision), name
        assert spec.sha256 is not None and re.fullmatch(r"[0-9a-f]{64}", spec.sha256), name
        assert spec.size is not None and spec.size > 100_000_000, name
        assert spec.context == 32768 and spec.license and spec.description, name
    # the 3B model is not Apache-2.0: its entry must not say it is
    assert registry["qwen2.5-3b-instruct"].license != "Apache-2.0"


def test_builtin_registry_comes_from_the_top_level_models_toml_in_a_checkout() -> None:
    text, source = builtin_registry_text()
    assert Path(source) == ROOT / "models.toml"
    assert text == (ROOT / "models.toml").read_text(encoding="utf-8")


def test_wheel_ships_models_toml_inside_the_package(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode != 0 and "No module named hatchling" in built.stderr:
        pytest.skip("hatchling is not installed in this environment")
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("qwenjson-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        packaged = zf.read("qwenjson/models.toml").decode("utf-8")
    assert packaged == (ROOT / "models.toml").read_text(encoding="utf-8")
    assert parse_registry(packaged, "qwenjson/models.toml").keys() == BUILTIN.keys()


# -- user registries --------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "models.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_user_registry_adds_entries_and_replaces_builtin_ones_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        '["mine"]\nrepo = "me/my-GGUF"\nfile = "sub/dir/m.Q4_K_M.gguf"\n\n'
        f'["{DEFAULT_MODEL}"]\nrepo = "me/fork-GGUF"\nfile = "fork.gguf"\nsha256 = ""\n',
    )
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(path))
    registry = load_registry()
    assert registry["mine"] == ModelSpec(
        name="mine", repo="me/my-GGUF", file="sub/dir/m.Q4_K_M.gguf", origin=str(path)
    )
    # replaced as a whole: nothing of the built-in entry (its sha256!) leaks into the fork
    fork = registry[DEFAULT_MODEL]
    assert (fork.repo, fork.file, fork.revision, fork.sha256, fork.size) == (
        "me/fork-GGUF",
        "fork.gguf",
        "main",
        None,
        None,
    )
    assert registry["qwen2.5-3b-instruct"].repo == "Qwen/Qwen2.5-3B-Instruct-GGUF"


def test_missing_user_registry_is_a_model_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ModelError, match=r"QWENJSON_MODELS_FILE=.*nope\.toml: no such file") as e:
        load_registry()
    assert e.value.exit_code == EXIT_MODEL


def test_user_registry_that_is_not_utf8_is_a_model_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('["caf\xe9"]\n'.encode("latin-1"))
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(path))
    with pytest.raises(ModelError, match="not UTF-8"):
        load_registry()


GOOD = '["m"]\nrepo = "a/b"\nfile = "m.gguf"\n'


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('["m"]\nrepo = "a/b"\nfile = "m.gguf\n', 3, "malformed model registry"),
        ('["m"]\nrepo = "a/b"\nrepo = "c/d"\n', 3, "malformed model registry"),
        (GOOD + '["m"]\n', 4, "malformed model registry"),
        ('["m"]\nrepo "a/b"\n', 2, "malformed model registry"),
        ('["m"\n', 1, "malformed model registry"),
        (GOOD + "sha265 = 'x'\n", 4, "unknown field 'sha265' (did you mean 'sha256'?)"),
        (GOOD + 'size = "500 MB"\n', 4, "'size' must be an integer"),
        (GOOD + "size = true\n", 4, "'size' must be an integer"),
        (GOOD + "context = 0\n", 4, "context must be a positive number"),
        (GOOD + "size = -1\n", 4, "size must be a positive number of bytes"),
        (GOOD + 'sha256 = "abc"\n', 4, "sha256 must be 64 hex digits"),
        ('["m"]\nrepo = "a/b"\n', 1, "model 'm' has no 'file'"),
        ('\n\n["m"]\nfile = "m.gguf"\n', 3, "model 'm' has no 'repo'"),
        ('["m"]\nrepo = "not a repo"\nfile = "m.gguf"\n', 2, "repo must be a Hugging Face repo id"),
        ('["m"]\nrepo = "a/b"\nfile = "m.bin"\n', 3, "file must be a relative path to a .gguf"),
        ('["m"]\nrepo = "a/b"\nfile = "../m.gguf"\n', 3, "file must be a relative path"),
        ('# mine\n[qwen2.5-0.5b-mine]\nrepo = "a/b"\n', 2, "must be quoted"),
        (GOOD + 'revision = "../../etc"\n', 4, "revision must be a commit, branch or tag"),
        ('default = "m"\n' + GOOD, None, "'default' must be a table of model fields"),
    ],
    ids=[
        "unterminated-string",
        "duplicate-key",
        "duplicate-table",
        "missing-equals",
        "unclosed-header",
        "unknown-field",
        "size-string",
        "size-bool",
        "context-zero",
        "size-negative",
        "bad-sha",
        "no-file",
        "no-repo",
        "bad-repo",
        "not-gguf",
        "escaping-path",
        "dotted-name",
        "escaping-revision",
        "top-level-scalar",
    ],
)
def test_malformed_registry_names_file_and_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    line: int | None,
    message: str,
) -> None:
    path = write(tmp_path, text)
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(path))
    with pytest.raises(ModelError) as e:
        load_registry()
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(e.value).startswith(where), str(e.value)
    assert message in str(e.value)
    assert e.value.exit_code == EXIT_MODEL


def test_every_malformed_example_really_is_malformed_toml_or_bad_fields() -> None:
    # Guard the table above: the syntax cases must be TOML errors, the others valid TOML.
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads('["m"]\nrepo "a/b"\n')
    assert tomllib.loads(GOOD + 'size = "500 MB"\n')["m"]["size"] == "500 MB"


# -- resolving --model ------------------------------------------------------------------------


def test_registry_name_resolves_to_its_spec() -> None:
    ref = resolve_model("qwen2.5-0.5b-instruct-q4_0")
    assert ref.kind == "registry" and ref.path is None
    assert ref.spec is not None and ref.spec.file == "qwen2.5-0.5b-instruct-q4_0.gguf"
    # as the hub spells it: case doesn't matter when it is unambiguous
    upper = resolve_model("Qwen2.5-0.5B-Instruct-Q4_0")
    assert upper.spec == ref.spec


@pytest.mark.parametrize(
    "value", ["model.gguf", "./model", "~/models/q.GGUF", "/abs/path/x.bin", "dir/model"]
)
def test_paths_resolve_to_paths(value: str) -> None:
    ref = resolve_model(value)
    assert ref.kind == "path" and ref.spec is None
    assert ref.path == Path(value).expanduser()


def test_a_bare_existing_file_name_is_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mymodel").write_bytes(b"GGUF")
    assert resolve_model("mymodel").kind == "path"


def test_hf_reference_with_and_without_revision() -> None:
    ref = resolve_model("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q8_0.gguf")
    assert ref.kind == "hf" and ref.spec is not None
    assert (ref.spec.repo, ref.spec.file, ref.spec.revision, ref.spec.sha256) == (
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        "qwen2.5-0.5b-instruct-q8_0.gguf",
        "main",
        None,
    )
    pinned = resolve_model("hf:me/repo-GGUF/sub/model.gguf@0123abcd")
    assert pinned.spec is not None
    assert (pinned.spec.file, pinned.spec.revision) == ("sub/model.gguf", "0123abcd")


@pytest.mark.parametrize(
    "value",
    [
        "hf:",
        "hf:Qwen/model.gguf",
        "hf:a/b/model.bin",
        "hf:a/b/m.gguf@",
        "hf:a/b/../m.gguf",
        "hf:a/b/m.gguf@../../x",
    ],
)
def test_bad_hf_reference_is_a_model_error(value: str) -> None:
    with pytest.raises(ModelError, match=r"expected hf:OWNER/REPO/FILE\.gguf"):
        resolve_model(value)


def test_unknown_name_lists_known_names_and_the_closest_match() -> None:
    with pytest.raises(ModelError) as e:
        resolve_model("qwen2.5-0.5b-instrukt")
    message = str(e.value)
    assert message.startswith(
        "unknown model 'qwen2.5-0.5b-instrukt'; did you mean 'qwen2.5-0.5b-instruct'?"
    )
    assert "known models: " + ", ".join(sorted(BUILTIN)) in message
    assert e.value.exit_code == EXIT_MODEL


def test_unknown_name_with_nothing_close_gives_no_suggestion() -> None:
    with pytest.raises(ModelError) as e:
        resolve_model("llama")
    assert "did you mean" not in str(e.value)
    assert "known models: " in str(e.value)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("qwen2.5-1.5b", "qwen2.5-1.5b-instruct"),
        ("qwen2.5-3b-instruct-q4_k_m", "qwen2.5-3b-instruct"),
        ("qwen-coder", "qwen2.5-coder-0.5b-instruct"),
        ("qwen2.5-0.5b-instruct-q8", "qwen2.5-0.5b-instruct-q8_0"),
        ("Qwen2.5-0.5B-Instruct", "qwen2.5-0.5b-instruct"),
        ("llama-3.2-1b", None),
    ],
)
def test_closest_name(typed: str, expected: str | None) -> None:
    assert closest_name(typed, sorted(BUILTIN)) == expected


@pytest.mark.parametrize("name", ["my/model", "mine.gguf", ".hidden", "~mine", "hf:me", " mine"])
def test_a_name_model_would_read_as_a_path_is_left_out_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Listed, it could never be used (`-m my/model` looks for a file of that name); refusing
    # the whole file would break every job, the default model's too, for one entry.
    path = write(
        tmp_path,
        f'["{name}"]\nrepo = "a/b"\nfile = "x.gguf"\n\n["ok"]\nrepo = "c/d"\nfile = "y.gguf"\n',
    )
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(path))
    unusable: list[str] = []
    registry = load_registry(unusable)
    assert name not in registry and registry["ok"].repo == "c/d" and DEFAULT_MODEL in registry
    assert len(unusable) == 1 and "can't be a model name" in unusable[0], unusable


def test_a_user_registry_with_a_bom_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b'\xef\xbb\xbf["mine"]\nrepo = "a/b"\nfile = "x.gguf"\n')
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(path))
    assert load_registry()["mine"].repo == "a/b"


def test_an_unusable_name_that_is_not_even_a_table_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '"x.gguf" = "oops"\n\n["ok"]\nrepo = "c/d"\nfile = "y.gguf"\n')
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(path))
    unusable: list[str] = []
    assert load_registry(unusable)["ok"].repo == "c/d" and len(unusable) == 1
