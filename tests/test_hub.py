"""Downloads against a real HTTP server on 127.0.0.1 serving the real SmolLM2 GGUF.

``HF_ENDPOINT`` points huggingface_hub at the fake hub (tests/hub_server.py), ``HF_HOME`` and
``QWENJSON_CACHE_DIR`` at the test's temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from qwenjson import hub
from qwenjson.errors import EXIT_MODEL, ModelError
from qwenjson.registry import ModelSpec
from tests.hub_server import COMMIT, FILE, REPO, FakeHub

MIB = 1 << 20
# huggingface_hub hands over downloaded bytes in 10 MiB chunks: a cut at 25 MiB leaves 20 MiB.
CUT = 25 * MIB


def make_spec(sha256: str | None, size: int | None = None, **kw: str) -> ModelSpec:
    fields: dict[str, str] = {"name": "smol", "repo": REPO, "file": FILE, "revision": "main"}
    fields.update(kw)
    return ModelSpec(sha256=sha256, size=size, quant="Q4_1", **fields)


def storage(cache: Path) -> Path:
    return cache / ("models--" + REPO.replace("/", "--"))


def partials(cache: Path) -> list[Path]:
    return sorted((storage(cache) / "blobs").glob("*.incomplete"))


def child_env(hf_cache: Path, fake_hub: FakeHub) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HF_HUB_OFFLINE")}
    env.update(
        HF_ENDPOINT=fake_hub.url,
        HF_HOME=str(hf_cache.parent),
        QWENJSON_CACHE_DIR=os.environ["QWENJSON_CACHE_DIR"],
    )
    return env


PULL_SCRIPT = """
import sys
from qwenjson.hub import pull
from qwenjson.registry import ModelSpec
spec = ModelSpec(name="smol", repo=sys.argv[1], file=sys.argv[2], sha256=sys.argv[3] or None)
print(pull(spec))
"""


# -- fresh download ---------------------------------------------------------------------------


def test_fresh_download_is_verified_and_in_the_standard_cache(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    seen: list[tuple[int, int | None]] = []
    spec = make_spec(smol_sha, len(smol_bytes))
    path = hub.pull(spec, progress=lambda done, total: seen.append((done, total)))

    assert path == storage(hf_env) / "snapshots" / COMMIT / FILE
    assert path.read_bytes() == smol_bytes
    assert path.resolve() == storage(hf_env) / "blobs" / smol_sha
    assert (storage(hf_env) / "refs" / "main").read_text() == COMMIT
    assert partials(hf_env) == []
    # progress: from 0 to the full size, never backwards
    assert seen[0] == (0, len(smol_bytes)) and seen[-1] == (len(smol_bytes), len(smol_bytes))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    gets = fake_hub.data_gets()
    assert len(gets) == 1 and gets[0].range is None

    # huggingface_hub's own cache lookup finds the file: the layout is the standard one.
    from huggingface_hub import hf_hub_download

    found = hf_hub_download(REPO, FILE, cache_dir=str(hf_env), local_files_only=True)
    assert Path(found) == path

    # cached and verified: no network on the next pull or local_path
    before = len(fake_hub.log)
    assert hub.local_path(spec) == path
    assert hub.pull(spec) == path
    assert len(fake_hub.log) == before


def test_unpinned_entry_trusts_and_records_the_hub_sha(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str
) -> None:
    spec = make_spec(None)
    path = hub.pull(spec)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == smol_sha
    state = json.loads((Path(os.environ["QWENJSON_CACHE_DIR"]) / "verified.json").read_text())
    assert state["hub"][f"{REPO}/{FILE}@{COMMIT}"] == smol_sha
    assert state["files"][str(path.resolve())]["sha256"] == smol_sha
    assert hub.local_path(spec) == path


def test_hf_token_is_sent_to_the_hub(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_testtoken")
    hub.pull(make_spec(smol_sha))
    heads = fake_hub.requests("HEAD")
    assert heads and all(r.authorization == "Bearer hf_testtoken" for r in heads)


def test_hf_hub_cache_wins_over_hf_home(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    path = hub.pull(make_spec(smol_sha))
    assert path.is_relative_to(tmp_path / "elsewhere")
    assert not hf_env.exists()


# -- interrupted downloads resume -------------------------------------------------------------


def test_dropped_connection_resumes_with_a_range_request(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    fake_hub.drop_after, fake_hub.drops = CUT, 1
    path = hub.pull(make_spec(smol_sha))
    assert path.read_bytes() == smol_bytes
    first, second = fake_hub.data_gets()
    assert first.range is None and first.body_bytes == CUT
    assert second.range is not None
    offset = int(second.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= CUT
    # the second request continued from the offset instead of starting again
    assert second.status == 206 and second.body_bytes == len(smol_bytes) - offset


def test_failed_download_resumes_on_the_next_pull(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    # The connection drops, and the retry gets a 500: this pull fails...
    fake_hub.drop_after, fake_hub.drops, fake_hub.status_after_drops = CUT, 1, 500
    spec = make_spec(smol_sha)
    with pytest.raises(ModelError, match="HTTP 500") as info:
        hub.pull(spec)
    assert info.value.exit_code == EXIT_MODEL
    (partial,) = partials(hf_env)
    kept = partial.stat().st_size
    assert kept > 0
    assert hub.local_path(spec) is None
    assert not (storage(hf_env) / "snapshots").exists()

    # ...and the next one continues from the partial file.
    fake_hub.drop_after = fake_hub.status_after_drops = None
    path = hub.pull(spec)
    assert path.read_bytes() == smol_bytes
    last = fake_hub.data_gets()[-1]
    assert last.range == f"bytes={kept}-" and last.body_bytes == len(smol_bytes) - kept
    assert partials(hf_env) == []


def test_killed_pull_resumes_in_the_next_process(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    fake_hub.stall_after = CUT
    child = subprocess.Popen(
        [sys.executable, "-c", PULL_SCRIPT, REPO, FILE, smol_sha],
        env=child_env(hf_env, fake_hub),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = partials(hf_env)
            if got and got[0].stat().st_size >= 20 * MIB:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child never wrote 20 MiB")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    fake_hub.release.set()
    fake_hub.stall_after = None
    (partial,) = partials(hf_env)
    kept = partial.stat().st_size

    path = hub.pull(make_spec(smol_sha))
    assert path.read_bytes() == smol_bytes
    last = fake_hub.data_gets()[-1]
    assert last.range == f"bytes={kept}-"


def leave_a_partial_download(fake_hub: FakeHub, smol_sha: str) -> None:
    """A pull cut at ``CUT`` bytes, then refused (500): its partial file stays for a resume."""
    fake_hub.drop_after, fake_hub.drops, fake_hub.status_after_drops = CUT, 1, 500
    with pytest.raises(ModelError):
        hub.pull(make_spec(smol_sha))
    fake_hub.drop_after = fake_hub.status_after_drops = None


def test_server_that_ignores_range_still_gives_a_verified_file(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    leave_a_partial_download(fake_hub, smol_sha)
    fake_hub.ignore_range = True
    path = hub.pull(make_spec(smol_sha))
    assert path.read_bytes() == smol_bytes
    assert fake_hub.data_gets()[-1].status == 200


@pytest.mark.parametrize("sized", [True, False], ids=["size-known", "size-unknown"])
def test_a_resume_answered_with_the_whole_file_starts_over(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str, sized: bool
) -> None:
    # A CDN that says 206 to "bytes=N-" but sends every byte from 0: more than the file has.
    # With no size to compare (a mirror without X-Linked-Size, an entry without one), the
    # partial file was left bigger than the file and the pull failed ("stopped at 37 MB of ?").
    leave_a_partial_download(fake_hub, smol_sha)
    fake_hub.range_from_zero = True
    fake_hub.linked_size = sized
    path = hub.pull(make_spec(smol_sha, len(smol_bytes) if sized else None))
    assert path.read_bytes() == smol_bytes
    resumed, again = fake_hub.data_gets()[-2:]
    assert resumed.range is not None and resumed.status == 206
    assert again.range is None and again.status == 200
    assert partials(hf_env) == []


@pytest.mark.parametrize("extra", [b"", b"bytes after the end"], ids=["whole", "too-long"])
def test_a_partial_file_at_or_past_the_end_is_not_stuck_on_http_416(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str, extra: bytes
) -> None:
    # Killed between the last byte and the rename, with the size unknown (a mirror without
    # X-Linked-Size, no size in the entry): the resume asks for a range past the end, and a
    # server answers 416. Every pull failed so, until the user found and deleted the file.
    fake_hub.linked_size = False
    blobs = storage(hf_env) / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{smol_sha}.incomplete").write_bytes(smol_bytes + extra)
    spec = make_spec(None)
    path = hub.pull(spec)
    assert path.read_bytes() == smol_bytes
    asked = fake_hub.data_gets()
    assert asked[0].range == f"bytes={len(smol_bytes) + len(extra)}-" and asked[0].status == 416
    if extra:  # the kept bytes don't hash right: once more from zero
        assert [(g.range, g.status) for g in asked[1:]] == [(None, 200)]
    else:  # the kept bytes are the file: nothing more to fetch
        assert len(asked) == 1
    assert partials(hf_env) == []
    assert hub.local_path(spec) == path


def test_a_416_after_the_hub_clients_own_retry_counts_the_bytes_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A resume answered with a body of no stated length, cut right after the file's last byte:
    # huggingface_hub retries from the new end and gets 416. The bytes written by then are the
    # whole file; taken as the partial file's old size, the size check deleted the download.
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from huggingface_hub import constants

    from qwenjson.hub_cache import _partial_path
    from qwenjson.hub_download import _download_blob

    data = bytes(range(256)) * 40
    sha = hashlib.sha256(data).hexdigest()
    asked: list[str | None] = []

    class Cut(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.headers.get("Range"))
            start = int((asked[-1] or "bytes=0-")[6:].rstrip("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            body = data[start:]
            self.wfile.write(b"%x\r\n" % len(body) + body + b"\r\n")  # no last chunk
            self.wfile.flush()
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Cut)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The bytes left a whole number of the client's chunks (10 MiB each in a real download).
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    blob = tmp_path / sha
    _partial_path(blob).write_bytes(data[:4096])
    try:
        url = f"http://127.0.0.1:{server.server_port}/cdn/{sha}"
        _download_blob(url, blob, sha, None, {}, None, "test.gguf")
    finally:
        server.shutdown()
    assert asked == ["bytes=4096-", f"bytes={len(data)}-"]
    assert blob.read_bytes() == data
    assert not _partial_path(blob).exists()


# -- verification -----------------------------------------------------------------------------


@pytest.mark.parametrize("pinned", [True, False], ids=["registry-sha", "hub-sha"])
def test_wrong_bytes_are_an_error_and_never_used(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str, pinned: bool
) -> None:
    fake_hub.corrupt = True
    spec = make_spec(smol_sha if pinned else None)
    with pytest.raises(ModelError, match="checksum mismatch") as info:
        hub.pull(spec)
    assert "will not be used" in str(info.value)
    assert partials(hf_env) == []
    assert not (storage(hf_env) / "blobs" / smol_sha).exists()
    assert not (storage(hf_env) / "snapshots").exists()
    assert hub.local_path(spec) is None


def test_resumed_download_with_bad_kept_bytes_starts_over(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    # A first attempt stored wrong bytes, then failed; the good server's resume can't be
    # trusted, so pull downloads once more from zero.
    fake_hub.corrupt = True
    fake_hub.drop_after, fake_hub.drops, fake_hub.status_after_drops = 70 * MIB, 1, 500
    with pytest.raises(ModelError):
        hub.pull(make_spec(smol_sha))
    assert partials(hf_env)[0].stat().st_size > len(smol_bytes) // 2  # past the flipped byte
    fake_hub.corrupt = False
    fake_hub.drop_after = fake_hub.status_after_drops = None
    path = hub.pull(make_spec(smol_sha))
    assert path.read_bytes() == smol_bytes
    assert [r.range is None for r in fake_hub.data_gets()[-2:]] == [False, True]


def test_hub_serving_another_file_than_pinned_downloads_nothing(
    hf_env: Path, fake_hub: FakeHub
) -> None:
    with pytest.raises(ModelError, match=r"different .* than the registry pins"):
        hub.pull(make_spec("0" * 64))
    assert fake_hub.data_gets() == []


def damaged_after_a_pull(spec: ModelSpec, good: bytes) -> Path:
    """The blob of a pulled ``spec``, then one of its bytes flipped; returned."""
    blob = hub.pull(spec).resolve()
    damaged = bytearray(good)
    damaged[1000] ^= 0xFF
    blob.write_bytes(bytes(damaged))
    return blob


def test_corrupted_cache_is_not_used_and_pull_repairs_it(
    hf_env: Path,
    fake_hub: FakeHub,
    smol_bytes: bytes,
    smol_sha: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = make_spec(smol_sha)
    damaged_after_a_pull(spec, smol_bytes)
    assert hub.local_path(spec) is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="fails verification"):
        hub.pull(spec)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert hub.pull(spec).read_bytes() == smol_bytes
    assert len(fake_hub.data_gets()) == 2


def test_a_copy_another_pull_repaired_meanwhile_is_kept(
    hf_env: Path,
    fake_hub: FakeHub,
    smol_bytes: bytes,
    smol_sha: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two pulls find the cached file corrupt; the first repairs it while the second waits for
    # the lock. The second must then use the repaired file, not delete it and download again.
    spec = make_spec(smol_sha)
    blob = damaged_after_a_pull(spec, smol_bytes)
    online = hub._pull_online

    def repaired_by_another_pull(*args: object, **kwargs: object) -> Path:
        tmp = blob.with_name(blob.name + ".other")
        tmp.write_bytes(smol_bytes)
        os.replace(tmp, blob)
        return online(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hub, "_pull_online", repaired_by_another_pull)
    path = hub.pull(spec)
    assert path.read_bytes() == smol_bytes
    assert len(fake_hub.data_gets()) == 1  # the first download only


def test_a_lock_that_cannot_be_taken_is_a_model_error(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str
) -> None:
    # As a shared cache another user owns would refuse it (root ignores permissions, so a
    # directory where the lock file goes stands in for that).
    lock = hf_env / ".locks" / storage(hf_env).name / f"{smol_sha}.lock"
    lock.mkdir(parents=True)
    with pytest.raises(ModelError, match="cannot lock"):
        hub.pull(make_spec(smol_sha))
    assert fake_hub.data_gets() == []


@pytest.mark.parametrize(
    "endpoint", ["http://[bad", "localhost:8080", "ftp://mirror", "http://h:x"]
)
def test_an_hf_endpoint_that_is_no_url_is_a_model_error(
    hf_env: Path, smol_sha: str, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(ModelError, match=r"HF_ENDPOINT=.* is not an http\(s\) URL"):
        hub.pull(make_spec(smol_sha))


# -- offline ----------------------------------------------------------------------------------


def test_offline_with_the_file_cached_needs_no_server(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(smol_sha)
    path = hub.pull(spec)
    fake_hub.stop()
    assert hub.pull(spec, offline=True) == path
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.pull(spec) == path


@pytest.mark.parametrize("how", ["argument", "HF_HUB_OFFLINE"])
def test_offline_without_the_file_is_a_model_error(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="qwenjson pull smol") as info:
        hub.pull(make_spec(smol_sha), offline=how == "argument")
    assert info.value.exit_code == EXIT_MODEL
    assert fake_hub.log == []


# -- server errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"repo": "test-org/nope"}, "repository test-org/nope not found"),
        ({"file": "missing.gguf"}, "file missing.gguf not found in"),
        ({"revision": "f" * 40}, f"revision {'f' * 40} not found"),
    ],
    ids=["repo", "file", "revision"],
)
def test_404_is_a_clear_error(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str, change: dict[str, str], message: str
) -> None:
    with pytest.raises(ModelError, match=message) as info:
        hub.pull(replace(make_spec(smol_sha), **change))
    assert info.value.exit_code == EXIT_MODEL
    assert fake_hub.data_gets() == []


@pytest.mark.parametrize("where", ["head", "get"])
def test_500_is_a_clear_error(hf_env: Path, fake_hub: FakeHub, smol_sha: str, where: str) -> None:
    if where == "head":
        fake_hub.head_status = 500
    else:
        fake_hub.get_status = 500
    with pytest.raises(hub.HubUnavailable, match="answered HTTP 500") as info:
        hub.pull(make_spec(smol_sha))
    assert not (storage(hf_env) / "snapshots").exists()
    # The file's bytes come from another host (the CDN): the message names who answered.
    who = f"{fake_hub.cdn_url} (serving files for {fake_hub.url})" if where == "get" else None
    assert str(info.value).startswith(who or f"the hub at {fake_hub.url} answered")


def test_a_bare_404_from_the_cdn_is_not_worth_trying_again_later(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str
) -> None:
    fake_hub.get_status = 404
    with pytest.raises(ModelError, match="answered HTTP 404") as info:
        hub.pull(make_spec(smol_sha))
    assert not isinstance(info.value, hub.HubUnavailable)
    assert "try again later" not in str(info.value) and "check HF_ENDPOINT" in str(info.value)


def test_unreachable_hub_is_a_clear_error(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fake_hub.url
    fake_hub.stop()
    monkeypatch.setenv("HF_ENDPOINT", url)
    with pytest.raises(ModelError, match=f"cannot reach the hub at {url}"):
        hub.pull(make_spec(smol_sha))


# -- concurrency ------------------------------------------------------------------------------


def test_two_concurrent_pulls_both_succeed_with_one_download(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    # Hold every file GET until both processes have asked for the metadata: both are
    # then certainly mid-pull at the same time.
    fake_hub.hold_gets_until_heads = 2
    env = child_env(hf_env, fake_hub)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", PULL_SCRIPT, REPO, FILE, smol_sha],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], results
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert path.read_bytes() == smol_bytes
    assert len(fake_hub.requests("HEAD")) == 2
    assert len(fake_hub.data_gets()) == 1  # the second waited on the lock and reused the blob
    assert partials(hf_env) == []


def test_a_pull_waiting_for_another_shows_that_ones_progress(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    # Another process holds the file's lock and has written part of it: the waiting pull
    # reports those bytes (from the partial file) instead of sitting silent, then takes over.
    from filelock import FileLock

    blobs = storage(hf_env) / "blobs"
    blobs.mkdir(parents=True)
    partial = blobs / f"{smol_sha}.incomplete"
    lock = FileLock(hf_env / ".locks" / storage(hf_env).name / f"{smol_sha}.lock")
    seen: list[tuple[int, int | None]] = []
    result: list[Path] = []
    lock.acquire()
    try:
        partial.write_bytes(smol_bytes[:1000])
        waiter = threading.Thread(
            target=lambda: result.append(
                hub.pull(make_spec(smol_sha), progress=lambda d, t: seen.append((d, t)))
            )
        )
        waiter.start()
        deadline = time.monotonic() + 30
        while (1000, len(smol_bytes)) not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        with partial.open("ab") as f:
            f.write(smol_bytes[1000:5000])
        while (5000, len(smol_bytes)) not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        lock.release()
    waiter.join(timeout=60)
    assert (1000, len(smol_bytes)) in seen and (5000, len(smol_bytes)) in seen
    assert result and result[0].read_bytes() == smol_bytes
    assert fake_hub.data_gets()  # the rest came from the hub once the lock was free
    assert partials(hf_env) == []


# -- disk full --------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_disk_full_mid_download_is_a_clear_error_and_leaves_nothing(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str
) -> None:
    # /dev/full fails every write with ENOSPC: the kernel's own "disk full".
    blobs = storage(hf_env) / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{smol_sha}.incomplete").symlink_to("/dev/full")
    spec = make_spec(smol_sha)
    with pytest.raises(ModelError, match="disk filled up") as info:
        hub.pull(spec)
    assert info.value.exit_code == EXIT_MODEL
    assert list(blobs.iterdir()) == []
    assert hub.local_path(spec) is None


def test_too_little_free_space_fails_before_downloading(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage

    def tiny(path: str | os.PathLike[str]) -> object:
        usage = real(path)
        return type(usage)(usage.total, usage.total - 1000, 1000)

    monkeypatch.setattr(shutil, "disk_usage", tiny)
    with pytest.raises(ModelError, match="not enough disk space"):
        hub.pull(make_spec(smol_sha))
    assert fake_hub.data_gets() == []
    assert partials(hf_env) == []


# -- check_gguf and ensure_model --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "model file not found"),
        (b"", "is empty"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "Git LFS pointer"),
        (b"PK\x03\x04 a zip file", "not a GGUF model file"),
    ],
    ids=["missing", "empty", "lfs-pointer", "not-gguf"],
)
def test_check_gguf_refuses_non_models(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        hub.check_gguf(path)


def test_check_gguf_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a directory"):
        hub.check_gguf(tmp_path)


def test_ensure_model_takes_a_local_gguf_without_network(
    hf_env: Path, fake_hub: FakeHub, smollm2: Path
) -> None:
    path = smollm2
    assert hub.ensure_model(str(path), offline=True) == path
    assert fake_hub.log == []


def test_ensure_model_pulls_a_user_registry_entry_then_runs_offline(
    hf_env: Path,
    fake_hub: FakeHub,
    smol_bytes: bytes,
    smol_sha: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        f'["smol"]\nrepo = "{REPO}"\nfile = "{FILE}"\nsha256 = "{smol_sha}"\n'
        f'size = {len(smol_bytes)}\nquant = "Q4_1"\n'
    )
    monkeypatch.setenv("QWENJSON_MODELS_FILE", str(models))
    path = hub.ensure_model("smol", offline=False)
    assert path.read_bytes() == smol_bytes
    fake_hub.stop()
    assert hub.ensure_model("smol", offline=True) == path


def test_ensure_model_pulls_an_hf_reference(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes
) -> None:
    path = hub.ensure_model(f"hf:{REPO}/{FILE}@{COMMIT}", offline=False)
    assert path.read_bytes() == smol_bytes
    assert path.parent.name == COMMIT


def test_refresh_follows_a_moved_branch_and_never_refetches_a_pinned_commit(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes
) -> None:
    branch = make_spec(None)  # revision "main"
    old = hub.pull(branch)
    pinned = make_spec(None, revision=COMMIT)
    assert hub.pull(pinned, refresh=True) == old  # same commit: cached, no request
    heads = len(fake_hub.requests("HEAD"))
    assert heads == 1

    # The repo's main moves to a new commit with a new file.
    newer = smol_bytes + b"\0" * 64
    fake_hub.commit = "f" * 40
    fake_hub.add_file(REPO, FILE, newer)
    assert hub.pull(branch) == old  # without refresh: the cache answers, no network
    assert len(fake_hub.requests("HEAD")) == heads
    new = hub.pull(branch, refresh=True)
    assert new.parent.name == "f" * 40 and new.read_bytes() == newer
    assert hub.local_path(branch) == new  # refs/main moved too
    assert old.read_bytes() == smol_bytes  # the old snapshot is intact


def test_a_file_downloaded_by_huggingface_hub_itself_is_found_and_verified(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    # `hf download` / hf_hub_download put it there: qwenjson uses it without downloading again.
    from huggingface_hub import hf_hub_download

    theirs = Path(hf_hub_download(REPO, FILE, cache_dir=str(hf_env), endpoint=fake_hub.url))
    gets = len(fake_hub.data_gets())
    for spec in (make_spec(smol_sha), make_spec(None), make_spec(None, revision=COMMIT)):
        assert hub.local_path(spec) == theirs
        assert hub.pull(spec) == theirs
    assert len(fake_hub.data_gets()) == gets


def test_a_cached_model_needs_neither_network_nor_huggingface_hub(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str
) -> None:
    path = hub.pull(make_spec(smol_sha))
    env = child_env(hf_env, fake_hub)
    fake_hub.stop()
    # a fresh interpreter: startup cost is the point
    script = (
        "import sys\n"
        "from qwenjson.hub import pull\n"
        "from qwenjson.registry import ModelSpec\n"
        f"spec = ModelSpec(name='smol', repo={REPO!r}, file={FILE!r}, sha256={smol_sha!r})\n"
        "print(pull(spec))\n"
        "assert 'huggingface_hub' not in sys.modules\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(path)


def _rot(path: Path) -> None:
    """Flip a byte in place and put the mtime back, as bit rot on an SD card would."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_bit_rot_is_caught_by_an_explicit_pull_and_by_the_weekly_recheck(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    spec = make_spec(smol_sha)
    path = hub.pull(spec)
    _rot(path.resolve())
    # `qwenjson pull` hashes again: the rotten file is replaced by a good download
    assert hub.pull(spec, refresh=True).read_bytes() == smol_bytes
    assert len(fake_hub.data_gets()) == 2

    # a verification record older than a week is not trusted
    _rot(path.resolve())
    state_file = Path(os.environ["QWENJSON_CACHE_DIR"]) / "verified.json"
    state = json.loads(state_file.read_text())
    state["files"][str(path.resolve())]["checked_at"] -= 8 * 24 * 3600
    state_file.write_text(json.dumps(state))
    assert hub.local_path(spec) is None


def test_a_missing_file_named_like_a_registry_file_points_at_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QWENJSON_MODELS_FILE", raising=False)
    with pytest.raises(
        ModelError, match=r"use the registry name: --model qwen2\.5-0\.5b-instruct$"
    ):
        hub.ensure_model(str(tmp_path / "qwen2.5-0.5b-instruct-q4_k_m.gguf"), offline=True)
    with pytest.raises(ModelError, match=r"^model file not found: .*other\.gguf$"):
        hub.ensure_model(str(tmp_path / "other.gguf"), offline=True)


def test_a_pinned_file_on_a_branch_is_its_verified_copy_whatever_the_hub_says(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str
) -> None:
    # A sha256 means one file: `pull` of an entry pinned by sha256 on `main` failed (exit 4)
    # once upstream moved `main` to another file, and whenever the hub couldn't be reached.
    spec = make_spec(smol_sha, size=len(smol_bytes))
    path = hub.pull(spec)
    fake_hub.commit = "e" * 40
    fake_hub.add_file(REPO, FILE, smol_bytes + b"\0")
    heads = len(fake_hub.requests("HEAD"))
    assert hub.pull(spec, refresh=True) == path
    assert len(fake_hub.requests("HEAD")) == heads  # not asked


def test_another_file_of_the_repo_on_the_branch_leaves_the_first_one_found(
    hf_env: Path,
    fake_hub: FakeHub,
    smol_bytes: bytes,
    smol_sha: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pulling a second file moved refs/main to a commit whose snapshot lacks the first: the
    # first was "not downloaded" (offline: exit 4), though verified and on disk. Found by its
    # pin (an entry without one isn't: nothing tells which revision an older copy was for).
    first = make_spec(smol_sha)
    path = hub.pull(first)
    fake_hub.commit = "e" * 40
    fake_hub.add_file(REPO, "other.gguf", b"GGUF" + b"\1" * 100)
    hub.pull(make_spec(None, name="other", file="other.gguf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.pull(first) == path
    assert hub.local_path(first) == path
    # The branch's file at another commit is no copy of a pinned file: neither taken nor
    # deleted as a damaged one.
    fake_hub.commit = "d" * 40
    fake_hub.add_file(REPO, FILE, smol_bytes + b"\0")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    moved = hub.pull(make_spec(None), refresh=True)  # the branch's newer file, unpinned
    assert hub.pull(first) == path and moved.read_bytes() == smol_bytes + b"\0"


@pytest.mark.parametrize("damage", ["files null", "hub a list", "checked_at text"])
def test_a_verified_json_of_another_shape_is_as_if_absent(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, damage: str
) -> None:
    # Every command was exit 1 ("internal error") until someone found the file and deleted it.
    from qwenjson.hub_cache import _state_file

    path = hub.pull(make_spec(None))
    state = json.loads(_state_file().read_text(encoding="utf-8"))
    if damage == "files null":
        state["files"] = None
    elif damage == "hub a list":
        state["hub"] = []
    else:
        assert state["files"]
        for record in state["files"].values():
            record["checked_at"] = "soon"
    _state_file().write_text(json.dumps(state), encoding="utf-8")
    assert hub.pull(make_spec(None)) == path
    assert hub.local_path(make_spec(None)) == path


def test_a_stored_file_of_the_wrong_size_is_never_named_verified(
    hf_env: Path,
    fake_hub: FakeHub,
    smol_bytes: bytes,
    smol_sha: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Where locks don't hold (NFS), another process wrote to the same partial file: the bytes
    # received hashed right, and a file twice as long was renamed "verified".
    from qwenjson import hub_download

    fetch = hub_download._fetch_into

    def doubled(url: str, partial: Path, *args: object, **kw: object) -> tuple[int, str, int]:
        got = fetch(url, partial, *args, **kw)  # type: ignore[arg-type]
        with partial.open("ab") as f:
            f.write(partial.read_bytes())  # what a second writer appended
        return got

    monkeypatch.setattr(hub_download, "_fetch_into", doubled)
    # With its size known, and unknown (a mirror without X-Linked-Size, no size in the entry).
    with pytest.raises(ModelError, match=r"was stored as .* bytes, not"):
        hub.pull(make_spec(smol_sha, size=len(smol_bytes)))
    assert hub.local_path(make_spec(smol_sha, size=len(smol_bytes))) is None
    assert partials(hf_env) == []
    monkeypatch.setattr(hub_download, "_check_space", lambda *a: None)
    with pytest.raises(ModelError, match=r"was stored as .* bytes, not"):
        hub_download._download_blob(
            fake_hub.url + f"/{REPO}/resolve/main/{FILE}",
            hf_env / "blob",
            smol_sha,
            None,
            {},
            None,
            "smol",
        )
    assert not (hf_env / "blob").exists()


# -- a hub's headers are no paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "corrupt"),
    [
        ("X-Linked-Etag", '"../../../../victim/precious.txt"', False),
        ("X-Linked-Etag", '"../../../../victim/precious.txt"', True),
        ("X-Linked-Etag", '"."', False),
        ("X-Repo-Commit", "../../../../victim", False),
        ("X-Repo-Commit", "abc", False),
    ],
    ids=["etag-path", "etag-path-wrong-bytes", "etag-dot", "commit-path", "commit-short"],
)
def test_a_hub_header_that_is_no_hash_writes_and_deletes_nothing(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str, header: str, value: str, corrupt: bool
) -> None:
    # A hostile or broken mirror: the ETag named the blob (the model was written over
    # victim/precious.txt, or it was deleted when the bytes were wrong), the commit named the
    # snapshot folder and refs/main. The registry's sha256 pin doesn't help there.
    victim = hf_env / "victim" / "precious.txt"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"precious")
    fake_hub.redirect_headers = {header: value}
    fake_hub.corrupt = corrupt
    with pytest.raises(ModelError, match="that is not a hash"):
        hub.pull(make_spec(smol_sha))
    assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["precious.txt"]
    assert fake_hub.data_gets() == []
    assert not storage(hf_env).exists() or not (storage(hf_env) / "snapshots").exists()


def test_a_pinned_commit_answered_with_another_commit_downloads_nothing(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str
) -> None:
    # The copy was stored under the hub's commit, where `hf:…@COMMIT` never looks again.
    fake_hub.redirect_headers = {"X-Repo-Commit": "f" * 40}
    with pytest.raises(ModelError, match=f"answered with commit {'f' * 40}"):
        hub.pull(make_spec(smol_sha, revision=COMMIT))
    assert fake_hub.data_gets() == []


def test_a_negative_size_from_the_hub_is_a_model_error(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str
) -> None:
    fake_hub.redirect_headers = {"X-Linked-Size": "-5"}
    with pytest.raises(ModelError, match="a size of -5 bytes"):
        hub.pull(make_spec(None))
    assert fake_hub.data_gets() == []


def test_a_corrupt_snapshot_link_to_a_users_file_takes_only_the_link(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes, smol_sha: str, tmp_path: Path
) -> None:
    mine = tmp_path / "mine" / "my.gguf"
    mine.parent.mkdir()
    mine.write_bytes(b"GGUF my own fine-tune")
    pointer = storage(hf_env) / "snapshots" / COMMIT / FILE
    pointer.parent.mkdir(parents=True)
    pointer.symlink_to(mine)
    (storage(hf_env) / "refs").mkdir()
    (storage(hf_env) / "refs" / "main").write_text(COMMIT)
    path = hub.pull(make_spec(smol_sha))
    assert path == pointer and path.read_bytes() == smol_bytes
    assert mine.read_bytes() == b"GGUF my own fine-tune"


@pytest.mark.parametrize("where", ["blob", "partial"])
def test_a_directory_in_the_downloads_place_is_a_model_error(
    hf_env: Path, fake_hub: FakeHub, smol_sha: str, where: str
) -> None:
    blob = storage(hf_env) / "blobs" / smol_sha
    (blob if where == "blob" else blob.with_name(blob.name + ".incomplete")).mkdir(parents=True)
    with pytest.raises(ModelError, match="delete it"):
        hub.pull(make_spec(smol_sha))


def test_checking_a_branch_needs_no_lock_when_the_cache_holds_its_file(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes
) -> None:
    # A read-only cache in a container image (root ignores permissions: a file where the
    # lock folder goes stands in): `pull` of a branch that hasn't moved failed with "cannot
    # lock".
    branch = make_spec(None)
    path = hub.pull(branch)
    locks = hf_env / ".locks"
    shutil.rmtree(locks)
    locks.write_bytes(b"")
    assert hub.pull(branch, refresh=True) == path
    assert len(fake_hub.requests("HEAD")) == 2 and len(fake_hub.data_gets()) == 1


def test_a_branch_moves_only_once_its_new_file_is_linked(
    hf_env: Path, fake_hub: FakeHub, smol_bytes: bytes
) -> None:
    branch = make_spec(None)
    old = hub.pull(branch)
    fake_hub.commit = "f" * 40
    fake_hub.add_file(REPO, FILE, smol_bytes + b"\0" * 64)
    # The new snapshot's link can't be made (as a pull killed between the two steps).
    (storage(hf_env) / "snapshots" / ("f" * 40) / FILE).mkdir(parents=True)
    with pytest.raises(ModelError, match="cannot link"):
        hub.pull(branch, refresh=True)
    assert (storage(hf_env) / "refs" / "main").read_text() == COMMIT
    assert hub.pull(branch, offline=True) == old
