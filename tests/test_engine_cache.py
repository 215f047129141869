"""The prompt-prefix KV cache on disk, on SmolLM2-135M: hits, and files that must not be trusted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qwenjson.engine import Engine
from qwenjson.generation import Message
from qwenjson.kvcache import PrefixCache
from tests.grammar_engine import default_model_path
from tests.helpers import PERSON_GRAMMAR

# At most three hobbies: a 135M model left to itself repeats one forever.
GRAMMAR = PERSON_GRAMMAR.replace('(string ("," string)*)?', '(string ("," string){0,2})?')
assert GRAMMAR != PERSON_GRAMMAR

pytestmark = pytest.mark.model

SYSTEM = (
    "You are a strict JSON generator. Read the user's text and produce exactly one JSON object "
    "with these fields, in this order: name (string, the person's full name), age (integer, in "
    "years), hobbies (array of strings, each a short noun phrase), status (one of active, "
    "inactive, retired). Use only facts stated in the text. Output nothing but the object."
)


def messages(text: str) -> list[Message]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


ANNA = messages("Anna Berg is 41, paints and hikes, and still works.")


def run(
    cache_dir: Path, *, sha: str | None = "a" * 64, text: list[Message] = ANNA
) -> tuple[str, str]:
    """(output, what the disk cache did) for one fresh engine, as a new process would see it."""
    with Engine(
        default_model_path(), n_ctx=1024, n_threads=1, cache_dir=cache_dir, model_sha256=sha
    ) as e:
        result = e.generate(text, GRAMMAR, max_tokens=120)
        return result.text, e.last_stats.disk_prefix


def kv_files(cache_dir: Path) -> list[Path]:
    """The cache's own files (``<64 hex>.kv``); other files in the directory are not its."""
    return sorted(p for p in cache_dir.glob("*.kv") if re.fullmatch(r"[0-9a-f]{64}\.kv", p.name))


def test_second_run_loads_the_prefix_and_gives_the_same_output(tmp_path: Path) -> None:
    first, what = run(tmp_path)
    assert what == "miss"
    [saved] = kv_files(tmp_path)
    second, what = run(tmp_path)
    assert what == "hit"
    assert second == first
    json.loads(second)
    # Another record with the same system message hits the same prefix.
    other, what = run(tmp_path, text=messages("Bo Lind is 9 and plays chess."))
    assert what == "hit"
    json.loads(other)
    assert kv_files(tmp_path) == [saved]


def test_prefix_excludes_the_record(tmp_path: Path, smollm2: Path) -> None:
    with Engine(smollm2, n_ctx=1024, n_threads=1, cache_dir=tmp_path) as e:
        tokens = e.prompt_tokens(ANNA)
        shared = e._shared_prefix_len(ANNA, tokens)
        prefix = b"".join(e.piece(t) for t in tokens[:shared]).decode()
    assert SYSTEM in prefix
    assert "Anna" not in prefix
    assert shared >= 60


@pytest.mark.parametrize("damage", ["truncate", "flip-payload", "flip-tokens", "empty"])
def test_damaged_file_is_ignored_and_rebuilt(tmp_path: Path, damage: str) -> None:
    expected, _ = run(tmp_path)
    [path] = kv_files(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip-payload":
        data[-100] ^= 0xFF
    elif damage == "flip-tokens":
        data[130] ^= 0x01  # inside the token list that follows the 114-byte header
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    text, what = run(tmp_path)
    assert what == "miss"
    assert text == expected
    text, what = run(tmp_path)  # the miss wrote a good file again
    assert what == "hit"
    assert text == expected


def test_another_model_never_uses_the_file(tmp_path: Path) -> None:
    expected, _ = run(tmp_path, sha="a" * 64)
    [path_a] = kv_files(tmp_path)
    text, what = run(tmp_path, sha="b" * 64)
    assert what == "miss"
    assert text == expected  # same weights really, so the same answer
    assert len(kv_files(tmp_path)) == 2
    # A file planted under another model's key name (renamed, copied between machines) is
    # refused by the key inside it.
    [path_b] = [p for p in kv_files(tmp_path) if p != path_a]
    path_b.write_bytes(path_a.read_bytes())
    assert run(tmp_path, sha="b" * 64)[1] == "miss"


def test_a_checksummed_state_of_the_wrong_shape_is_refused(tmp_path: Path, smollm2: Path) -> None:
    # A file whose header and checksum are right but whose payload llama.cpp can't use
    # (here: the state of a shorter prompt) is caught when it is restored.
    short = [{"role": "user", "content": "hi"}]
    run(tmp_path)
    [path] = kv_files(tmp_path)
    with Engine(smollm2, n_ctx=1024, n_threads=1) as e:
        tokens = e.prompt_tokens(ANNA)
        shared = e._shared_prefix_len(ANNA, tokens)
        e._decode(e.prompt_tokens(short), logits=False)
        cache = PrefixCache(tmp_path)
        key = path.stem
        assert cache.save(e._live_ctx(), key, tokens[:shared])  # wrong state, right header
        e._forget_from(0)
        assert not cache.load(e._live_ctx(), key, tokens[:shared])
        assert len(e._kv) == 0
    assert run(tmp_path)[1] == "miss"


def test_unwritable_cache_dir_only_costs_time(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    text, what = run(blocker / "kv")
    assert what == "miss"
    json.loads(text)


WRITER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from qwenjson.engine import Engine
    from tests.grammar_engine import default_model_path
    from tests.test_engine_cache import ANNA, GRAMMAR
    with Engine(default_model_path(), n_ctx=1024, n_threads=1, cache_dir=Path(sys.argv[1])) as e:
        r = e.generate(ANNA, GRAMMAR, max_tokens=120)
        print(json.dumps([r.text, e.last_stats.disk_prefix]))
    """
)


@pytest.mark.slow
def test_concurrent_writers_leave_one_good_file(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=root,
            env=env,
        )
        for _ in range(4)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert err == ""
        results.append(json.loads(out))
    texts = {text for text, _ in results}
    assert len(texts) == 1
    assert "miss" in {what for _, what in results}
    assert len(kv_files(tmp_path)) == 1
    assert sorted(tmp_path.iterdir()) == kv_files(tmp_path)  # no temporary files left
    text, what = run(tmp_path, sha=None)
    assert what == "hit"
    assert text in texts


def test_pruning_deletes_only_the_caches_own_files(tmp_path: Path) -> None:
    # --cache-dir may name a directory with other programs' files, ".kv" ones among them.
    hour_ago = time.time() - 3600
    foreign = [tmp_path / f"screen{i:02}.kv" for i in range(40)]
    for path in foreign:
        path.write_text("#:kivy 2.0\n")
        os.utime(path, (hour_ago, hour_ago))
    old = [tmp_path / f"{i:064x}.kv" for i in range(40)]  # the cache's names, stale states
    for i, path in enumerate(old):
        path.write_bytes(b"stale")
        os.utime(path, (hour_ago + i, hour_ago + i))
    killed = tmp_path / ".qwenjson-kv-killed.tmp"  # a writer killed two hours ago
    killed.write_bytes(b"half")
    os.utime(killed, (hour_ago - 3600, hour_ago - 3600))
    writing = tmp_path / ".qwenjson-kv-writing.tmp"  # another process writing now
    writing.write_bytes(b"half")
    _, what = run(tmp_path)
    assert what == "miss"
    assert all(path.exists() for path in foreign)
    kept = kv_files(tmp_path)
    assert len(kept) == 32
    assert set(old[-31:]) <= set(kept)  # the newest of the old ones, beside the new file
    assert not killed.exists()
    assert writing.exists()


def test_a_hit_counts_as_use_for_pruning(tmp_path: Path) -> None:
    run(tmp_path)
    [path] = kv_files(tmp_path)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert run(tmp_path)[1] == "hit"
    assert path.stat().st_mtime > time.time() - 600


def test_a_fifo_in_place_of_the_file_is_not_waited_on(tmp_path: Path) -> None:
    # Reading a FIFO blocks until someone writes to it; the run must not hang on one.
    expected, _ = run(tmp_path)
    [path] = kv_files(tmp_path)
    path.unlink()
    os.mkfifo(path)
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from tests.test_engine_cache import run
        text, what = run(Path({str(tmp_path)!r}))
        print(what)
        print(text)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0, proc.stderr
    what, text = proc.stdout.splitlines()
    assert what == "miss"
    assert text == expected
