"""What one generation did: ``GenerationStats``, filled in by the engine's parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["GenerationStats"]


@dataclass
class GenerationStats:
    """What the last ``generate`` call did, for benchmarks and tests (not part of the protocol)."""

    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose KV state was already in memory
    disk_prefix: Literal["none", "hit", "miss"] = "none"  # the prefix cache on disk
    decode_calls: int = 0  # llama_decode calls after the prompt
    sampled_tokens: int = 0  # tokens the model chose
    forced_tokens: int = 0  # tokens fed by fast-forward
    # The forced start's held-back last token, evaluated with the prompt on the guess that the
    # model picks it (``Engine._lead_guess``): None when not tried, else whether it was right.
    lead_guess: bool | None = None
    threads: tuple[int, int] = (0, 0)  # llama.cpp threads used: (decoding, the prompt)
    drafted: int = 0  # tokens evaluated on a draft from the prompt (``qwenjson.drafting``)
    draft_hits: int = 0  # of those, the ones the model chose
    draft_misses: int = 0  # drafts dropped because the model chose another token there
    # Drafts the model chose but that were taken back to be fed again with the forced text
    # after them, respelled the tokenizer's way (as a chosen token always is).
    draft_respelled: int = 0
    full_masks: int = 0  # steps that masked the whole vocabulary
    rejections: int = 0  # tokens the model preferred but the grammar refused
    # Of the decode time, how much llama_decode itself took: the rest is the loop's overhead
    # (sampling, grammar checks, probing), a figure that doesn't depend on machine load.
    model_ms: float = 0.0
    # Tokens chosen by budget steering (the budget ran low: head for the shortest completion),
    # and the index in ``tokens`` of the first of them.
    steered: int = 0
    steered_from: int | None = None
    # Every output token in order, and whether fast-forward fed it (True) or the model chose it.
    tokens: list[tuple[int, bool]] = field(default_factory=list)
