"""Fakes shared by the tests: the one fake model, for CLI and batch plumbing only (generation is
tested on real GGUFs), and the grammar checks the sampling rules are tested against."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from qwenjson.generation import Constraint, GenerationResult, Message


@dataclass
class FakeModel:
    """Answers ``answer(user_text, attempt)``, or replays ``answers`` in order, and streams the
    answer through ``on_text`` three characters at a time. Records what it was asked."""

    answer: Callable[[str, int], str] | None = None
    answers: list[str] = field(default_factory=list)
    finish: Literal["stop", "length"] = "stop"
    context: int = 100_000
    calls: list[tuple[list[Message], str]] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # "chunk" / "return", in order
    on_chunk: Callable[[], None] | None = None
    closed: bool = False

    @property
    def n_ctx(self) -> int:
        return self.context

    def count_tokens(self, text: str) -> int:
        return len(text)

    def render_chat(self, messages: Sequence[Message]) -> str:
        return "\n".join(m["content"] for m in messages)

    def generate(
        self,
        messages: Sequence[Message],
        grammar: str,
        *,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        on_text: Callable[[str], None] | None = None,
        constraint: Constraint | None = None,
        trace: bool = False,
    ) -> GenerationResult:
        self.calls.append((list(messages), grammar))
        user = messages[1]["content"]
        attempt = (len(messages) - 2) // 2 + 1
        self.users.append(user)
        out = self.answer(user, attempt) if self.answer is not None else self.answers.pop(0)
        for i in range(0, len(out), 3):
            self.events.append("chunk")
            if self.on_chunk is not None:
                self.on_chunk()
            if on_text is not None:
                on_text(out[i : i + 3])
        self.events.append("return")
        if constraint is not None:
            constraint.accept(out.encode("utf-8"))  # unchecked: the answer is the test's
        return GenerationResult(out, 10, len(out), 1.0, 1.0, self.finish)

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeChecks:
    """``sampling.Checks`` over a fixed grammar mask, banned tokens and a constraint's set."""

    grammar: npt.NDArray[np.bool_]
    banned_ids: frozenset[int] = frozenset()
    passing: frozenset[int] | None = None  # None: no constraint
    calls: list[str] = field(default_factory=list)

    def allows(self, token: int) -> bool:
        self.calls.append("allows")
        return token not in self.banned_ids and bool(self.grammar[token])

    def grammar_allows(self, ids: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        self.calls.append("grammar_allows")
        return self.grammar[ids]

    def banned(self, token: int) -> bool:
        return token in self.banned_ids

    def passes(self, token: int) -> bool:
        return self.passing is None or token in self.passing

    def mask(self) -> npt.NDArray[np.bool_]:
        self.calls.append("mask")
        return self.allowed()

    def allowed(self) -> npt.NDArray[np.bool_]:
        """The oracle's full mask."""
        mask = self.grammar.copy()
        mask[list(self.banned_ids)] = False
        if self.passing is not None:
            keep = np.zeros_like(mask)
            keep[list(self.passing)] = True
            mask &= keep
        return mask
