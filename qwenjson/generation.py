"""What a text generator returns, and the protocol the extraction pipeline needs of one.

``engine.Engine`` is the real implementation on llama.cpp; tests of CLI plumbing use a fake
that satisfies the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


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
    ) -> GenerationResult:
        """Generate the assistant's reply to ``messages``, every token allowed by ``grammar``."""
        ...

    def close(self) -> None:
        """Free the model."""
        ...
