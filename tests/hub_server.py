"""A fake Hugging Face hub: a real HTTP server on 127.0.0.1 for the download tests.

It answers what huggingface_hub asks when it downloads a file:

- ``HEAD``/``GET /{owner}/{name}/resolve/{revision}/{file}``: for an LFS file the hub answers
  302 to a CDN URL with ``X-Repo-Commit``, ``X-Linked-Etag`` (the LFS sha256) and
  ``X-Linked-Size``; errors carry ``X-Error-Code`` (RepoNotFound, RevisionNotFound,
  EntryNotFound), which huggingface_hub maps to its exception types.
- ``GET /cdn/{sha256}``: the bytes, honouring ``Range: bytes=N-`` with 206 and Content-Range
  (416 for a range past the end, as S3 and CloudFront answer).

No Xet headers are sent, so huggingface_hub takes the plain HTTP path. Switches on the server
object make it misbehave: cut the connection after N bytes, stall, send wrong bytes, answer
404/500, ignore Range, answer it with the whole file, or leave out the size. Every request is
logged with its Range and Authorization headers.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
FILE = "smollm2-135m-instruct-q4_1.gguf"


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int = 0
    body_bytes: int = 0


@dataclass
class HostedFile:
    """A file of a fake repo."""

    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class FakeHub:
    """The server's state and its misbehaviour switches (change them between requests)."""

    repos: dict[str, dict[str, HostedFile]] = field(default_factory=dict)
    commit: str = COMMIT
    log: list[Request] = field(default_factory=list)
    # Cut the connection after this many body bytes, for the next `drops` GETs of file data.
    drop_after: int | None = None
    drops: int = 0
    # Once the drops are used up, answer file GETs with this status (None: serve normally).
    status_after_drops: int | None = None
    # Stall (send nothing more) after this many body bytes until `release` is set.
    stall_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    corrupt: bool = False  # flip one byte in the middle of every file served
    ignore_range: bool = False  # answer Range requests with 200 and the whole file
    # Answer Range requests with 206 and a Content-Range, but send the whole file (a broken CDN).
    range_from_zero: bool = False
    linked_size: bool = True  # send X-Linked-Size (a mirror may not: the size is then unknown)
    # Headers of the resolve redirect replaced (a hostile or broken mirror: X-Linked-Etag...).
    redirect_headers: dict[str, str] = field(default_factory=dict)
    head_status: int | None = None  # answer resolve HEADs with this status
    get_status: int | None = None  # answer file GETs with this status
    # File GETs wait (up to 30 s) until this many resolve HEADs have arrived.
    hold_gets_until_heads: int = 0
    heads_seen: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)
    servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def add_file(self, repo: str, filename: str, data: bytes) -> HostedFile:
        """Host ``data`` as ``filename`` in ``repo``."""
        hosted = HostedFile(data=data, sha256=hashlib.sha256(data).hexdigest())
        self.repos.setdefault(repo, {})[filename] = hosted
        return hosted

    @property
    def url(self) -> str:
        """The hub's endpoint (for HF_ENDPOINT)."""
        return self._base(0)

    @property
    def cdn_url(self) -> str:
        """The file-bytes server: another origin, as the real hub's CDN is."""
        return self._base(1)

    def _base(self, index: int) -> str:
        assert self.servers, "start the server first"
        host, port = self.servers[index].server_address[:2]
        return f"http://{host!s}:{port}"

    def requests(self, method: str | None = None, prefix: str = "") -> list[Request]:
        """Logged requests, optionally filtered by method and path prefix."""
        with self.lock:
            return [
                r
                for r in self.log
                if (method is None or r.method == method) and r.path.startswith(prefix)
            ]

    def data_gets(self) -> list[Request]:
        """The GETs of file bytes (not the resolve redirects)."""
        return self.requests("GET", "/cdn/")

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            state = hub

        # Two origins: the hub answers /resolve/, the "CDN" serves bytes (like cdn-lfs.hf.co).
        for _ in range(2):
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        return self

    def stop(self) -> None:
        """Stop answering; connections are refused from now on."""
        self.release.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()
        self.servers = []

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    state: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def end_headers(self) -> None:
        # No keep-alive: a pooled connection would outlive stop() and a later server on the
        # same port, and answer for the wrong test.
        self.send_header("Connection", "close")
        self.close_connection = True
        super().end_headers()

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # -- helpers ------------------------------------------------------------------------------

    def _record(self) -> Request:
        request = Request(
            method=self.command,
            path=urlsplit(self.path).path,
            range=self.headers.get("Range"),
            authorization=self.headers.get("Authorization"),
        )
        with self.state.lock:
            self.state.log.append(request)
        return request

    def _send_head(
        self, request: Request, status: int, headers: dict[str, str], length: int
    ) -> None:
        request.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _reply(
        self, request: Request, status: int, headers: dict[str, str], body: bytes = b""
    ) -> None:
        self._send_head(request, status, headers, len(body))
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            request.body_bytes = len(body)

    def _error(self, request: Request, status: int, code: str | None, message: str) -> None:
        headers = {"X-Repo-Commit": self.state.commit}
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        self._reply(request, status, headers, message.encode())

    def _serve(self, head: bool) -> None:
        request = self._record()
        path = request.path
        if path.startswith("/cdn/"):
            self._serve_bytes(request, path[len("/cdn/") :], head)
            return
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) < 5 or parts[2] != "resolve":
            self._error(request, 404, None, "Not Found")
            return
        repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        state = self.state
        if head:
            with state.lock:
                state.heads_seen += 1
                state.lock.notify_all()
            if state.head_status is not None:
                self._error(request, state.head_status, None, "switch: head_status")
                return
        files = state.repos.get(repo)
        if files is None:
            self._error(request, 404, "RepoNotFound", "Repository not found")
            return
        if revision not in ("main", state.commit):
            self._error(request, 404, "RevisionNotFound", "Invalid rev id")
            return
        hosted = files.get(filename)
        if hosted is None:
            self._error(request, 404, "EntryNotFound", "Entry not found")
            return
        self._reply(
            request,
            302,
            {
                "Location": f"{state.cdn_url}/cdn/{hosted.sha256}",
                "X-Repo-Commit": state.commit,
                "X-Linked-Etag": f'"{hosted.sha256}"',
                "ETag": '"0000pointer"',
            }
            | ({"X-Linked-Size": str(hosted.size)} if state.linked_size else {})
            | state.redirect_headers,
        )

    def _find(self, sha: str) -> HostedFile | None:
        for files in self.state.repos.values():
            for hosted in files.values():
                if hosted.sha256 == sha:
                    return hosted
        return None

    def _serve_bytes(self, request: Request, sha: str, head: bool) -> None:
        state = self.state
        hosted = self._find(sha)
        if hosted is None:
            self._error(request, 404, None, "no such object")
            return
        if not head:
            with state.lock:
                state.lock.wait_for(
                    lambda: state.heads_seen >= state.hold_gets_until_heads, timeout=30
                )
                drop = state.drop_after if state.drops > 0 else None
                if drop is not None:
                    state.drops -= 1
                    status_override = None
                elif state.drop_after is not None and state.status_after_drops is not None:
                    status_override = state.status_after_drops
                else:
                    status_override = state.get_status
            if status_override is not None:
                self._error(request, status_override, None, "switch: status")
                return
        else:
            drop = None
        data = hosted.data
        if state.corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        start = 0
        status = 200
        headers = {"ETag": f'"{hosted.sha256}"', "Accept-Ranges": "bytes"}
        if request.range and not state.ignore_range:
            start = int(request.range.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):  # as S3 and CloudFront answer a range past the end
                headers["Content-Range"] = f"bytes */{len(data)}"
                self._reply(request, 416, headers, b"Range Not Satisfiable")
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = memoryview(data)[0 if state.range_from_zero else start :]
        self._send_head(request, status, headers, len(body))
        if head:
            return
        limit = len(body) if drop is None else min(drop, len(body))
        stall = state.stall_after
        sent = 0
        try:
            while sent < limit:
                if stall is not None and sent >= stall:
                    state.release.wait(60)
                    stall = None
                end = min(sent + (1 << 20), limit)
                if stall is not None:
                    end = min(end, stall)
                self.wfile.write(body[sent:end])
                sent = end
                request.body_bytes = sent
        except (BrokenPipeError, ConnectionResetError):
            pass
        if drop is not None:
            self.wfile.flush()
            time.sleep(0.05)
            self.close_connection = True
            self.connection.shutdown(2)


# -- fixtures (tests/conftest.py registers this module as a plugin) -------------------------------


@pytest.fixture(scope="session")
def smol_bytes(smollm2: Path) -> bytes:
    return smollm2.read_bytes()


@pytest.fixture(scope="session")
def smol_sha(smol_bytes: bytes) -> str:
    return hashlib.sha256(smol_bytes).hexdigest()


@pytest.fixture
def fake_hub(smol_bytes: bytes) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_file(REPO, FILE, smol_bytes)
        yield server


@pytest.fixture
def hf_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_hub: FakeHub) -> Path:
    """Point huggingface_hub and qwenjson at the fake hub and temporary caches."""
    for var in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HUB_OFFLINE",
        "HF_TOKEN",
        "QWENJSON_MODELS_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("QWENJSON_CACHE_DIR", str(tmp_path / "state"))
    return tmp_path / "hf" / "hub"
