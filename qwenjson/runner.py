"""The runner: extracts one text with a ``Plan``: retries, timeouts, truncation, ``--each``
item streaming and texts longer than the context (in pieces). The CLI's single document, the
JSONL batch (``qwenjson.batch``) and the library's ``extract()`` all go through it::

    runner = Runner(plan_for(schema, generator), generator, Limits(timeout=30))
    result = runner.run(text, print)   # emits the compact JSON: the document, or each item

Library code: no terminal here; the caller passes callbacks for text, notices and pieces.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from jsonschema.protocols import Validator

from qwenjson import deadline
from qwenjson.chunking import Piece
from qwenjson.errors import InputError, NoValidOutputError, TimeoutExpired
from qwenjson.generation import Generator, prompt_size
from qwenjson.merging import Found
from qwenjson.pieces import Output, PieceHooks, PieceRun, check_overlap, plan_pieces
from qwenjson.pieces import Plan as PiecePlan
from qwenjson.pipeline import Extraction, Extractor, check_text
from qwenjson.plan import Plan, Truncate
from qwenjson.repeats import repair
from qwenjson.source import AROUND
from qwenjson.stream import ItemScanner
from qwenjson.validate import drop_empty_strings, validation_errors

__all__ = ["Limits", "RecordSteps", "Runner", "TotalTimeoutExpired", "fit_to_context"]

Notice = Callable[[str], None]
TextCallback = Callable[[str], None]


class TotalTimeoutExpired(TimeoutExpired):
    """``--total-timeout`` ran out: the whole run stops, not just the record in flight."""


@dataclass(frozen=True)
class Limits:
    """Time budgets: not part of a ``Plan`` (see its docstring for why)."""

    timeout: float | None = None  # seconds for one text (all its attempts and pieces)
    total_timeout: float | None = None  # seconds for the whole run
    # --total-timeout counts from here (the CLI passes its own start, so that loading the
    # model counts too); None: from the runner's creation.
    started: float | None = None


def fit_to_context(
    extractor: Extractor, text: str, truncate: Truncate | None
) -> tuple[str, tuple[int, int] | None]:
    """``text``, cut by tokens to fit the context when ``truncate`` says which end to keep.

    Returns the text and, when it was cut, (tokens before, tokens after). Without ``truncate``
    a text that doesn't fit is an InputError with the token counts. A text far longer than the
    context is measured only as far as could be kept ("more than" so many tokens).
    """
    gen = extractor.generator
    budget_total = gen.n_ctx - extractor.options.max_tokens
    text, partial = _keepable_part(extractor, text, budget_total, truncate)
    size = prompt_size(gen, extractor.messages(text))
    if size <= budget_total:
        return text, None
    text_tokens = gen.count_tokens(text)
    if truncate is None:
        more = "more than " if partial else ""
        raise InputError(
            f"the input is too long: the prompt takes {more}{size} tokens (the text "
            f"{more}{text_tokens}) and "
            f"up to {extractor.options.max_tokens} more may be generated, but the context holds "
            f"{gen.n_ctx}; use --truncate head|tail, a larger --ctx or a smaller --max-tokens, "
            "or let it be extracted in pieces (without --no-chunks)"
        )
    budget = text_tokens - (size - budget_total)
    for _ in range(4):  # the cut text's tokens at the seam can differ a little: re-measure
        if budget < 1:
            break
        cut = _cut(gen, text, budget, truncate)
        over = prompt_size(gen, extractor.messages(cut)) - budget_total
        if over <= 0:
            return cut, (text_tokens, gen.count_tokens(cut))
        budget -= over
    raise InputError(
        f"the prompt takes {size - text_tokens} tokens without the text and up to "
        f"{extractor.options.max_tokens} more may be generated, but the context holds "
        f"{gen.n_ctx}: no room for the text; use a larger --ctx or a smaller --max-tokens"
    )


# A token is rarely longer than this many characters: a text longer than the context's tokens
# times this is first measured by the part that could be kept.
_CHARS_PER_TOKEN = 16


def _keepable_part(
    extractor: Extractor, text: str, budget: int, truncate: Truncate | None
) -> tuple[str, bool]:
    """The part of ``text`` worth tokenizing, and whether the rest was left off because that
    part alone is over ``budget`` (a 10 MB text took 12 s and 580 MB to tokenize whole)."""
    reach = max(budget, 1) * _CHARS_PER_TOKEN
    if len(text) <= reach:
        return text, False
    part = text[len(text) - reach :] if truncate == "tail" else text[:reach]
    # A prefix can tokenize a little differently at its end: a margin keeps the verdict sound.
    if prompt_size(extractor.generator, extractor.messages(part)) > budget + 16:
        return part, True
    return text, False  # unusually long tokens: measure it all


def _cut(gen: Generator, text: str, budget: int, keep: Truncate) -> str:
    """The longest head (or tail) of ``text`` that takes at most ``budget`` tokens."""

    def piece(n: int) -> str:
        return text[:n] if keep == "head" else text[len(text) - n :]

    lo, hi = 0, len(text)  # piece(lo) fits; find the largest n that does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if gen.count_tokens(piece(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return piece(lo)


class Runner:
    """Runs texts through one Extractor with truncation, timeouts and ``--each`` streaming."""

    def __init__(
        self,
        plan: Plan,
        generator: Generator,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.job = plan.job
        self.record = plan.record
        self.limits = limits or Limits()
        options = plan.options
        self.keep_empty = options.keep_empty
        self.evidence = options.evidence
        if self.record.each and not self.evidence:
            # Items are printed as they close, empty members dropped item by item (_ItemStream);
            # the whole document stays as generated, to be compared with what was printed.
            options = replace(options, keep_empty=True)
        self.extractor = Extractor(self.job.prepared, generator, options, system=plan.system_prompt)
        record = self.record
        if record.chunks and record.truncate is None and record.chunk_overlap is not None:
            check_overlap(self.extractor, record.chunk_tokens, record.chunk_overlap)
        self.clock = clock
        self.started = clock() if self.limits.started is None else self.limits.started

    def check_total(self) -> None:
        """Raise TotalTimeoutExpired when ``--total-timeout`` has run out."""
        total = self.limits.total_timeout
        if total is not None and self.clock() - self.started > total:
            raise TotalTimeoutExpired(f"--total-timeout of {total:g}s ran out")

    def run(
        self,
        text: str,
        emit: Callable[[str], None],
        *,
        on_text: TextCallback | None = None,
        notice: Notice | None = None,
        pieces: PieceHooks | None = None,
        finished: Sequence[tuple[Piece, Found]] = (),
    ) -> Extraction:
        """Extract from ``text`` and ``emit`` the compact JSON: the document, or each item.

        With ``each``, items are emitted as they close (validated one by one); once one has
        been emitted, a failure of the document fails the record without a retry, and the
        items already emitted stay emitted. A text longer than the context is done in pieces
        (``qwenjson.pieces``): ``pieces`` hears of each, ``finished`` are those done before.
        """
        steps = self.begin(
            text, emit, on_text=on_text, notice=notice, pieces=pieces, finished=finished
        )
        while steps.result is None:
            steps.step()
        return steps.result

    def begin(
        self,
        text: str,
        emit: Callable[[str], None],
        *,
        on_text: TextCallback | None = None,
        notice: Notice | None = None,
        pieces: PieceHooks | None = None,
        finished: Sequence[tuple[Piece, Found]] = (),
    ) -> RecordSteps:
        """``run``, a step at a time: each ``step()`` of the result extracts one piece of a text
        longer than the context, or the whole of a shorter one (a Ray actor returns between
        pieces). Nothing runs until the first step."""
        return RecordSteps(self, text, emit, on_text, notice, pieces, finished)

    def _run_whole(
        self,
        text: str,
        emit: Callable[[str], None],
        started: float,
        on_text: TextCallback | None,
        notice: Notice | None,
    ) -> Extraction:
        whole = text
        text, cut = fit_to_context(self.extractor, text, self.record.truncate)
        # Evidence is into the input as given: a kept tail starts where the cut part ended.
        offset = len(whole) - len(text) if cut is not None and self.record.truncate == "tail" else 0
        # A word the cut went through is no value (``SourceText``): the input on each side.
        end = offset + len(text)
        around = (whole[max(0, offset - AROUND) : offset], whole[end : end + AROUND])
        if cut is not None and notice is not None:
            keep = self.record.truncate
            notice(f"input cut from {cut[0]} to {cut[1]} tokens (--truncate {keep})")
        # With --evidence the items are printed when the list is complete, each with its own
        # evidence: a value's source is known only once the whole document is annotated.
        streaming = self.record.each and not self.evidence
        stream = None
        if streaming:
            # A repeated item with grounded text in it ends the list (``Grounding``): not
            # printed. Decided item by item, as the tracker and the evidence do; kept with
            # --keep-empty, as the evidence keeps it (the same items with --evidence or not).
            tails = [
                p[2:]
                for p, r in self.extractor.rules.items()
                if p[:2] == ("items", None) and r.grounded and r.kind == "text"
            ]
            dedupe = _has_text_at(tails) if tails and not self.keep_empty else None
            stream = _ItemStream(self.job.item, emit, self.keep_empty, dedupe=dedupe)

        def watch(chunk: str) -> None:
            self._check_time(started)
            if stream is not None:
                stream.feed(chunk)
            if on_text is not None:
                on_text(chunk)

        result = self.extractor.run(text, on_text=watch, offset=offset, around=around)
        if stream is not None:
            stream.finish(result.data)
        elif self.record.each:
            for i, item in enumerate(result.data["items"]):
                emit(_compact(_item_evidence(result, i, item)))
        elif self.evidence:
            emit(_compact(result.with_evidence()))
        else:
            emit(result.json)
        return result

    def _piece_run(
        self,
        text: str,
        split: PiecePlan,
        emit: Callable[[str], None],
        on_text: TextCallback | None,
        notice: Notice | None,
        pieces: PieceHooks | None,
        finished: Sequence[tuple[Piece, Found]],
        since: Callable[[], float],
    ) -> PieceRun:
        """``text`` in pieces, merged; --require-evidence is applied to the merged result."""
        extractor = self.extractor
        # --require-evidence holds for the merged result; one object needs the confidences.
        wanted = replace(extractor.options, require_evidence=False)
        if not self.record.each:
            wanted = replace(wanted, evidence=True)
        if wanted != extractor.options:
            extractor = Extractor(
                self.job.prepared, extractor.generator, wanted, system=self.plan.system_prompt
            )
        hooks = replace(pieces) if pieces is not None else PieceHooks()
        if hooks.notice is None:
            hooks.notice = notice

        def watch(chunk: str) -> None:
            self._check_time(since())
            if on_text is not None:
                on_text(chunk)

        hooks.on_text = watch
        output = Output(
            each=self.record.each,
            evidence=self.evidence,
            keep_empty=self.keep_empty,
            require_evidence=self.extractor.options.require_evidence,
            item=self.job.item,
        )
        return PieceRun(extractor, text, split, emit, output, finished=finished, hooks=hooks)

    def _check_time(self, started: float) -> None:
        self.check_total()
        timeout = self.limits.timeout
        if timeout is not None and self.clock() - started > timeout:
            raise TimeoutExpired(f"--timeout of {timeout:g}s ran out")


class RecordSteps:
    """One record run a step at a time (``Runner.begin``): ``result`` is set by the last step.

    The record's ``--timeout`` counts the time spent in its steps, all of them: between two
    (a Ray actor runs another record, the driver's round trip) the clock is not the record's.
    """

    def __init__(
        self,
        runner: Runner,
        text: str,
        emit: Callable[[str], None],
        on_text: TextCallback | None,
        notice: Notice | None,
        pieces: PieceHooks | None,
        finished: Sequence[tuple[Piece, Found]],
    ) -> None:
        self.runner, self.text, self.emit = runner, text, emit
        self.on_text, self.notice, self.pieces, self.finished = on_text, notice, pieces, finished
        self.started: float | None = None  # when the first step began
        self.spent = 0.0  # seconds spent in steps so far
        self._since = 0.0  # the clock's reading as if the steps had been one stretch
        self._run: PieceRun | None = None
        self.result: Extraction | None = None

    def step(self) -> None:
        """The next piece, or the whole record; raises what ``Runner.run`` raises."""
        runner = self.runner
        if self.result is not None:
            raise RuntimeError("the record is done")
        runner.check_total()
        now = runner.clock()
        if self.started is None:
            self.started = now
        self._since = now - self.spent
        timeout = runner.limits.timeout
        left = None if timeout is None else timeout - self.spent
        try:
            # Kept by the clock on each token, and by an alarm in validation (a backtracking
            # pattern), which never gets there; the engine goes on with the next record.
            with deadline.budget(
                left, lambda: TimeoutExpired(f"--timeout of {timeout:g}s ran out")
            ):
                self._step(self._since)
        finally:
            self.spent = runner.clock() - self._since

    def _step(self, started: float) -> None:
        runner, record = self.runner, self.runner.record
        if self._run is None:
            # Before anything counts its tokens: a library caller's lone surrogate was a
            # UnicodeEncodeError from the tokenizer, not the InputError the pipeline gives it.
            check_text(self.text)
            split = None
            if record.chunks and record.truncate is None:
                split = plan_pieces(
                    runner.extractor, self.text, record.chunk_tokens, record.chunk_overlap
                )
            if split is None:
                self.result = runner._run_whole(
                    self.text, self.emit, started, self.on_text, self.notice
                )
                return
            self._run = runner._piece_run(
                self.text,
                split,
                self.emit,
                self.on_text,
                self.notice,
                self.pieces,
                self.finished,
                lambda: self._since,
            )
        if not self._run.complete:
            self._run.step()
        if self._run.complete:
            self.result = self._run.finish()


def _has_text_at(tails: list[tuple[str | None, ...]]) -> Callable[[Any], bool]:
    """Whether an item holds a non-empty string at one of ``tails`` (path patterns within it,
    None for any list index): grounded text written in it."""

    def at(value: Any, tail: tuple[str | None, ...]) -> bool:
        if not tail:
            return isinstance(value, str) and value != ""
        head, rest = tail[0], tail[1:]
        if head is None:
            return isinstance(value, list) and any(at(v, rest) for v in value)
        return isinstance(value, dict) and head in value and at(value[head], rest)

    return lambda item: any(at(item, tail) for tail in tails)


class _ItemStream:
    """Emits the items of generated ``{"items": […]}`` text as they close, validated one by one."""

    def __init__(
        self,
        item: Validator | None,
        emit: Callable[[str], None],
        keep_empty: bool = False,
        *,
        dedupe: Callable[[Any], bool] | None = None,
    ) -> None:
        assert item is not None
        self.validator: Validator = item
        self.keep_empty = keep_empty
        self.dedupe = dedupe
        self.written: list[Any] = []  # this attempt's items so far, as generated
        self.emit = emit
        self.scanner = ItemScanner()
        self.printed: list[Any] = []
        self.attempt = 0
        self.index = 0  # items seen in the current attempt
        self.doomed = False  # an item of this attempt failed: it will be retried, print no more

    def feed(self, chunk: str) -> None:
        for raw in self.scanner.feed(chunk):
            if self.scanner.attempt != self.attempt:
                self._new_attempt()
            self._item(raw)
        if self.scanner.attempt != self.attempt:
            self._new_attempt()

    def _new_attempt(self) -> None:
        self.attempt = self.scanner.attempt
        self.index = 0
        self.doomed = False
        self.written = []
        if self.printed:
            # Only reachable if a whole document failed although each item passed: never print
            # a second version of a list that is already partly out.
            raise NoValidOutputError(
                f"the list failed validation after {len(self.printed)} item(s) were printed"
            )

    def _item(self, raw: str) -> None:
        self.index += 1
        if self.doomed:
            return
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            self.doomed = True  # the grammar makes this impossible; the whole check decides
            return
        repeat = self.dedupe is not None and self.dedupe(value) and value in self.written
        self.written.append(value)
        if repeat:
            return
        errors = validation_errors(value, self.validator)
        if errors and (repaired := repair(value, self.validator)) is not None:
            # As the whole document is repaired (``qwenjson.repeats``): the same item follows.
            value, errors = repaired[0], []
        if not errors:
            self.printed.append(value)
            self._print(value)
            return
        if self.printed:
            raise NoValidOutputError(
                f"item {self.index} failed validation after {len(self.printed)} item(s) were "
                "printed (printed items are final, so there is no retry):",
                errors,
            )
        self.doomed = True  # nothing printed yet: let the attempt end and be retried

    def finish(self, data: Any) -> None:
        items = data.get("items") if isinstance(data, dict) else None
        if isinstance(items, list) and self.dedupe is not None:
            dedupe = self.dedupe
            items = [v for i, v in enumerate(items) if not (dedupe(v) and v in items[:i])]
        if not isinstance(items, list) or items[: len(self.printed)] != self.printed:
            raise NoValidOutputError("the streamed items disagree with the final document")
        # Generators that don't stream text (or a tail the scanner hadn't closed yet).
        for value in items[len(self.printed) :]:
            self.printed.append(value)
            self._print(value)

    def _print(self, value: Any) -> None:
        shown = value if self.keep_empty else drop_empty_strings(value, self.validator)
        self.emit(_compact(shown))


def _item_evidence(result: Extraction, index: int, item: Any) -> dict[str, Any]:
    """``--each --evidence``: one item with its evidence, pointers relative to the item."""
    prefix = f"/items/{index}"

    def within(values: dict[str, Any]) -> dict[str, Any]:
        return {
            p[len(prefix) :]: v
            for p, v in values.items()
            if p == prefix or p.startswith(prefix + "/")
        }

    return {
        "data": item,
        "evidence": within(result.evidence),
        "confidence": within(result.confidence),
    }


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
