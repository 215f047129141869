"""A ``--jsonl`` batch on a pool of Ray actors (``--ray``; connecting to Ray: ``cluster.py``).

Each actor (``RecordWorker``) holds one loaded model and runs records exactly as the local batch
does (a ``Runner`` with the same ``Plan``: retries, timeouts, truncation, ``--each``, pieces).
Each actor fills in the plan's model sha256 from its own model file and says the plan's
fingerprint; they must all agree, and that fingerprint names the checkpoint, as a local run's
plan would. This process, the
driver, reads the input, hands records out, and gives each record's results to
``qwenjson.batch`` in input order, which writes the output, the error log and the checkpoint as
it does for a local run: the same bytes, the same resume after a crash::

    with connect("local") as cluster:
        executor = RayExecutor(cluster, worker_spec(plan_without_model), actors=2)
        run_batch(read_lines(sys.stdin.buffer), executor, BatchOptions(field="text"))

A text longer than the context comes back a piece at a time: the actor returns after each piece
(``WorkerResult.more``) and keeps the record's merged pieces for the driver's ``resume`` call,
which goes to the same actor (another would have to merge them all again). So the driver writes
a piece's ``--each`` items and logs the piece to ``--checkpoint`` as a local run does, once the
record is first in the output's order; an actor that dies inside such a record hands it on with
the pieces that came back, and the next actor goes on at the following piece.

Backpressure: at most ``IN_FLIGHT`` records sit with an actor and ``WINDOW`` per actor between
the input and the output, so a ten-million-line stdin is never held.

Faults: an actor that dies (its process killed, its node gone) is replaced, and the records it
held are handed to other actors; nothing is written until a record's result is back, so nothing
is lost or written twice. An actor runs its records one at a time in the order they were sent,
so only the first one it held was running when it died: that record is charged with the death,
and after ``MAX_DEATHS`` it fails on its own (exit 10) instead of killing every actor in turn.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwenjson import __version__, deadline
from qwenjson.chunking import Piece
from qwenjson.cluster import unwrapped
from qwenjson.errors import (
    ClusterError,
    InputError,
    ModelError,
    NoValidOutputError,
    OutputError,
    QwenJsonError,
    SchemaError,
    TimeoutExpired,
    UsageError,
)
from qwenjson.executor import RecordSink, RecordTask
from qwenjson.merging import Found
from qwenjson.pieces import PieceHooks
from qwenjson.pipeline import open_model
from qwenjson.plan import Plan, model_sha256
from qwenjson.registry import ModelSpec
from qwenjson.runner import Limits, RecordSteps, Runner, TotalTimeoutExpired

if TYPE_CHECKING:
    from qwenjson.cluster import Cluster

__all__ = [
    "RayExecutor",
    "RecordTiming",
    "RecordWorker",
    "WorkerSpec",
    "worker_spec",
]

IN_FLIGHT = 2  # records sent to one actor at a time: the next is there when one ends
WINDOW = 8  # records per actor between the input and the output (a slow one holds the rest)
MAX_DEATHS = 3  # an actor died running this record this often: it fails (exit 10)
STARTUP_NOTICE = 60.0  # seconds without a ready actor before saying so


@dataclass(frozen=True)
class WorkerSpec:
    """Everything an actor needs to run records as the local run would (sent to every node):
    the ``plan`` with no model sha256 yet (each actor's own model file gives it), the model,
    and what a ``Plan`` leaves out (threads, the prompt cache, ``--timeout``)."""

    plan: Plan
    model: str | None = None  # registry name or hf: (each node pulls it), or an absolute path
    model_is_path: bool = False
    # For a name: the driver's registry entry for it, which each node pulls as it is (a node
    # lacks the driver's QWENJSON_MODELS_FILE, and its own could name another file).
    entry: ModelSpec | None = None
    offline: bool = False
    threads: int = 1  # llama.cpp threads per actor, and the CPUs Ray reserves for it
    prompt_threads: int | None = None
    cache: bool = True
    cache_dir: str | None = None  # None: the node's default (~/.cache/qwenjson/kv)
    timeout: float | None = None  # seconds for one record (--timeout)


@dataclass(frozen=True)
class WorkerResult:
    """A record's results from one call to an actor, in the order they came: ``("emit",
    document)``, ``("notice", message)`` and ``("piece", (Piece, Found))`` (a piece of a long
    text, merged and its items emitted); its error (message, exit code) or None; when the call
    started and ended (wall clock); ``more``: a long text has pieces left (``resume`` goes on)."""

    events: tuple[tuple[str, Any], ...]
    error: tuple[str, int] | None
    started: float
    ended: float
    more: bool = False


class RecordWorker:
    """A Ray actor's state: one loaded model running records (usable without Ray, in tests).

    A model or schema that can't be loaded here doesn't kill the actor: ``hello`` reports it,
    so the driver can say which node lacks what.
    """

    def __init__(self, spec: WorkerSpec | bytes, driver_version: str = __version__) -> None:
        self.node = _node_name()
        self.failure: tuple[str, int] | None = None
        self.runner: Runner | None = None
        # Records begun and not ended (a long text between its pieces), by the driver's key.
        self.open: dict[int, tuple[RecordSteps, list[tuple[str, Any]]]] = {}
        if driver_version != __version__:
            # ``hello`` says which version runs here. Nothing of the driver's is unpickled (its
            # classes may not exist here) and no model is loaded for a node that can't work.
            return
        if isinstance(spec, bytes):
            spec = pickle.loads(spec)  # cloudpickle's output, which pickle reads
        assert isinstance(spec, WorkerSpec)
        try:
            self.runner = _load(spec, self.node)
        except QwenJsonError as e:
            self.failure = (str(e), e.exit_code)

    def hello(self) -> dict[str, Any]:
        """Where this actor runs, its qwenjson version, and why it can't work (or None)."""
        return {
            "node": self.node,
            "pid": os.getpid(),
            "version": __version__,
            "failure": self.failure,
            "fingerprint": self.runner.plan.fingerprint if self.runner is not None else "",
        }

    def run(
        self, text: str, finished: tuple[tuple[Piece, Found], ...] = (), key: int = 0
    ) -> WorkerResult:
        """Extract from ``text`` as the local batch would (its outputs and error, not raised);
        of a text longer than the context only the first piece after ``finished``: then the
        result says ``more``, and ``resume(key)`` does the next one."""
        assert self.runner is not None, "hello() said this actor can't run records"
        events: list[tuple[str, Any]] = []
        steps = self.runner.begin(
            text,
            lambda doc: events.append(("emit", doc)),
            notice=lambda message: events.append(("notice", message)),
            pieces=PieceHooks(done=lambda piece, found: events.append(("piece", (piece, found)))),
            finished=finished,
        )
        self.open[key] = (steps, events)
        return self.resume(key)

    def resume(self, key: int) -> WorkerResult:
        """The next step of the record ``run(…, key)`` began: its next piece, or its end."""
        steps, events = self.open[key]
        events.clear()
        started = time.time()
        error: tuple[str, int] | None = None
        try:
            # Alarms cut a backtracking `pattern` in validation short, as in the CLI.
            with deadline.alarms():
                steps.step()
        except QwenJsonError as e:
            error = (str(e), e.exit_code)
        more = error is None and steps.result is None
        if not more:
            del self.open[key]
        return WorkerResult(tuple(events), error, started, time.time(), more)


def _load(spec: WorkerSpec, node: str) -> Runner:
    from qwenjson.kvcache import default_cache_dir

    if spec.model_is_path and spec.model is not None and not Path(spec.model).exists():
        raise ModelError(
            f"the model file {spec.model} is not on node {node}: with --ray a --model path must "
            "exist on every node (copy it there, or give a registry name, which each node "
            "downloads and checks)"
        )
    cache_dir = None
    if spec.cache:
        cache_dir = Path(spec.cache_dir) if spec.cache_dir else default_cache_dir()
    generator = open_model(
        spec.entry or spec.model,
        offline=spec.offline,
        threads=spec.threads,
        prompt_threads=spec.prompt_threads,
        n_ctx=spec.plan.n_ctx,
        cache_dir=cache_dir,
    )
    # ``replace`` keeps the plan's prepared job (same schema, same ``--each``): not recompiled.
    plan = replace(spec.plan, model_sha256=model_sha256(generator))
    return Runner(plan, generator, Limits(timeout=spec.timeout))


def _node_name() -> str:
    try:
        import ray

        node_ip: Any = ray.util.get_node_ip_address  # untyped in Ray
        return str(node_ip())
    except Exception:  # outside Ray (tests): the host name says as much
        return socket.gethostname()


# -- the pool -------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """A record between the input and the output: where it runs and, once back, its result."""

    task: RecordTask
    deaths: int = 0
    # An actor died holding it and another record: which of them killed it is unknown, so it
    # runs on an actor of its own until it ends (a death then is its own).
    alone: bool = False
    # What came back and is not yet handed to the record's sink: a long text's pieces one
    # call at a time, then the last call (``more`` False) with the record's own error.
    parts: list[WorkerResult] = field(default_factory=list)
    pieces: list[tuple[Piece, Found]] = field(default_factory=list)  # all that came back
    result: WorkerResult | None = None  # the last call's
    error: QwenJsonError | None = None  # failed without a result (its actors kept dying)
    sink: RecordSink | None = None  # once the batch may hear of the record (see ``_ready``)
    in_pieces: bool = False  # a long text between two of its pieces on its actor
    submitted: float = 0.0
    started: float | None = None  # when its first call began on an actor
    received: float = 0.0

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None or self.task.error is not None

    @property
    def finished(self) -> tuple[tuple[Piece, Found], ...]:
        """The pieces done: the checkpoint's, and those that came back (sent again with the
        record after its actor died: it goes on at the next piece)."""
        return self.task.finished + tuple(self.pieces)


@dataclass(eq=False)
class _Actor:
    handle: Any
    ready: bool = False
    node: str = "?"
    pid: int = 0
    held: deque[_Slot] = field(default_factory=deque)  # in the order sent: the first is running
    last_ended: float = 0.0


@dataclass(frozen=True)
class RecordTiming:
    """Where one record's time went (wall clock, seconds): sent, started and ended on its actor,
    received; ``overhead`` is what Ray added (scheduling, serialisation, the round trip)."""

    line: int
    submitted: float
    started: float
    ended: float
    received: float
    queued_behind: float  # when the record before it on the same actor ended (0: none)

    @property
    def extraction(self) -> float:
        return self.ended - self.started

    @property
    def overhead(self) -> float:
        return self.received - max(self.submitted, self.queued_behind) - self.extraction


class RayExecutor:
    """Runs a batch's records on a pool of Ray actors (a ``qwenjson.executor.RecordExecutor``).

    ``actors``: how many (default: one per ``spec.threads`` CPUs of each node, within what is
    free). ``ordered=False`` finishes records as they come back (``--unordered``). ``notice``
    hears of actors that died and were replaced.
    """

    def __init__(
        self,
        cluster: Cluster,
        spec: WorkerSpec,
        *,
        actors: int | None = None,
        ordered: bool = True,
        total_timeout: float | None = None,
        started: float | None = None,
        notice: Callable[[str], None] | None = None,
        worker: type[RecordWorker] = RecordWorker,
        keep_timings: bool = False,
    ) -> None:
        self.cluster = cluster
        self.spec = spec
        self.each = spec.plan.record.each
        self.job = ""  # the plan's fingerprint, as the first actor to start says it
        self.ordered = ordered
        self.total_timeout = total_timeout
        self.started = time.monotonic() if started is None else started
        self.notice = notice
        widest = max(cluster.node_cpus(), default=0)
        if spec.threads > widest:
            raise ClusterError(
                f"no node of the cluster has {spec.threads} CPUs for one worker (--threads "
                f"{spec.threads}; the largest has {widest})"
            )
        self.size = actors or cluster.default_actors(spec.threads)
        self.replacements = MAX_DEATHS * self.size  # then the cluster is too sick to go on
        self.actors: list[_Actor] = []
        self.calls: dict[Any, tuple[_Actor, _Slot | None]] = {}  # ref -> (actor, record|hello)
        self.timings: list[RecordTiming] | None = [] if keep_timings else None
        self.last_death = ""  # why the last actor died, for "no worker is left"
        self.unsent: deque[_Slot] = deque()  # records an actor's death handed back
        ray = cluster.ray
        self._remote = ray.remote(num_cpus=spec.threads, max_restarts=0, max_task_retries=0)(worker)
        for _ in range(self.size):
            self._start_actor()

    def check_total(self) -> None:
        """Raise TotalTimeoutExpired when ``--total-timeout`` has run out."""
        if self.total_timeout is not None and time.monotonic() - self.started > self.total_timeout:
            raise TotalTimeoutExpired(f"--total-timeout of {self.total_timeout:g}s ran out")

    def fingerprint(self) -> str:
        """The fingerprint of the workers' plan (waits for the first to have loaded its model):
        the one a local run of the same plan, on the same model file, names its checkpoint by."""
        while not self.job:
            self._wait()
        return self.job

    def close(self) -> None:
        """Stop every actor (a driver that disconnects stops them too)."""
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.cluster.ray.kill(actor.handle)
        self.actors.clear()
        self.calls.clear()

    def run(
        self, tasks: Iterable[RecordTask], sink: Callable[[RecordTask], RecordSink]
    ) -> Iterator[tuple[RecordTask, bool]]:
        """Send ``tasks`` to the actors as they have room; finish each through its sink."""
        source = iter(tasks)
        waiting: deque[_Slot] = deque()  # taken from the input, not yet finished; input order
        exhausted = False
        while True:
            # Records handed back by a death go first: one that must run alone waits for an
            # actor to go idle, which new records would never let happen.
            while self.unsent and self._takers(self.unsent[0]):
                self._send(self.unsent.popleft())
            while (
                not exhausted
                and not self.unsent
                and len(waiting) < WINDOW * self.size
                and self._room()
            ):
                task = next(source, None)
                if task is None:
                    exhausted = True
                    break
                slot = _Slot(task)
                waiting.append(slot)
                if task.error is None:
                    self._send(slot)
            while waiting and (ready := self._ready(waiting)) is not None:
                if ready.sink is None:
                    ready.sink = sink(ready.task)
                self._hand_over(ready, ready.sink)
                if ready.done:
                    waiting.remove(ready)
                    yield ready.task, self._finish(ready, ready.sink)
            if exhausted and not waiting:
                return
            self._wait()

    def _ready(self, waiting: deque[_Slot]) -> _Slot | None:
        """A record with something to hand to its sink: in order, only the first (the output,
        and a piece's log line, go after the records before it); unordered, any."""
        candidates = [waiting[0]] if self.ordered else waiting
        return next((s for s in candidates if s.done or s.parts), None)

    def _hand_over(self, slot: _Slot, out: RecordSink) -> None:
        """What came back for ``slot``, in order: its documents or items, notices, and each
        piece done (which the checkpoint logs, after the piece's items, as a local run does)."""
        for part in slot.parts:
            for kind, value in part.events:
                if kind == "emit":
                    out.emit(value)
                elif kind == "notice":
                    out.notice(value)
                else:
                    out.piece_done(*value)
        slot.parts.clear()

    def _finish(self, slot: _Slot, out: RecordSink) -> bool:
        if slot.task.error is not None:
            return out.finish(slot.task.error)
        if slot.error is not None:
            return out.finish(slot.error)
        assert slot.result is not None
        if slot.result.error is None:
            return out.finish(None)
        message, code = slot.result.error
        return out.finish(_remote_error(message, code))

    # -- actors --

    def _start_actor(self) -> None:
        # The spec as bytes, beside the driver's version: a node that runs another qwenjson says
        # so before unpickling anything (its classes may differ) or loading a model.
        spec = self.cluster.ray.cloudpickle.dumps(self.spec)
        actor = _Actor(self._remote.remote(spec, __version__))
        self.actors.append(actor)
        self.calls[actor.handle.hello.remote()] = (actor, None)

    def _takers(self, slot: _Slot | None = None) -> list[_Actor]:
        """The actors ``slot`` (any record, if None) may be sent to now: ready, with room, not
        running a record that must run alone (a record that must, only to an idle one), nor
        one between its pieces (it goes on at once, not after another record: the pieces of
        a long text come out, and the output behind it waits, as fast as a local run's)."""
        alone = slot is not None and slot.alone
        return [
            a
            for a in self.actors
            if a.ready
            and len(a.held) < (1 if alone else IN_FLIGHT)
            and not (a.held and a.held[0].alone)
            and not any(s.in_pieces for s in a.held)
        ]

    def _room(self) -> bool:
        return bool(self._takers())

    def _send(self, slot: _Slot) -> None:
        actor = min(self._takers(slot), key=lambda a: len(a.held))
        slot.submitted = time.time()
        actor.held.append(slot)
        call = actor.handle.run.remote(slot.task.text, slot.finished, slot.task.line)
        self.calls[call] = (actor, slot)

    def _wait(self) -> None:
        """Wait for some result (a record's, or an actor's hello) and take it in."""
        ray = self.cluster.ray
        since = time.monotonic()
        while True:
            self.check_total()
            if not self.calls:
                last = f" (the last one: {self.last_death})" if self.last_death else ""
                raise ClusterError(f"no worker is left to run the records{last}")
            ready, _ = unwrapped(ray.wait, list(self.calls), num_returns=1, timeout=0.5)
            if ready:
                break
            if time.monotonic() - since > STARTUP_NOTICE and not any(a.ready for a in self.actors):
                since = float("inf")  # said once per wait
                if self.notice is not None:
                    self.notice(
                        f"no worker has started after {STARTUP_NOTICE:g} s: the cluster may have "
                        f"no free CPUs for one (--threads {self.spec.threads}), or its nodes are "
                        "still downloading the model"
                    )
        for ref in ready:
            actor, slot = self.calls.pop(ref)
            try:
                value = unwrapped(ray.get, ref)
            except ray.exceptions.RayTaskError:
                raise  # the worker's code raised something other than a QwenJsonError: a bug
            except ray.exceptions.RayError as e:
                # The actor died, or its node did and took the result with it (ObjectLostError,
                # NodeDiedError...): a cluster fault, and the record is sent again.
                self._died(actor, e)
                continue
            if slot is None:
                self._hello(actor, value)
            else:
                self._received(actor, slot, value)
        while self.unsent and self._takers(self.unsent[0]):
            self._send(self.unsent.popleft())

    def _hello(self, actor: _Actor, hello: dict[str, Any]) -> None:
        actor.node, actor.pid = str(hello["node"]), int(hello["pid"])
        # The version first: another qwenjson's failure to load may be that very difference.
        if hello["version"] != __version__:
            self.close()
            raise ClusterError(
                f"node {actor.node} runs qwenjson {hello['version']}, this machine "
                f"{__version__}: install the same version on every node"
            )
        if hello["failure"] is not None:
            message, code = hello["failure"]
            self.close()
            raise _remote_error(f"on node {actor.node}: {message}", code)
        if self.job and hello["fingerprint"] != self.job:
            self.close()
            raise ClusterError(
                f"node {actor.node} has another model file than the first worker's (its sha256 "
                "differs): give every node the same file, or a registry name"
            )
        self.job = str(hello["fingerprint"])
        actor.ready = True

    def _received(self, actor: _Actor, slot: _Slot, result: WorkerResult) -> None:
        slot.parts.append(result)
        slot.pieces.extend(value for kind, value in result.events if kind == "piece")
        if slot.started is None:
            slot.started = result.started
        slot.in_pieces = result.more
        if result.more:
            # The next piece on the same actor, which holds the record's merged pieces (another
            # would merge them all again); the record stays with it until it ends.
            self.calls[actor.handle.resume.remote(slot.task.line)] = (actor, slot)
            return
        slot.result, slot.received = result, time.time()
        actor.held.remove(slot)
        if self.timings is not None:
            self.timings.append(
                RecordTiming(
                    slot.task.line,
                    slot.submitted,
                    slot.started,
                    result.ended,
                    slot.received,
                    actor.last_ended,
                )
            )
        actor.last_ended = result.ended

    def _died(self, actor: _Actor, error: Exception) -> None:
        """Replace a dead actor; charge its record if it held one alone, hand its records to
        the others.

        An actor that held two records may have died on either: it can finish the first and die
        on the second before the first's reply leaves (os._exit in test_ray.py, about 1 run in
        5, and then the first was charged: an innocent record failed after three such deaths).
        So nobody is charged, and each of them runs alone until it ends: a death then is that
        record's own.
        """
        if actor not in self.actors:
            return  # its other calls fail too: handled at the first
        self.actors.remove(actor)
        with contextlib.suppress(Exception):
            self.cluster.ray.kill(actor.handle)  # gone already, unless only its result was lost
        for ref in [r for r, (a, _) in self.calls.items() if a is actor]:
            del self.calls[ref]
        reason = self.last_death = _reason(error)
        held = list(actor.held)
        if len(held) == 1:
            held[0].deaths += 1
        for slot in held:
            slot.alone = True
            slot.in_pieces = False  # begun again elsewhere, after the pieces that came back
            if slot.deaths >= MAX_DEATHS:
                slot.error = ClusterError(
                    f"the worker running this record died {slot.deaths} times ({reason}); "
                    "it is not tried again"
                )
            else:
                self.unsent.append(slot)
        if self.notice is not None:
            running = " and ".join(str(slot.task.line) for slot in held)
            verb = "was" if len(held) == 1 else "were"
            lines = f" (line {running} {verb} running)" if held else ""
            self.notice(f"a worker on node {actor.node} died{lines}: {reason}")
        if len(held) > 1:
            # Not counted against the pool either: each record is in at most one such death
            # (it runs alone after it), so these stay as few as the records.
            self._start_actor()
        elif self.replacements > 0:
            self.replacements -= 1
            self._start_actor()


def _reason(error: Exception) -> str:
    """One line on why an actor died: the exception its creation raised (qwenjson missing on
    the node, say), else the first line of Ray's message."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    return (raised or lines or [type(error).__name__])[-1 if raised else 0]


# The error classes by exit code: an actor's error comes back as the class it had there, so
# that a caller of extract_many catches a UsageError or ModelError as from extract.
_ERRORS: dict[int, type[QwenJsonError]] = {
    cls.exit_code: cls
    for cls in (
        UsageError,
        SchemaError,
        ModelError,
        InputError,
        NoValidOutputError,
        OutputError,
        ClusterError,
        TimeoutExpired,
    )
}


def _remote_error(message: str, exit_code: int) -> QwenJsonError:
    """An error from an actor, with the message, exit code and class it had there."""
    error = _ERRORS.get(exit_code, QwenJsonError)(message)
    error.exit_code = exit_code
    return error


# -- building the pool ----------------------------------------------------------------------------


def worker_spec(
    plan: Plan,
    *,
    model: str | Path | None = None,
    threads: int = 1,
    **engine: Any,
) -> WorkerSpec:
    """A WorkerSpec for ``plan`` (its schema already checked and compiled here, before any
    cluster), the model a known name or a path (made absolute; each node must have that file).
    ``engine``: the other WorkerSpec fields (``offline``, ``prompt_threads``, ``cache``,
    ``cache_dir``, ``timeout``); a ``cache_dir`` is made absolute too (a node read a relative
    one against its raylet's working directory, not the user's)."""
    from qwenjson.registry import DEFAULT_MODEL, resolve_model

    name = DEFAULT_MODEL if model is None else str(model)  # ("": refused, not the default)
    ref = resolve_model(name)
    if ref.path is not None:
        name = os.path.abspath(ref.path)
    if engine.get("cache_dir"):
        engine["cache_dir"] = os.path.abspath(engine["cache_dir"])
    return WorkerSpec(
        plan,
        model=name,
        model_is_path=ref.path is not None,
        entry=ref.spec if ref.path is None else None,
        threads=threads,
        **engine,
    )
