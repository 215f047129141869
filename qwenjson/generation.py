"""What a text generator returns, and the protocol the extraction pipeline needs of one.

``engine.Engine`` is the real implementation on llama.cpp; tests of CLI plumbing use a fake
that satisfies the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


class TokenTrace(NamedTuple):
    """One emitted piece of the output: its byte range, and ``logprob``, the model's
    log-probability of the token (unconstrained softmax) when the model chose it, None when
    the grammar forced the text."""

    start: int
    end: int
    logprob: float | None


class Constraint(Protocol):
    """A check on output bytes beside the grammar (``qwenjson.grounding.Grounding``)."""

    def allows(self, piece: bytes) -> bool:
        """Whether ``piece`` may come next."""
        ...

    def accept(self, piece: bytes) -> None:
        """Commit ``piece`` (allowed, or forced by the grammar)."""
        ...

    def fork(self) -> Constraint:
        """An independent copy of the state."""
        ...

    def refused(self, piece: bytes) -> None:
        """The model's own choice ``piece`` was refused."""
        ...

    def would_abstain(self, piece: bytes) -> bool:
        """Whether refusing ``piece`` means the current value should be closed empty."""
        ...

    def closes_empty(self, piece: bytes) -> bool:
        """Whether ``piece`` closes the current value empty."""
        ...

    def respelled(self, piece: bytes) -> bytes | None:
        """``piece`` as the text spells it, if it was refused only for the case of letters."""
        ...

    def case_changed(self) -> None:
        """The next piece written is ``respelled``'s spelling of the model's choice."""
        ...

    def blank_continuations(self, piece: bytes) -> list[bytes]:
        """The text's own line break to write where the model's ``piece`` has a blank."""
        ...

    def closing_reserve(self) -> int:
        """Tokens the output needs at least to be complete, beyond closing brackets."""
        ...

    def measure_with(self, count: Callable[[bytes], int]) -> None:
        """Count what ``closing_reserve`` can with the model's tokenizer (``count``)."""
        ...

    def refine(
        self,
        mask: Any,
        piece: Callable[[int], bytes],
        prefix_ids: Callable[[bytes], list[int]],
        sensitive: Any,
    ) -> Any:
        """The boolean vocabulary ``mask`` narrowed to what the constraint allows."""
        ...


@dataclass(frozen=True)
class GenerationResult:
    """One constrained generation: the text and what it cost."""

    text: str
    prompt_tokens: int
    generated_tokens: int
    prefill_ms: float
    decode_ms: float
    # "stop": the grammar completed (or the model ended it); "length": max_tokens ran out.
    finish_reason: Literal["stop", "length"]
    # With ``trace=True``: every emitted piece, in order (see ``TokenTrace``).
    trace: tuple[TokenTrace, ...] = ()


class Generator(Protocol):
    """A model that renders chat messages and generates text under a GBNF grammar."""

    @property
    def n_ctx(self) -> int:
        """The context size in tokens."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` takes with this model's tokenizer."""
        ...

    def render_chat(self, messages: Sequence[Message]) -> str:
        """The prompt for ``messages`` in the model's own chat template, ready for the reply."""
        ...

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
        """Generate the assistant's reply to ``messages``, every token allowed by ``grammar``
        (and by ``constraint``); ``trace`` records each piece's log-probability."""
        ...

    def close(self) -> None:
        """Free the model."""
        ...


def prompt_size(generator: Generator, messages: Sequence[Message]) -> int:
    """The tokens of the prompt for ``messages``."""
    # The engine counts the rendered prompt exactly (special tokens as one token each); the
    # Generator protocol only promises count_tokens, which counts them as text (a bit more).
    exact = getattr(generator, "prompt_tokens", None)
    if callable(exact):
        return len(exact(messages))
    return generator.count_tokens(generator.render_chat(messages))
