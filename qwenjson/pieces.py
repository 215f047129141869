"""Extraction from a text longer than the context: piece by piece, merged, resumable.

The text is split (``qwenjson.chunking``), each piece is extracted by the same ``Extractor`` (the
prompt prefix the pieces share is evaluated once), with evidence in whole-text coordinates,
and the documents are merged (``qwenjson.merging``). With ``--each`` the new items of each
piece are emitted as soon as it is merged; otherwise the merged document at the end. After each
piece, ``on_done`` is told (the checkpoint logs it); a rerun passes the pieces already done and
goes on from the next one, with the same output an uninterrupted run gives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema.protocols import Validator

from qwenjson.chunking import CHARS_PER_TOKEN, Piece, next_start, piece_end
from qwenjson.errors import InputError, NoValidOutputError, UsageError
from qwenjson.generation import prompt_size
from qwenjson.merging import Found, Merger, PathT
from qwenjson.pipeline import Extraction, Extractor, OutOfTokens
from qwenjson.pointer import to_pointer
from qwenjson.source import AROUND
from qwenjson.validate import drop_empty_strings, validation_errors

__all__ = [
    "DEFAULT_PIECE_TOKENS",
    "PieceHooks",
    "PieceRun",
    "Plan",
    "check_overlap",
    "plan_pieces",
    "run_pieces",
]

# Most tokens of text in a piece when a text is split and --chunk-tokens is not given. A 0.5B
# model lists far fewer of a piece's items as the piece grows: scripts/bench_chunks.py on the
# extraction-dev CoNLL texts joined (2,351 tokens, Qwen2.5 0.5B Q4_K_M), merged recall and
# precision 0.320/0.320 in pieces of 128 tokens, 0.272/0.384 of 256, 0.087/0.214 of 512; each
# text alone 0.282/0.326. 256 has the F1 of 128 (0.32) with half the pieces, and more context
# for one object's fields.
DEFAULT_PIECE_TOKENS = 256

# Tokens kept free beside each piece: a piece's text can tokenize a token or two differently
# inside the prompt than alone (``fit_to_context`` re-measures for the same reason).
_SEAM = 8


@dataclass(frozen=True)
class Plan:
    """How a text is split: most tokens of text per piece, and tokens of overlap."""

    budget: int
    overlap: int


def plan_pieces(
    extractor: Extractor, text: str, chunk_tokens: int | None, overlap: int | None
) -> Plan | None:
    """The plan for ``text``, or None when it fits in one piece (extract it whole).

    A text is split when it doesn't fit beside the prompt and ``--max-tokens`` (or is longer
    than ``chunk_tokens``), into pieces of at most ``chunk_tokens`` (default
    ``DEFAULT_PIECE_TOKENS``, less if that doesn't fit); the overlap defaults to an eighth of a
    piece. Only a bounded prefix of ``text`` is tokenized.
    """
    room = _room(extractor)
    if room < 16:
        return None  # hardly room for a word: the text is measured exactly, and likely refused
    whole = room if chunk_tokens is None else min(room, chunk_tokens)  # the most read at once
    budget = _piece_budget(room, chunk_tokens)
    # An eighth: enough to hold a sentence or two of the piece before, so an item whose
    # sentence straddles a piece's end is whole in one of them (a choice, not a measurement).
    lap = budget // 8 if overlap is None else overlap
    _check_overlap(lap, budget)
    stripped = text.strip()
    reach = whole * CHARS_PER_TOKEN + 1
    if len(stripped) <= reach and extractor.generator.count_tokens(stripped) <= whole:
        return None
    return Plan(budget, lap)


def check_overlap(extractor: Extractor, chunk_tokens: int | None, overlap: int) -> None:
    """UsageError unless ``overlap`` is under half the pieces this extractor's context makes:
    asked once before any record is read, so that a batch isn't refused record by record, and
    only once a long one comes (``plan_pieces`` asks again for each text it splits)."""
    room = _room(extractor)
    if room >= 16:
        _check_overlap(overlap, _piece_budget(room, chunk_tokens))


def _room(extractor: Extractor) -> int:
    """Tokens of text the context holds beside the prompt and ``--max-tokens``."""
    gen = extractor.generator
    probe = "x"
    prompt = prompt_size(gen, extractor.messages(probe)) - gen.count_tokens(probe)
    return gen.n_ctx - extractor.options.max_tokens - prompt - _SEAM


def _piece_budget(room: int, chunk_tokens: int | None) -> int:
    """Most tokens of text in a piece: ``--chunk-tokens`` or the default, at most ``room``."""
    return min(room, DEFAULT_PIECE_TOKENS if chunk_tokens is None else chunk_tokens)


def _check_overlap(lap: int, budget: int) -> None:
    if lap >= budget // 2:
        raise UsageError(
            f"--chunk-overlap {lap} must be less than half a piece ({budget} tokens of text "
            "here: what the context holds beside the prompt and --max-tokens, at most "
            "--chunk-tokens)"
        )


@dataclass
class PieceHooks:
    """What the caller wants to hear: ``done`` a piece merged (its items already emitted),
    ``progress(pieces done, pieces expected)``, ``on_text`` generated text, ``notice``."""

    done: Callable[[Piece, Found], None] | None = None
    progress: Callable[[int, int], None] | None = None
    on_text: Callable[[str], None] | None = None
    notice: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Output:
    """How to print: ``each`` item (validated by ``item``), with evidence, empties kept."""

    each: bool
    evidence: bool
    keep_empty: bool
    require_evidence: bool
    item: Validator | None = None


def run_pieces(
    extractor: Extractor,
    text: str,
    plan: Plan,
    emit: Callable[[str], None],
    output: Output,
    *,
    finished: Sequence[tuple[Piece, Found]] = (),
    hooks: PieceHooks | None = None,
) -> Extraction:
    """Extract ``text`` piece by piece and emit the merged result (see the module docstring).

    ``finished``: the pieces a checkpoint says are done, with their documents; they are merged
    again (not extracted, not emitted), and the next piece starts after the last of them.
    Raises UsageError when they can't be this text's pieces.
    """
    run = PieceRun(extractor, text, plan, emit, output, finished=finished, hooks=hooks)
    while not run.complete:
        run.step()
    return run.finish()


class PieceRun:
    """``run_pieces`` one piece at a time: ``step`` extracts the next piece (merged, its items
    emitted, ``hooks.done`` told), ``finish`` emits the merged result. The caller may stop
    between pieces and go on later in the same process (a Ray actor returns after each piece,
    so the driver can write and log it as a local run does)."""

    def __init__(
        self,
        extractor: Extractor,
        text: str,
        plan: Plan,
        emit: Callable[[str], None],
        output: Output,
        *,
        finished: Sequence[tuple[Piece, Found]] = (),
        hooks: PieceHooks | None = None,
    ) -> None:
        self.extractor, self.text, self.plan = extractor, text, plan
        self.emit, self.output = emit, output
        self.hooks = hooks = hooks or PieceHooks()
        self.whole = extractor.prepared.validator  # the merged document's: at the end
        extractor = self.extractor = _per_piece(extractor)
        # One object: a field two pieces give is taken from the one the model was surer of
        # (bench_chunks.py --field-rule-cases 20, SROIE receipts among news, Qwen2.5 0.5B:
        # right 15 times of 80 against 8 for the first).
        self.merger = Merger(extractor.prepared.validator, confident=not output.each)
        self._count = extractor.generator.count_tokens
        self.start = self.index = 0
        self._replayed_to_end = False
        for logged, found in finished:
            if not (
                self.start <= logged.start < logged.end <= len(text) and logged.index >= self.index
            ):
                raise UsageError(
                    f"the checkpoint's piece {logged.index + 1} is not one of this text's "
                    "(another text?): delete it to start over"
                )
            self.merger.add(found)
            if logged.end >= len(text):
                _progress(hooks, text, logged, len(text))
                self._replayed_to_end = True
                break
            self.start = next_start(text, self._count, logged, plan.overlap)
            self.index = logged.index + 1
            _progress(hooks, text, logged, self.start)
        self.complete = self._replayed_to_end or self.start >= len(text)

    def step(self) -> tuple[Piece, Found] | None:
        """Extract the next piece that has text in it (blank ones are passed over); that piece
        and its document, or None when only blanks were left. Sets ``complete`` after the
        last."""
        text, hooks = self.text, self.hooks
        while not self.complete:
            index = self.index
            piece = Piece(
                index, self.start, piece_end(text, self._count, self.start, self.plan.budget)
            )
            done: tuple[Piece, Found] | None = None
            if text[piece.start : piece.end].strip():
                if index == 0 and hooks.progress is not None:
                    hooks.progress(0, 1 + _expected(text, piece, piece.end))
                piece, found = _extract_fitting(self.extractor, text, piece, hooks)
                appended = self.merger.add(found)
                if self.output.each:
                    _emit_items(self.merger, appended, self.emit, self.output)
                if hooks.done is not None:
                    hooks.done(piece, found)
                done = (piece, found)
            if piece.end >= len(text):
                if done is not None:
                    _progress(hooks, text, piece, len(text))
                self.complete = True
            else:
                self.start = next_start(text, self._count, piece, self.plan.overlap)
                self.index = index + 1
                if done is not None:
                    _progress(hooks, text, piece, self.start)
            if done is not None:
                return done
        return None

    def finish(self) -> Extraction:
        """Emit the merged result (the document, unless items went out one by one)."""
        if self.merger.skipped and self.hooks.notice is not None and not self._replayed_to_end:
            self.hooks.notice(
                f"{self.merger.skipped} value(s) from later pieces were left out: adding them "
                "broke the schema"
            )
        return _finish(self.merger, self.emit, self.output, self.whole)


# What a list of the root object must hold in the whole text, not in each piece: a piece that
# names one person under "minItems": 2 had to pad its list (a review, /tmp/rev-long/x7.py: with
# a model that lists what it reads, three people one a piece failed with exit 5; read whole,
# all three). Checked on the merged document instead (``_whole_text_problems``). Not freed: a
# list of a fixed length or shape (minItems == maxItems, prefixItems, items as an array: a
# tuple stitched from two pieces says what no passage does), and a "contains" a "maxContains"
# bounds (the merge keeps it by leaving out what breaks it; only its minimum is freed).
_WHOLE_TEXT_KEYWORDS = ("minItems", "minContains", "contains")


def _freed(sub: Any) -> dict[str, Any] | None:
    """``sub`` (a root member's schema as written) without what only the whole text must
    satisfy, or None when nothing is freed."""
    if not isinstance(sub, dict) or not any(k in sub for k in _WHOLE_TEXT_KEYWORDS):
        return None
    fixed = sub.get("minItems") is not None and sub.get("minItems") == sub.get("maxItems")
    if fixed or "prefixItems" in sub or isinstance(sub.get("items"), list):
        return None
    if "maxContains" in sub:
        freed = {k: v for k, v in sub.items() if k != "minItems"}
        return {**freed, "minContains": 0}
    return {k: v for k, v in sub.items() if k not in _WHOLE_TEXT_KEYWORDS}


def _per_piece(extractor: Extractor) -> Extractor:
    """The extractor for one piece: ``extractor`` with the root object's lists (as written,
    not behind a ``$ref``) ``_freed``; itself when none is. Made for each long text (a compile
    of the schema, against minutes of model time; a cache keyed by extractor held them all)."""
    schema = extractor.prepared.schema
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(schema, dict) or not isinstance(props, dict):
        return extractor
    freed = {name: f for name, sub in props.items() if (f := _freed(sub)) is not None}
    if not freed:
        return extractor
    loose = {**schema, "properties": {**props, **freed}}
    return Extractor(loose, extractor.generator, extractor.options, system=extractor.system)


def _whole_text_problems(data: Any, whole: Validator, errors: list[str]) -> list[str]:
    """Why the merged ``data`` fails the schema as given, the freed keywords said with counts
    (jsonschema's messages print the whole list, and a long text's list is long)."""
    schema = whole.schema
    props = schema.get("properties") if isinstance(schema, dict) else None
    said: list[str] = []
    for name, sub in props.items() if isinstance(props, dict) else ():
        items = data.get(name) if isinstance(data, dict) else None
        if _freed(sub) is None or not isinstance(items, list):
            continue
        where = to_pointer((name,))
        least = sub.get("minItems")
        if isinstance(least, int) and len(items) < least:
            said.append(
                f"{where}: the whole text gave {len(items)} item(s); the schema asks for at "
                f"least {least} (minItems)"
            )
        if "contains" in sub:
            matches = whole.evolve(schema=sub["contains"])
            matching = sum(1 for item in items if matches.is_valid(item))
            wanted = sub.get("minContains", 1)
            if isinstance(wanted, int) and matching < wanted:
                said.append(
                    f"{where}: {matching} of the whole text's {len(items)} item(s) match its "
                    f'"contains"; the schema asks for at least {wanted}'
                )
    if said:
        return said
    return [e if len(e) <= 300 else e[:300] + "…" for e in errors]


def _extract_fitting(
    extractor: Extractor, text: str, piece: Piece, hooks: PieceHooks
) -> tuple[Piece, Found]:
    """``piece``, extracted; when its document doesn't fit ``--max-tokens`` (a dense stretch
    with many items), a piece half as long from the same start, and so on."""
    count = extractor.generator.count_tokens
    while True:
        try:
            return piece, _extract(extractor, text, piece, hooks.on_text)
        except OutOfTokens:
            budget = count(text[piece.start : piece.end]) // 2
            if budget < 16:
                raise
            shorter = Piece(piece.index, piece.start, piece_end(text, count, piece.start, budget))
            if shorter.end >= piece.end:
                raise
            if hooks.notice is not None:
                hooks.notice(
                    f"piece {piece.index + 1}: its document did not fit --max-tokens; "
                    f"reading {budget} tokens of text instead"
                )
            piece = shorter


def _extract(
    extractor: Extractor, text: str, piece: Piece, on_text: Callable[[str], None] | None
) -> Found:
    part = text[piece.start : piece.end]
    around = (
        text[max(0, piece.start - AROUND) : piece.start],
        text[piece.end : piece.end + AROUND],
    )
    result = extractor.run(part, on_text=on_text, offset=piece.start, around=around)
    return Found(result.data, result.evidence, result.confidence, result.unsupported)


def _progress(hooks: PieceHooks, text: str, piece: Piece, following: int) -> None:
    """Tell ``hooks`` that ``piece`` is done and the next one starts at ``following``."""
    if hooks.progress is not None:
        hooks.progress(piece.index + 1, piece.index + 1 + _expected(text, piece, following))


def _expected(text: str, piece: Piece, following: int) -> int:
    """Pieces still to come after ``piece``, guessed from its length in characters."""
    stride = max(1, following - piece.start)
    return math.ceil((len(text) - following) / stride) if following < len(text) else 0


def _emit_items(
    merger: Merger, appended: list[PathT], emit: Callable[[str], None], output: Output
) -> None:
    shown = []
    for path in appended:
        value, evidence, confidence = merger.subtree(path)
        if output.require_evidence and merger.unsupported_in(path):
            _no_source(merger.unsupported_in(path))
        if output.evidence:
            shown.append({"data": value, "evidence": evidence, "confidence": confidence})
        elif output.keep_empty or output.item is None:
            shown.append(value)
        else:
            shown.append(drop_empty_strings(value, output.item))
    for value in shown:
        emit(_compact(value))


def _finish(
    merger: Merger, emit: Callable[[str], None], output: Output, whole: Validator
) -> Extraction:
    if not merger.started:
        raise InputError("input is empty: give the text to extract from on stdin or with --input")
    data = merger.data
    if errors := validation_errors(data, whole):  # what a piece wasn't held to (_per_piece)
        raise NoValidOutputError(
            "the document merged from the pieces fails the schema:",
            _whole_text_problems(data, whole, errors),
        )
    order = [to_pointer(p) for p in _leaves(data)]
    evidence = {p: merger.evidence.get(p) for p in order}
    confidence = {p: merger.confidence.get(p, 1.0) for p in order}
    unsupported = tuple(p for p in order if p in merger.unsupported)
    compact = _compact(data)
    if not output.each:
        if output.require_evidence and unsupported:
            _no_source(list(unsupported))
        if output.evidence:
            emit(_compact({"data": data, "evidence": evidence, "confidence": confidence}))
        else:
            emit(compact)
    return Extraction(data, compact, 1, (), evidence, confidence, unsupported)


def _no_source(pointers: list[str]) -> None:
    raise NoValidOutputError(
        "--require-evidence: the text has no source for " + ", ".join(p or "/" for p in pointers)
    )


def _leaves(data: Any, path: PathT = ()) -> list[PathT]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaves(v, (*path, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _leaves(v, (*path, i))]
    return [path]


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
