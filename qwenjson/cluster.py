"""Connecting to a Ray cluster for ``extract --jsonl --ray ADDRESS`` (the pool is ``actors.py``).

``local`` starts a private cluster for the run; ``auto`` is the one ``ray start`` made on this
machine; anything else is a head node's ``HOST[:PORT]``. Ray is an optional extra
(``pip install 'qwenjson[ray]'``): without it, ``--ray`` is a ClusterError saying so (exit 10).
``extract_many`` is the Python API: texts in, documents out, on a cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from qwenjson import deadline
from qwenjson.errors import ClusterError, QwenJsonError, UsageError
from qwenjson.jsontypes import is_whole_number

if TYPE_CHECKING:
    from qwenjson.chunking import Piece
    from qwenjson.executor import RecordSink, RecordTask
    from qwenjson.merging import Found

__all__ = ["INSTALL_HINT", "Cluster", "connect", "extract_many", "import_ray", "unwrapped"]

INSTALL_HINT = "pip install 'qwenjson[ray]'"
CONNECT_SECONDS = 5.0  # a cluster address that doesn't answer within this is an error
DEFAULT_PORT = 6379  # what `ray start --head` listens on
TEMP_PREFIX = "qj-ray-"  # a private cluster's temp dir: /tmp/qj-ray-PID-…


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ClusterError saying how to install it."""
    # Read when Ray is imported: otherwise its C++ core installs absl's failure handler for
    # SIGTERM in this process while ray.init runs, and a supervisor's SIGTERM then was a
    # stack dump and SIGABRT (exit 134: 2 of 9 runs signalled 4.5-6 s into a `--ray local`
    # start, 0 of 5 with this), not this process's "Error: terminated" and 143.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@dataclass
class Cluster:
    """A connected Ray cluster: its address and the CPUs of its live nodes."""

    ray: ModuleType
    address: str

    def node_cpus(self) -> list[int]:
        """Whole CPUs of each live node."""
        nodes = self.ray.nodes()
        return [int(n["Resources"].get("CPU", 0)) for n in nodes if n.get("Alive")]

    def default_actors(self, threads: int) -> int:
        """One actor per ``threads`` CPUs of each node, within what Ray reports free now."""
        per_node = sum(cpus // threads for cpus in self.node_cpus())
        free = int(self.ray.available_resources().get("CPU", 0)) // threads
        return max(1, min(per_node, free) if free else per_node)


@contextlib.contextmanager
def connect(address: str, *, num_cpus: int | None = None, quiet: bool = False) -> Iterator[Cluster]:
    """Connect this process to a Ray cluster for the block, then disconnect.

    ``address``: ``local`` starts a private cluster on this machine for the block (``num_cpus``:
    its size, default all cores); ``auto`` is the cluster ``ray start`` made on this machine (or
    ``RAY_ADDRESS``); else ``HOST[:PORT]`` of a head node (port 6379 by default). An address that
    doesn't answer is a ClusterError within ``CONNECT_SECONDS``, not a wait of minutes. Ray's own
    output never reaches stdout (``quiet``: nor stderr), and this process's signal handlers stay
    its own. A process that is already connected (its own ``ray.init``) keeps its connection:
    ``address`` is not used.
    """
    if address != "local":
        # A server that speaks HTTP/2 but is no Ray head (another gRPC service, a stuck head)
        # passes the probe, and Ray asked it for its cluster ID again every 30 s for minutes
        # (a review: still connecting at 120 s); with this it gives up after its first
        # request's 30 s deadline, which no setting shortens (RAY_gcs_rpc_server_connect_
        # timeout_s and RAY_gcs_server_request_timeout_seconds at 5 changed nothing: 31-32 s).
        # Read when Ray is imported; not for `local`, whose own head may start slowly.
        os.environ.setdefault("RAY_py_gcs_connect_timeout_s", str(int(CONNECT_SECONDS)))
    ray = import_ray()
    if ray.is_initialized():
        yield Cluster(ray, "this process's")
        return
    temp_dir = None
    kwargs: dict[str, Any] = {}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == "local":
        _remove_stale_temp_dirs()
        # Short: Ray's socket paths must fit in 107 bytes. The pid: see _remove_stale_temp_dirs.
        temp_dir = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir="/tmp")
        kwargs = {"num_cpus": num_cpus, "include_dashboard": False, "_temp_dir": temp_dir}
        target = "local"
    else:
        target = _resolve(ray, address)
        _probe(target, address)
        _use_token_if_present()
        # Ray retries a refused connection for a minute; the probe already saw it answer.
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(int(CONNECT_SECONDS)))
    _errors_to_stderr()
    global _quiet
    _quiet = quiet
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    resend = False
    try:
        with _stdout_to_stderr():
            unwrapped(
                ray.init,
                address=target,
                log_to_driver=False,  # actors' prints stay in the cluster's log files
                logging_level="ERROR",
                **kwargs,
            )
    except BaseException as e:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        # Ray's own SIGTERM handler, installed early in ray.init, is `sys.exit(signum)`: a
        # supervisor's SIGTERM then was exit 15 with no word, not this process's own answer.
        resend = isinstance(e, SystemExit) and e.code == signal.SIGTERM
        if isinstance(e, QwenJsonError) or not isinstance(e, Exception):
            raise  # --total-timeout, Ctrl-C, SIGTERM while connecting
        raise ClusterError(_init_failure(address, e)) from None
    finally:
        for sig, handler in handlers.items():  # ray.init installs its own SIGTERM handler
            if handler is not None:
                signal.signal(sig, handler)
        answer = handlers[signal.SIGTERM]
        if resend and callable(answer):
            # The handler this process had, called as the signal would have (not raised again:
            # by then Ray's C++ core may have its own handler, which aborts the process).
            answer(signal.SIGTERM, None)
    try:
        # A --total-timeout alarm that came inside ray.init: Ray caught its error and logged
        # it, and the run went on connecting (8 s for a 1 s limit).
        deadline.overdue()
        yield Cluster(ray, target)
    finally:
        with _stdout_to_stderr():
            ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def unwrapped(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(…)``, with what a signal handler raised inside it raised as itself: Ray checks for
    signals in its Cython wait loop, and Python reports a handler's exception there (Ctrl-C's,
    SIGTERM's, --total-timeout's) as a SystemError caused by it."""
    try:
        return call(*args, **kwargs)
    except SystemError as e:
        if e.__cause__ is not None and not isinstance(e.__cause__, SystemError):
            raise e.__cause__ from None
        raise


def _remove_stale_temp_dirs() -> None:
    """Remove the temp dirs (logs, 200 KB) of private clusters whose driver was killed (-9)
    before it could: Ray's processes end with their driver, the directory stays."""
    for path in Path("/tmp").glob(f"{TEMP_PREFIX}*-*"):
        pid = path.name[len(TEMP_PREFIX) :].split("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue  # alive, someone else's


def _resolve(ray: ModuleType, address: str) -> str:
    if address == "auto":
        env = os.environ.get("RAY_ADDRESS", "").strip()
        if env and env != "auto":
            return _with_port(env)
        try:  # where `ray start` on this machine wrote its address
            from ray._private.services import canonicalize_bootstrap_address_or_die

            return str(canonicalize_bootstrap_address_or_die("auto"))
        except (ConnectionError, ImportError) as e:
            raise ClusterError(
                "--ray auto: no Ray cluster was started on this machine (start one with "
                "`ray start --head`, or use --ray local for a private one)"
            ) from e
    return _with_port(address)


def _with_port(address: str) -> str:
    address = address.strip().removeprefix("ray://")
    _, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return f"{address}:{DEFAULT_PORT}"
    return address


def _probe(target: str, given: str) -> None:
    """Check that ``target`` answers as a gRPC server (Ray's head is one) within seconds."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    hint = "start one with `ray start --head`, or use --ray local for a private one"
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS) as sock:
            # The HTTP/2 preface and an empty SETTINGS frame: a gRPC server answers with its own.
            sock.sendall(
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
            )
            reply = sock.recv(9)
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise ClusterError(
            f"can't reach a Ray cluster at {given!r} ({target}): {reason}; {hint}"
        ) from None
    if len(reply) < 4 or reply[3] != 4:
        raise ClusterError(f"{given!r} ({target}) answers, but not as a Ray cluster; {hint}")


def _use_token_if_present() -> None:
    """Clusters made by recent Ray (2.60 here) want the token ``ray start`` wrote in
    ~/.ray/auth_token (or RAY_AUTH_TOKEN): use it when present, as Ray's own command line does
    (RAY_AUTH_MODE, when set, decides)."""
    try:
        from ray._private.authentication import authentication_token_setup as setup
    except ImportError:
        return  # a Ray without token authentication
    # Its notice that the token is used is for clusters it starts, not for a client.
    logging.getLogger(setup.__name__).setLevel(logging.ERROR)
    setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


# Ray prints the cluster's messages from a process-wide hook: whether the connected run wants
# them (the last `connect`'s ``quiet``).
_quiet = False


def _errors_to_stderr() -> None:
    """Ray's driver prints the cluster's error messages ("(raylet) A worker died …") to
    sys.stdout, where they would land among the output lines; send them to stderr, uncoloured
    unless stderr is a terminal, or nowhere for a quiet run (cron mails any stderr, and the
    executor already answers a dead worker: its record is done again)."""
    try:
        from ray._private import worker
    except ImportError:
        return
    show = getattr(worker, "print_to_stdstream", None)
    if show is None or getattr(show, "to_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        if _quiet:
            return
        if not sys.stderr.isatty():
            os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # read by Ray as it prints
        show({**data, "is_err": True}, ignore_prefix)

    to_stderr.to_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


def _init_failure(address: str, error: Exception) -> str:
    text = str(error)
    if "auth" in text.lower() and "token" in text.lower():
        return (
            f"the Ray cluster at {address!r} refused this machine's authentication token: copy "
            "the head node's ~/.ray/auth_token here (or set RAY_AUTH_TOKEN)"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"can't connect to the Ray cluster at {address!r}: {first}"


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Fd 1 on stderr and fd 0 on /dev/null for the block: whatever Ray prints goes to stderr,
    and the processes it starts never hold this process's stdout (a `| head` would never end)
    or its input."""
    sys.stdout.flush()
    saved = os.dup(1), os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(2, 1)
        os.dup2(null, 0)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 0)
        for fd in (*saved, null):
            os.close(fd)


# -- the Python API -------------------------------------------------------------------------------


class _Collected:
    """A record's results kept for ``extract_many`` (the batch's sink writes them instead)."""

    def __init__(self) -> None:
        self.on_text: Callable[[str], None] | None = None
        self.on_piece: Callable[[int, int], None] | None = None
        self.documents: list[Any] = []
        self.error: QwenJsonError | None = None

    def emit(self, document: str) -> None:
        self.documents.append(json.loads(document))

    def piece_done(self, piece: Piece, found: Found) -> None:
        pass  # nothing to resume: the records are in memory

    def notice(self, message: str) -> None:
        pass

    def finish(self, error: QwenJsonError | None) -> bool:
        self.error = error
        return error is None


def _task(line: int, text: Any) -> RecordTask:
    """The record of one of ``extract_many``'s texts: one that isn't text fails alone, with the
    error ``extract`` raises for it (a pandas NaN cell, bytes: the whole run ended)."""
    from qwenjson.executor import RecordTask
    from qwenjson.pipeline import check_text

    if not isinstance(text, str):
        error: QwenJsonError = UsageError(f"text must be a str, not {type(text).__name__}")
        return RecordTask(line, "", "", error=error)
    try:
        check_text(text)
    except QwenJsonError as e:
        return RecordTask(line, "", "", error=e)
    return RecordTask(line, text, "")


def extract_many(
    texts: Iterable[str],
    schema: Any,
    *,
    ray: str = "local",
    model: str | Path | None = None,
    actors: int | None = None,
    threads: int | None = 1,
    ordered: bool = True,
    n_ctx: int | None = None,
    timeout: float | None = None,
    offline: bool = False,
    **options: Any,
) -> Iterator[tuple[int, Any]]:
    """Extract from each of ``texts`` on a Ray cluster; yield ``(index, result)`` in the order of
    ``texts`` (``ordered=False``: as they finish).

    ``result`` is what ``qwenjson.extract`` would return for that text (with ``each=True``: the
    list of items; an instance of the schema's class when a Pydantic model was given), or the
    ``QwenJsonError`` it would raise. ``schema`` and the keyword arguments as ``extract`` takes
    them; ``ray``: ``local``, ``auto`` or ``HOST[:PORT]`` (see ``qwenjson.cluster.connect``);
    ``actors``, ``threads`` (None: 1, as ``--threads`` on a cluster) and ``n_ctx`` (None: the
    default, as ``extract``'s) as ``--ray-actors``, ``--threads`` and ``--ctx``; ``offline``:
    no node downloads the model.
    Texts are read as they are needed, so a generator over a large file is fine.
    """
    from qwenjson.actors import RayExecutor, worker_spec
    from qwenjson.library import check_call_options, check_room, shaped, split_options
    from qwenjson.pipeline import DEFAULT_CTX
    from qwenjson.plan import Plan, schema_of

    threads = 1 if threads is None else threads
    check_call_options(threads, timeout, offline, n_ctx)
    n_ctx = DEFAULT_CTX if n_ctx is None else n_ctx
    if not isinstance(ordered, bool):  # "no" would read as True
        raise UsageError(f"ordered must be True or False, not {ordered!r}")
    if not isinstance(ray, str):
        raise UsageError(f"ray must be 'local', 'auto' or 'HOST[:PORT]', not {ray!r}")
    if not (model is None or isinstance(model, str | Path)):
        raise UsageError(
            "model must be a registry name, a .gguf path or hf:REPO/FILE (each node opens its "
            f"own), not {type(model).__name__}"
        )
    if actors is not None and not is_whole_number(actors, 1):
        raise UsageError(f"actors must be a whole number ≥ 1 (or None), not {actors!r}")
    schema_value, cls = schema_of(schema)
    opts, record = split_options(options)
    check_room(opts.max_tokens, n_ctx, "or raise n_ctx")
    # The schema is checked and compiled here, before any cluster; the model's sha256 is each
    # worker's to fill in.
    plan = Plan(schema_value, "", n_ctx, opts, record)
    spec = worker_spec(plan, model=model, threads=threads, timeout=timeout, offline=offline)
    each = record.each
    kept: dict[int, _Collected] = {}

    def sink(task: RecordTask) -> RecordSink:
        kept[task.line] = _Collected()
        return kept[task.line]

    with connect(ray) as cluster:
        executor = RayExecutor(cluster, spec, actors=actors, ordered=ordered)
        try:
            tasks = (_task(i, text) for i, text in enumerate(texts, 1))
            for task, _ in executor.run(tasks, sink):
                got = kept.pop(task.line)
                if got.error is not None:
                    yield task.line - 1, got.error
                    continue
                try:
                    if each:
                        value: Any = [shaped(d, cls, opts.evidence) for d in got.documents]
                    else:
                        value = shaped(got.documents[0], cls, opts.evidence)
                except QwenJsonError as e:  # the class refused the document, as extract raises
                    value = e
                yield task.line - 1, value
        finally:
            executor.close()
