"""``extract --jsonl --ray`` on a real Ray cluster (``ray start --head`` on 127.0.0.1, 2 CPUs, one
per module) with the real SmolLM2 model: the same bytes as the local run, an actor killed
mid-batch, a driver killed with -9 and resumed, a record that kills every worker, and the
errors a user meets without a cluster (a wrong address, Ray not installed).

Waiting is done by reading files and pipes, never by timing assertions.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from qwenjson import cli
from qwenjson.errors import (
    EXIT_CLUSTER,
    EXIT_INPUT,
    EXIT_MODEL,
    EXIT_SOME_RECORDS_FAILED,
    EXIT_USAGE,
    ClusterError,
    InputError,
    ModelError,
    UsageError,
)
from tests.helpers import REAL_PERSON, TEXTS, extract_argv, qwenjson_argv, wait_for_lines
from tests.test_long_text import PERSON as PERSON_OF_TEAM
from tests.test_long_text import PIECES, TEAM

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

from qwenjson.actors import RayExecutor, worker_spec  # noqa: E402
from qwenjson.batch import ErrorLog, SomeRecordsFailed, run_batch  # noqa: E402
from qwenjson.cluster import connect, extract_many  # noqa: E402
from qwenjson.dsl import parse_dsl  # noqa: E402
from qwenjson.engine import Engine  # noqa: E402
from qwenjson.library import extract  # noqa: E402
from qwenjson.pipeline import ExtractOptions  # noqa: E402
from qwenjson.plan import Plan, RecordOptions  # noqa: E402
from qwenjson.records import BatchOptions  # noqa: E402
from qwenjson.runner import Runner  # noqa: E402
from qwenjson.stream import LineOutput  # noqa: E402
from tests.ray_cluster import (  # noqa: E402
    DiesAtASecondStep,
    OtherModelWorker,
    PoisonedWorker,
    died_marker,
    ray_head,
    worker_pids,
)

pytestmark = pytest.mark.model


def records(n: int) -> bytes:
    rows = [{"id": i, "text": TEXTS[i % len(TEXTS)]} for i in range(1, n + 1)]
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


# Records, a line that is no record, an empty text: the failures must match the local run's too.
INPUT = records(6) + b'not json\n{"id": 8, "text": ""}\n' + records(3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The module's cluster: its address and session id."""
    with ray_head(tmp_path_factory.mktemp("ray")) as head:
        yield head


def run(argv: list[str], data: bytes, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=data, capture_output=True, timeout=600, **kw)  # type: ignore[call-overload,no-any-return]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """The local run's stdout and --errors file (the reference)."""
    errors = tmp_path_factory.mktemp("local") / "errors.jsonl"
    r = run(qwenjson_argv("--jsonl", "--field", "text", "--errors", str(errors)), INPUT)
    assert r.returncode == EXIT_SOME_RECORDS_FAILED, r.stderr.decode()
    assert len(r.stdout.splitlines()) == 9
    return r.stdout, errors.read_bytes()


@pytest.mark.slow  # a real Ray cluster and model
def test_the_cluster_prints_what_the_local_run_prints(
    cluster: tuple[str, int], local: tuple[bytes, bytes], tmp_path: Path
) -> None:
    errors = tmp_path / "errors.jsonl"
    argv = qwenjson_argv("--jsonl", "--field", "text", "--errors", str(errors), "--ray", cluster[0])
    r = run([*argv, "--ray-actors", "2"], INPUT)
    assert r.returncode == EXIT_SOME_RECORDS_FAILED, r.stderr.decode()
    assert r.stdout == local[0]  # byte for byte, in input order
    assert errors.read_bytes() == local[1]  # lines 7 and 8, with the same messages
    assert b"Traceback" not in r.stderr


@pytest.mark.slow  # a real Ray cluster and model
def test_each_on_the_cluster_prints_the_local_items(cluster: tuple[str, int]) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    data = "\n".join(["Alice met Bob and Carla in Lyon.", "李明和王芳在北京。"]).encode() + b"\n"
    argv = qwenjson_argv("--jsonl", "--each", schema=schema, max_tokens=64)
    here = run(argv, data)
    there = run([*argv, "--ray", cluster[0]], data)
    assert (there.returncode, there.stdout) == (here.returncode, here.stdout), there.stderr
    assert len(here.stdout.splitlines()) >= 2


@pytest.mark.slow  # a real Ray cluster and model
def test_auto_and_unordered_number_each_line(
    cluster: tuple[str, int], local: tuple[bytes, bytes]
) -> None:
    env = {**os.environ, "RAY_ADDRESS": cluster[0]}  # what `ray start` leaves for `auto`
    argv = qwenjson_argv("--jsonl", "--field", "text", "--ray", "auto", "--unordered")
    r = run(argv, INPUT, env=env)
    assert r.returncode == EXIT_SOME_RECORDS_FAILED, r.stderr.decode()
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(set(row) == {"line", "data"} for row in rows)
    by_line = sorted(rows, key=lambda row: row["line"])
    assert [row["line"] for row in by_line] == [1, 2, 3, 4, 5, 6, 9, 10, 11]
    assert [row["data"] for row in by_line] == [json.loads(x) for x in local[0].splitlines()]


@pytest.mark.slow  # a real Ray cluster and model
def test_on_error_stop_stops_at_the_first_failure_in_input_order(
    cluster: tuple[str, int], local: tuple[bytes, bytes]
) -> None:
    argv = qwenjson_argv("--jsonl", "--field", "text", "--on-error", "stop", "--ray", cluster[0])
    r = run(argv, INPUT)
    # Line 7 fails: the six before it are printed (later ones may have run: never printed).
    assert r.returncode == EXIT_INPUT, r.stderr.decode()
    assert r.stdout == b"".join(local[0].splitlines(keepends=True)[:6])
    assert b"Error: line 7: not a JSON object" in r.stderr


@pytest.mark.slow  # a real Ray cluster and model
def test_an_actor_killed_mid_batch_loses_and_duplicates_nothing(
    cluster: tuple[str, int], local: tuple[bytes, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    argv = qwenjson_argv("--jsonl", "--field", "text", "--ray", cluster[0], "--ray-actors", "2")
    with out.open("wb") as sink:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(INPUT)
        proc.stdin.close()
        stderr = _drain(proc.stderr)
        while not out.read_bytes() and proc.poll() is None:  # the actors are working
            time.sleep(0.05)
        victims = worker_pids(cluster[1])
        assert victims, "no RecordWorker process found"
        assert proc.poll() is None, "the batch ended before an actor could be killed"
        os.kill(victims[0], signal.SIGKILL)
        assert proc.wait(timeout=600) == EXIT_SOME_RECORDS_FAILED, stderr.getvalue().decode()
    assert out.read_bytes() == local[0]
    assert b"died" in stderr.getvalue()  # the replacement is reported on stderr


@pytest.mark.slow  # a real Ray cluster and model
@pytest.mark.parametrize("first", ["ray", "local"])
def test_checkpoint_resume_after_the_driver_is_killed(
    cluster: tuple[str, int], local: tuple[bytes, bytes], tmp_path: Path, first: str
) -> None:
    """The rerun is on the cluster; the killed run was too, or was a local run: one job, one
    checkpoint (the workers' plan has the local plan's fingerprint)."""
    (tmp_path / "in.jsonl").write_bytes(INPUT)
    argv = qwenjson_argv(
        "--jsonl", "--field", "text", "--input", str(tmp_path / "in.jsonl"),
        "--checkpoint", str(tmp_path / "ckpt"), "--ray", cluster[0],
    )  # fmt: skip
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    with out.open("ab") as sink:
        first_argv = argv if first == "ray" else argv[:-2]
        proc = subprocess.Popen(first_argv, stdout=sink, stderr=subprocess.DEVNULL)
        while out.read_bytes().count(b"\n") < 3 and proc.poll() is None:
            time.sleep(0.02)
        killed = proc.poll() is None
        proc.kill()  # SIGKILL: the driver writes nothing more, its actors die with it
        proc.wait(timeout=60)
    assert killed, "the run ended before it could be killed"
    with out.open("ab") as sink:
        rerun = subprocess.run(argv, stdout=sink, stderr=subprocess.PIPE, timeout=600)
    assert rerun.returncode == EXIT_SOME_RECORDS_FAILED, rerun.stderr.decode()
    assert out.read_bytes() == local[0]


# A record longer than the context, as tests/test_long_text.py reads one: in small pieces.
LONG_ARGS = ("--jsonl", "--field", "text", "--each", "-s", PERSON_OF_TEAM, *PIECES)


def _pieces_logged(checkpoint: Path, line: int) -> list[int]:
    entries = map(json.loads, checkpoint.read_text().splitlines()[1:])
    return [e["piece"] for e in entries if "piece" in e and e["of_line"] == line]


@pytest.mark.slow  # a real Ray cluster and model
def test_a_long_record_on_the_cluster_prints_and_logs_its_pieces_as_the_local_run(
    cluster: tuple[str, int], tmp_path: Path
) -> None:
    data = b"".join(json.dumps({"text": t}).encode() + b"\n" for t in (TEXTS[0], TEAM, TEXTS[1]))
    argv = extract_argv(*LONG_ARGS)
    here = run(argv, data)
    assert here.returncode == 0, here.stderr.decode()
    assert len(here.stdout.splitlines()) >= 6  # the long record's items and the others'
    checkpoint = tmp_path / "ck"
    there = run([*argv, "--checkpoint", str(checkpoint), "--ray", cluster[0]], data)
    assert (there.returncode, there.stdout) == (0, here.stdout), there.stderr.decode()
    # Each piece of line 2 was logged as it came back, in order, once.
    logged = _pieces_logged(checkpoint, 2)
    assert len(logged) >= 5 and logged == list(range(len(logged)))


@pytest.mark.slow  # a real Ray cluster and model
def test_a_driver_killed_inside_a_long_record_goes_on_at_its_next_piece(
    cluster: tuple[str, int], tmp_path: Path
) -> None:
    data = json.dumps({"text": TEAM}).encode() + b"\n"
    whole = run(extract_argv(*LONG_ARGS), data)
    assert whole.returncode == 0, whole.stderr.decode()
    (tmp_path / "in.jsonl").write_bytes(data)
    argv = extract_argv(
        *LONG_ARGS, "--input", str(tmp_path / "in.jsonl"),
        "--checkpoint", str(tmp_path / "ck"), "--ray", cluster[0],
    )  # fmt: skip
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    with out.open("ab") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.DEVNULL)
        wait_for_lines(out, 4, proc)
        killed = proc.poll() is None
        proc.kill()  # SIGKILL: the driver writes nothing more, its actors die with it
        proc.wait(timeout=60)
    assert killed, "the record ended before the driver could be killed"
    before = _pieces_logged(tmp_path / "ck", 1)
    assert before  # pieces were logged on the cluster before the kill
    with out.open("ab") as sink:
        rerun = subprocess.run(argv, stdout=sink, stderr=subprocess.PIPE, timeout=600)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert out.read_bytes() == whole.stdout
    after = _pieces_logged(tmp_path / "ck", 1)
    # The rerun went on at the next piece: each piece was extracted (and logged) once.
    assert after[: len(before)] == before and after == list(range(len(after)))


@pytest.mark.slow  # a real Ray cluster and model
def test_an_actor_dying_inside_a_long_record_hands_it_on_at_its_next_piece(
    cluster: tuple[str, int], smollm2: Path
) -> None:
    schema = parse_dsl(PERSON_OF_TEAM)
    options = ExtractOptions(max_tokens=128)
    record = RecordOptions(each=True, chunk_tokens=32, chunk_overlap=12)
    plan = Plan(schema, "", 512, options, record)
    lines = [json.dumps({"text": t}).encode() for t in (TEXTS[0], TEAM)]
    batch = BatchOptions(field="text")
    here = io.BytesIO()
    with Engine(smollm2, n_ctx=512, n_threads=1) as engine:
        run_batch(lines, Runner(plan, engine), batch, output=LineOutput(here))
    assert len(here.getvalue().splitlines()) >= 6
    marker = died_marker(TEAM)
    marker.unlink(missing_ok=True)
    notices: list[str] = []
    there = io.BytesIO()
    try:
        with connect(cluster[0]) as c:
            spec = worker_spec(plan, model=str(smollm2))
            executor = RayExecutor(
                c, spec, actors=1, worker=DiesAtASecondStep, notice=notices.append
            )
            try:
                run_batch(lines, executor, batch, output=LineOutput(there))
            finally:
                executor.close()
        assert marker.exists()  # the worker did die inside the long record
    finally:
        marker.unlink(missing_ok=True)
    # The record went to the new worker with its first piece done: nothing printed twice.
    assert there.getvalue() == here.getvalue()
    assert any("died (line 2 was running)" in n for n in notices), notices


@pytest.mark.slow  # a real Ray cluster
@pytest.mark.parametrize("quiet", [False, True])
def test_the_clusters_messages_go_to_stderr_plain_or_nowhere_when_quiet(
    cluster: tuple[str, int], capfd: pytest.CaptureFixture[str], quiet: bool
) -> None:
    # What Ray's driver prints when a worker dies, through Ray's own printer: it went to
    # stdout, coloured for a terminal into a cron job's mail, and past -q.
    from ray._private import worker

    with connect(cluster[0], quiet=quiet):
        capfd.readouterr()
        message = {"pid": "raylet", "ip": "10.0.0.9", "lines": ["A worker died or was killed"]}
        worker.print_to_stdstream({**message, "is_err": False}, False)
        out, err = capfd.readouterr()
    assert out == ""
    if quiet:
        assert err == ""
    else:
        assert "(raylet, ip=10.0.0.9) A worker died or was killed" in err and "\x1b[" not in err


@pytest.mark.slow  # a real Ray cluster and model
def test_no_new_record_goes_to_an_actor_between_the_pieces_of_a_long_one(
    cluster: tuple[str, int], smollm2: Path
) -> None:
    plan = Plan(
        parse_dsl(PERSON_OF_TEAM),
        "",
        512,
        ExtractOptions(max_tokens=128),
        RecordOptions(each=True, chunk_tokens=32, chunk_overlap=12),
    )
    short = [json.dumps({"text": t}).encode() for t in TEXTS[:3]]
    lines = [json.dumps({"text": TEAM}).encode(), *short]
    with connect(cluster[0]) as c:
        executor = RayExecutor(
            c, worker_spec(plan, model=str(smollm2)), actors=1, keep_timings=True
        )
        try:
            run_batch(lines, executor, BatchOptions(field="text"), output=LineOutput(io.BytesIO()))
        finally:
            executor.close()
    assert executor.timings is not None
    timing = {t.line: t for t in executor.timings}
    # Line 2 was already waiting at the actor when the long text began; lines 3 and 4 were
    # sent only once it had ended, not between its pieces.
    assert all(timing[line].started >= timing[1].ended for line in (3, 4)), timing


@pytest.mark.slow  # a real Ray cluster and model
def test_a_record_that_kills_every_worker_fails_alone(
    cluster: tuple[str, int], smollm2: Path
) -> None:
    lines = [b"Alice Martin is 34.", b"POISON Bob is 51.", b"Carla Diaz is 19."]
    plan = Plan(REAL_PERSON, "", 512, ExtractOptions(max_tokens=48))
    spec = worker_spec(plan, model=str(smollm2))
    notices: list[str] = []
    shown: list[str] = []
    output = io.BytesIO()
    with connect(cluster[0]) as c:
        executor = RayExecutor(c, spec, actors=1, notice=notices.append, worker=PoisonedWorker)
        try:
            with pytest.raises(SomeRecordsFailed) as failed:
                run_batch(
                    lines,
                    executor,
                    BatchOptions(),
                    output=LineOutput(output),
                    errors=ErrorLog(show=shown.append),
                )
        finally:
            executor.close()
    assert [e.line for e in failed.value.report.errors] == [2]
    assert failed.value.report.errors[0].exit_code == EXIT_CLUSTER
    assert "died 3 times" in shown[0]
    # Three workers died on it alone, each replaced. (An actor can finish line 1 and die on
    # line 2 before line 1's reply leaves: that death, with both held, is charged to neither,
    # and each then runs alone.)
    assert sum("(line 2 was running)" in n for n in notices) == 3, notices
    assert not any("(line 1 was running)" in n for n in notices), notices
    names = [json.loads(line)["name"] for line in output.getvalue().splitlines()]
    assert names == ["Alice Martin", "Carla Diaz"]


@pytest.mark.slow  # a real Ray cluster and model
def test_workers_with_other_model_files_are_refused(
    cluster: tuple[str, int], smollm2: Path
) -> None:
    """Their plans' fingerprints differ: one checkpoint can't name both, nor outputs mix."""
    plan = Plan(REAL_PERSON, "", 512, ExtractOptions(max_tokens=48))
    spec = worker_spec(plan, model=str(smollm2))
    lines = [TEXTS[i % len(TEXTS)].encode() for i in range(20)]  # outlasts the second's start
    with connect(cluster[0]) as c:
        executor = RayExecutor(c, spec, actors=2, worker=OtherModelWorker)
        try:
            assert executor.fingerprint()  # the first worker's plan names the job
            with pytest.raises(ClusterError, match="another model file"):
                # Every worker says hello before the batch: under load the first could
                # otherwise finish all 20 records before the second has loaded its model.
                while not all(a.ready for a in executor.actors):
                    executor._wait()
                run_batch(lines, executor, BatchOptions(), output=LineOutput(io.BytesIO()))
        finally:
            executor.close()


@pytest.mark.slow  # a real Ray cluster and model
def test_extract_many_from_python(cluster: tuple[str, int], smollm2: Path) -> None:
    # None (a pandas NaN cell, bytes, …) and a lone surrogate ended the whole run with a
    # RayTaskError: now each fails alone, with the error extract() raises for it.
    texts: list[Any] = [TEXTS[0], "", None, "Ann \udcff", TEXTS[1]]
    got = list(extract_many(texts, REAL_PERSON, ray=cluster[0], model=str(smollm2), max_tokens=48))
    assert [i for i, _ in got] == [0, 1, 2, 3, 4]
    assert got[0][1]["name"] == "Alice Martin" and got[4][1]["age"] == 51
    assert getattr(got[1][1], "exit_code", None) == 6  # an empty text: an InputError, not raised
    assert isinstance(got[2][1], UsageError) and "text must be a str" in str(got[2][1])
    assert isinstance(got[3][1], InputError) and "not UTF-8" in str(got[3][1])


class Person:
    """A class that quacks like a Pydantic model (what extract() and extract_many take)."""

    def __init__(self, name: str, age: int) -> None:
        self.name, self.age = name, age

    @classmethod
    def model_json_schema(cls) -> dict[str, object]:
        return REAL_PERSON

    @classmethod
    def model_validate(cls, data: dict[str, object]) -> Person:
        return cls(str(data["name"]), int(str(data["age"])))


@pytest.mark.slow  # a real Ray cluster and model
def test_extract_many_takes_the_schemas_and_keywords_extract_takes(
    cluster: tuple[str, int], smollm2: Path
) -> None:
    texts = [TEXTS[0], TEXTS[1]]
    here = [extract(t, Person, model=str(smollm2), threads=1, max_tokens=48) for t in texts]
    got = list(
        extract_many(texts, Person, ray=cluster[0], model=str(smollm2), max_tokens=48, timeout=60)
    )
    assert [type(person) for _, person in got] == [Person, Person]
    assert [(p.name, p.age) for _, p in got] == [(p.name, p.age) for p in here]
    concise = list(extract_many(texts[:1], "name, age int", ray=cluster[0], model=str(smollm2)))
    assert set(concise[0][1]) == {"name", "age"}


@pytest.mark.slow  # a real Ray cluster and model
def test_an_error_on_a_node_comes_back_as_its_own_class(
    cluster: tuple[str, int], smollm2: Path
) -> None:
    # An overlap too large for the pieces the actor's context makes is a usage error there (its
    # runner checks it before any record); it came back as a bare QwenJsonError, which an
    # `except UsageError` missed.
    with pytest.raises(UsageError, match=r"on node .*--chunk-overlap 100 must be less"):
        list(
            extract_many(
                [TEXTS[0]],
                "name",
                ray=cluster[0],
                model=str(smollm2),
                n_ctx=512,
                max_tokens=256,
                chunk_overlap=100,
            )
        )
    with pytest.raises(ModelError, match="is not on node"):
        list(extract_many([TEXTS[0]], "name", ray=cluster[0], model="/nonexistent/model.gguf"))


@pytest.mark.slow  # a real Ray cluster and model
def test_a_model_path_missing_on_a_node_is_named(cluster: tuple[str, int]) -> None:
    # (The last --model given is the one used.)
    argv = qwenjson_argv("--jsonl", "--ray", cluster[0], "--model", "/nonexistent/model.gguf")
    r = run(argv, b"Alice is 34.\n")
    assert r.returncode == EXIT_MODEL, r.stderr.decode()
    assert b"is not on node" in r.stderr and b"Traceback" not in r.stderr
    assert r.stdout == b""


# -- without a cluster (in this process: nothing here gets as far as a model) ---------------------


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"threads": 0}, "threads must be"),
        ({"actors": 0}, "actors must be"),
        ({"n_ctx": 0}, "n_ctx must be"),
        ({"timeout": "soon"}, "timeout must be"),
        ({"max_token": 9}, "unknown option"),
        ({"each": "false"}, "each must be True or False"),
        ({"offline": "yes"}, "offline must be True or False"),
        ({"ordered": "no"}, "ordered must be True or False"),
        ({"max_tokens": 5000}, "leaves no room in a context of 4096"),
        # None is the default context, as extract's (it was a TypeError here).
        ({"max_tokens": 5000, "n_ctx": None}, "leaves no room in a context of 4096"),
        ({"model": object()}, "model must be a registry name"),
    ],
)
def test_extract_many_checks_its_keywords_before_any_cluster(
    keywords: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        next(extract_many(["Ann"], REAL_PERSON, ray="127.0.0.1:9", **keywords))


def test_a_worker_spec_names_its_files_absolutely(
    smollm2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node reads a relative --cache-dir against its raylet's working directory, not the
    # user's: the prompt cache went to a directory nobody named (the model path was absolute).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.gguf").symlink_to(smollm2)
    plan = Plan(REAL_PERSON, "", 512, ExtractOptions(max_tokens=8))
    spec = worker_spec(plan, model="./model.gguf", cache_dir="kv")
    assert (spec.model, spec.cache_dir) == (str(tmp_path / "model.gguf"), str(tmp_path / "kv"))
    assert worker_spec(plan, model="./model.gguf").cache_dir is None  # each node's default


def test_extract_many_checks_the_address_before_any_cluster() -> None:
    # None (or a port number) was an AttributeError from inside the address's parsing.
    for ray in (None, 6379):
        with pytest.raises(UsageError, match="ray must be"):
            next(extract_many(["Ann"], REAL_PERSON, ray=ray))  # type: ignore[arg-type]


@pytest.fixture
def cli_run(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> Callable[..., tuple[int, bytes, bytes]]:
    """``qwenjson extract ARGS`` in this process on SmolLM2: (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, bytes, bytes]:
        stdin = io.TextIOWrapper(io.BytesIO(b"Alice is 34.\n"), encoding="utf-8")
        monkeypatch.setattr("sys.stdin", stdin)
        code = cli.run(qwenjson_argv(*args)[3:])
        captured = capsysbinary.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ray", "local"], "--ray needs --jsonl"),
        (["--jsonl", "--unordered"], "--unordered needs --ray"),
        (["--jsonl", "--ray-actors", "2"], "--ray-actors needs --ray"),
        (["--jsonl", "--ray", "local", "--unordered", "--checkpoint", "ck"], "--unordered can't"),
    ],
)
def test_option_mistakes_are_usage_errors(
    cli_run: Callable[..., tuple[int, bytes, bytes]], args: list[str], message: str
) -> None:
    code, out, err = cli_run(*args)
    assert code == EXIT_USAGE
    assert message in err.decode() and out == b""


def test_a_checkpoint_in_use_is_refused_before_the_cluster_is_asked(
    cli_run: Callable[..., tuple[int, bytes, bytes]], tmp_path: Path
) -> None:
    # A cron run overlapping the last one: refused at once, not after a pool of workers has
    # loaded the model (the address here answers nobody: asked first, it was exit 10).
    import fcntl

    checkpoint = tmp_path / "ck"
    checkpoint.write_bytes(b"")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ("--jsonl", "--ray", f"127.0.0.1:{port}", "--checkpoint", str(checkpoint))
    with open(checkpoint, "rb") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, out, err = cli_run(*argv)
    assert (code, out) == (EXIT_USAGE, b"")
    assert b"is in use by another qwenjson process" in err
    # Not held, the cluster is asked; a checkpoint not there yet is not made by a run that
    # can't connect.
    assert cli_run(*argv)[0] == EXIT_CLUSTER
    checkpoint.unlink()
    assert cli_run(*argv)[0] == EXIT_CLUSTER
    assert not checkpoint.exists()


def test_an_address_nobody_answers_at_is_a_clear_error(
    cli_run: Callable[..., tuple[int, bytes, bytes]],
) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = cli_run("--jsonl", "--ray", f"127.0.0.1:{port}")
    assert code == EXIT_CLUSTER
    assert b"Error: can't reach a Ray cluster" in err and out == b""


def test_an_address_that_is_not_ray_is_a_clear_error(
    cli_run: Callable[..., tuple[int, bytes, bytes]],
) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:  # an HTTP/1 server's reply to anything
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    with server:
        code, out, err = cli_run("--jsonl", "--ray", f"127.0.0.1:{server.getsockname()[1]}")
    assert code == EXIT_CLUSTER
    assert b"answers, but not as a Ray cluster" in err and out == b""


def test_an_address_that_speaks_http2_but_never_answers_as_ray_is_exit_10(
    tmp_path: Path,
) -> None:
    # Any h2c/gRPC service that isn't Ray's head (or a stuck head) passes the probe; Ray then
    # asked it for its cluster ID every 30 s for minutes (a review: still connecting at 120 s).
    server = socket.socket()
    # Every address: Ray connects to this machine's own address, not to 127.0.0.1 as given
    # (one that listens on 127.0.0.1 alone is another wait, not fixed: see the README).
    server.bind(("", 0))
    server.listen()
    held: list[socket.socket] = []

    def answer() -> None:  # a SETTINGS frame to every connection, then silence
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            conn.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")

    threading.Thread(target=answer, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        r = subprocess.run(
            qwenjson_argv("--jsonl", "--ray", address),
            input=b'{"text": "Alice is 34."}\n',
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=110,  # a hang guard, not a timing assertion: Ray's deadline is 30 s
        )
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert (r.returncode, r.stdout) == (EXIT_CLUSTER, b"")
    assert r.stderr.decode().splitlines()[-1].startswith("Error: can't connect to the Ray cluster")


def test_without_ray_installed_the_error_says_how_to_install_it(
    cli_run: Callable[..., tuple[int, bytes, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as without the extra
    code, out, err = cli_run("--jsonl", "--ray", "local")
    assert code == EXIT_CLUSTER
    assert b"pip install 'qwenjson[ray]'" in err and out == b""


def _drain(pipe: IO[bytes]) -> io.BytesIO:
    """Read a child's stderr in the background (so it never blocks on a full pipe)."""
    got = io.BytesIO()

    def read() -> None:
        for chunk in iter(lambda: pipe.read(4096), b""):
            got.write(chunk)

    threading.Thread(target=read, daemon=True).start()
    return got


def test_extract_many_takes_extracts_defaults_for_threads_and_offline() -> None:
    # threads=None (extract's default) went as far as the cluster and failed there with a
    # TypeError; offline= was an unknown option. Both get past the checks to the address.
    with pytest.raises(ClusterError, match=r"127\.0\.0\.1:9"):
        next(extract_many(["Ann"], REAL_PERSON, ray="127.0.0.1:9", threads=None, offline=True))


SIGTERM_IN_RAY_INIT = """
import os, signal
from qwenjson.cluster import connect, import_ray

ray = import_ray()
# Ray's own SIGTERM handler (`sys.exit(signum)`) is installed early in ray.init; the signal
# arrives right after it, as a supervisor's may, and is the real handler's to answer.
install = ray._private.utils.set_sigterm_handler

def install_then_signal(handler):
    install(handler)
    os.kill(os.getpid(), signal.SIGTERM)

ray._private.utils.set_sigterm_handler = install_then_signal

class Mine(BaseException):
    pass

def mine(signum, frame):
    raise Mine()

signal.signal(signal.SIGTERM, mine)
try:
    with connect("local", num_cpus=1):
        print("connected")
except Mine:
    print("this process's handler answered")
except SystemExit as e:
    print("SystemExit", e.code)
print("absl handler off:", ray._private.ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER)
"""


@pytest.mark.slow  # starts (part of) a local Ray cluster
def test_a_sigterm_while_ray_init_runs_is_this_process_s_own(tmp_path: Path) -> None:
    # Ray's handler made it exit 15 with no word; its C++ core's absl handler (now off) made
    # a SIGTERM a little later a stack dump and exit 134. Either way not "Error: terminated"
    # and 143, which a supervisor and the README expect.
    env = {k: v for k, v in os.environ.items() if k != "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"}
    r = subprocess.run(
        [sys.executable, "-c", SIGTERM_IN_RAY_INIT],
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.stdout.decode().splitlines() == [
        "this process's handler answered",
        "absl handler off: True",
    ], r.stderr.decode()[-2000:]
