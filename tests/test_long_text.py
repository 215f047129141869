"""Texts longer than the context on a real model (SmolLM2-135M), through the command: every
person once with evidence that points at them, a kill -9 mid-document resumed to the same
bytes, a single object whose fields are in different pieces, and the bar over the pieces on
a terminal.

SmolLM2 loses track of a list of more than three or four names, so the documents are made of
short paragraphs and read in small pieces (``--ctx 512 --chunk-tokens 32``): what is tested is
the splitting, merging and resuming, with a model that finds what each piece holds.
"""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from qwenjson.chunking import split
from qwenjson.pipeline import open_model
from tests.grammar_engine import default_model_path
from tests.helpers import extract_argv, qwenjson, wait_for_lines

pytestmark = pytest.mark.model

MODEL = str(default_model_path())
NAMES = [
    "Alice Morgan", "Bruno Keller", "Chen Wei", "Dara Okafor", "Elena Petrova", "Farid Haddad",
    "Grace Liu", "Hugo Martin", "Ines Duarte", "Jonas Berg", "Kenji Sato", "Lena Fischer",
    "Marco Rossi", "Nadia Khan", "Oscar Lindqvist", "Priya Nair",
]  # fmt: skip
TEAM = "\n\n".join(f"{n} joined the team." for n in NAMES) + "\n"
PIECES = ("--ctx", "512", "--max-tokens", "128", "--chunk-tokens", "32", "--chunk-overlap", "12")
PERSON = "name: full name of a person"


def argv(*args: str) -> list[str]:
    return extract_argv(*args)


def extract(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return qwenjson("extract", "-m", MODEL, "--threads", "1", *args, stdin=stdin)


def names_in_overlaps() -> list[str]:
    """The names that lie where two pieces overlap (the pieces the command will read)."""
    pieces = split_team()
    shared = [(b.start, a.end) for a, b in itertools.pairwise(pieces)]
    return [n for n in NAMES if any(s <= TEAM.index(n) < e for s, e in shared)]


@pytest.mark.slow
def test_each_person_of_a_long_text_once_in_order_with_evidence() -> None:
    assert len(names_in_overlaps()) >= 4  # the test means something: names seen twice
    r = extract("--each", "-s", PERSON, "--evidence", *PIECES, stdin=TEAM.encode())
    assert r.returncode == 0, r.stderr.decode()
    items = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["data"]["name"] for x in items] == NAMES
    for item in items:
        start, end = item["evidence"]["/name"]
        assert TEAM[start:end] == item["data"]["name"]
    # Without --chunks the same text is refused, as before.
    refused = extract(
        "--each",
        "-s",
        PERSON,
        "--no-chunks",
        "--ctx",
        "512",
        "--max-tokens",
        "448",
        stdin=TEAM.encode(),
    )
    assert refused.returncode == 6 and b"too long" in refused.stderr


@pytest.mark.slow
def test_kill_9_mid_document_then_checkpoint_rerun_gives_the_same_bytes(tmp_path: Path) -> None:
    args = ("--each", "-s", PERSON, *PIECES)
    whole = extract(*args, stdin=TEAM.encode())
    assert whole.returncode == 0, whole.stderr.decode()
    (tmp_path / "team.txt").write_text(TEAM)
    resumable = argv(
        *args, "--input", str(tmp_path / "team.txt"), "--checkpoint", str(tmp_path / "ck")
    )
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    with out.open("ab") as sink:
        proc = subprocess.Popen(resumable, stdout=sink, stderr=subprocess.PIPE)
        wait_for_lines(out, 5, proc)
        killed = proc.poll() is None
        proc.kill()  # SIGKILL: no handler runs
        proc.wait(timeout=300)
        assert proc.stderr is not None
        proc.stderr.close()
    assert killed  # it really died mid-document
    before = pieces_logged(tmp_path / "ck")
    assert before  # pieces were logged before the kill
    with out.open("ab") as sink:
        rerun = subprocess.run(resumable, stdout=sink, stderr=subprocess.PIPE, timeout=600)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert out.read_bytes() == whole.stdout
    after = pieces_logged(tmp_path / "ck")
    # The rerun went on at the next piece: each piece was extracted (and logged) once.
    assert after[: len(before)] == before and after == list(range(len(after)))


def pieces_logged(checkpoint: Path) -> list[int]:
    lines = checkpoint.read_text().splitlines()[1:]
    return [entry["piece"] for entry in map(json.loads, lines) if "piece" in entry]


def test_a_single_object_takes_each_field_from_the_piece_that_has_it() -> None:
    filler = [
        "The weather was mild.",
        "Coffee was served.",
        "The room was quiet.",
        "Slides were shown.",
    ]
    paragraphs = [
        "Project: Falcon.", *filler, "Budget: 120000 dollars.", *filler[::-1],
        "Manager: Sara Lopez.", *filler,
    ]  # fmt: skip
    text = "\n\n".join(paragraphs) + "\n"
    # The manager first: SmolLM2 otherwise writes any name it sees under the first field.
    schema = "manager?: full name of the manager, project?: name of the project, budget? int"
    pieces = ("--ctx", "512", "--max-tokens", "128", "--chunk-tokens", "24")
    r = extract("-s", schema, "--evidence", *pieces, stdin=text.encode())
    assert r.returncode == 0, r.stderr.decode()
    shown: dict[str, Any] = json.loads(r.stdout)
    assert shown["data"] == {"manager": "Sara Lopez", "project": "Falcon", "budget": 120000}
    assert list(shown["evidence"]) == ["/manager", "/project", "/budget"]
    for pointer, span in shown["evidence"].items():
        assert text[span[0] : span[1]] == str(shown["data"][pointer[1:]])


def test_on_a_terminal_a_bar_counts_the_pieces_and_stdout_stays_the_same() -> None:
    args = ("--each", "-s", PERSON, *PIECES)
    screen = bytearray()
    main, side = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    try:
        proc = subprocess.Popen(
            argv(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=side, env=env
        )
        os.close(side)
        reader = threading.Thread(target=_read_all, args=(main, screen))  # else the pty fills
        reader.start()
        out, _ = proc.communicate(TEAM.encode(), timeout=600)
        reader.join(timeout=30)
    finally:
        os.close(main)
    assert proc.returncode == 0
    # The bar is on stderr only: stdout is what it is without a terminal (the first test).
    assert [json.loads(line) for line in out.splitlines()] == [{"name": n} for n in NAMES]
    shown = screen.decode("utf-8", "replace")
    counts = [tuple(map(int, m)) for m in re.findall(r"pieces\s.*?(\d+)/(\d+)", shown)]
    assert counts, shown[-2000:]
    done, total = counts[-1]
    assert done == total == len(list(split_team())) and done > 3


def split_team() -> list[Any]:
    engine = open_model(MODEL, threads=1)
    try:
        return list(split(TEAM, engine.count_tokens, 32, 12))
    finally:
        engine.close()


def _read_all(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other side closed
            return
        if not chunk:
            return
        into.extend(chunk)


def test_an_overlap_too_large_for_the_context_is_refused_once_before_any_record() -> None:
    # The piece is what the context holds beside the prompt and --max-tokens (here ~170
    # tokens), not the 256 of --chunk-tokens' default: checked against the latter only, every
    # record, even a ten-token one, failed on its own (exit 8 for the batch).
    options = ("--ctx", "512", "--max-tokens", "256", "--chunk-overlap", "100", "-s", "name")
    r = extract(*options, "--jsonl", "--field", "text", stdin=b'{"text": "Ann is 30."}\n' * 2)
    assert r.returncode == 2 and r.stdout == b""
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --chunk-overlap 100 must be less ")
    fits = extract(*options[:4], "--chunk-overlap", "40", "-s", "name", stdin=b"Ann is 30.")
    assert fits.returncode == 0, fits.stderr.decode()
