"""The model's chat template: messages to prompt text and prompt tokens."""

from __future__ import annotations

import ctypes
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import jinja2
import jinja2.ext
import llama_cpp.llama_cpp as ll
from jinja2.sandbox import ImmutableSandboxedEnvironment

from qwenjson.errors import ModelError
from qwenjson.generation import Message
from qwenjson.vocab import Vocabulary

__all__ = ["CHATML_TEMPLATE", "ChatTemplate"]

# Used when the GGUF carries no `tokenizer.chat_template` (ChatML is what Qwen2 and SmolLM2 use).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ChatTemplate:
    """The chat template a loaded model carries (``llama_model``), rendered in a sandbox."""

    def __init__(self, model: Any, vocab: Vocabulary) -> None:
        self._model = model
        self._vocab = vocab
        self._template: jinja2.Template | None = None

    def source(self) -> str:
        """The GGUF's ``tokenizer.chat_template``, or ChatML if the file has none."""
        key = b"tokenizer.chat_template"
        size = 1 << 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = ll.llama_model_meta_val_str(self._model, key, buf, size)
            if n < 0:
                return CHATML_TEMPLATE
            if n < size:
                return buf.raw[:n].decode("utf-8", "replace")
            size = n + 1

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt for ``messages`` in the model's own chat template, ready for the reply."""
        if self._template is None:
            env = ImmutableSandboxedEnvironment(
                loader=jinja2.BaseLoader(),
                trim_blocks=True,
                lstrip_blocks=True,
                extensions=[jinja2.ext.loopcontrols],
            )
            try:
                self._template = env.from_string(self.source())
            except jinja2.TemplateError as e:
                raise ModelError(f"the model's chat template doesn't parse: {e}") from e

        def raise_exception(message: str) -> None:
            raise ModelError(f"the model's chat template refused the messages: {message}")

        try:
            return self._template.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=True,
                bos_token=self._vocab.bos_text,
                eos_token=self._vocab.eos_text,
                raise_exception=raise_exception,
                strftime_now=lambda fmt: time.strftime(fmt),
            )
        except jinja2.TemplateError as e:
            raise ModelError(f"the model's chat template failed: {e}") from e

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The tokens of the rendered prompt (BOS if the model wants one).

        The template's own text is tokenized with special tokens parsed; the messages' contents
        are not: they are data, and a record saying ``<|im_end|>`` must not end its turn (a
        prompt injection). The template is rendered with a marker for each content, and the
        pieces between markers are tokenized each in its own way.
        """
        vocab = self._vocab
        markers = [f"\x00qwenjson-content-{i}\x00" for i in range(len(messages))]
        rendered = self.render(
            [{**m, "content": marker} for m, marker in zip(messages, markers, strict=True)]
        )
        contents = {marker: m["content"] for m, marker in zip(messages, markers, strict=True)}
        pattern = "(" + "|".join(re.escape(m) for m in markers) + ")" if markers else "(?!)"
        add_bos = vocab.add_bos and not (vocab.bos_text and rendered.startswith(vocab.bos_text))
        tokens: list[int] = []
        for part in re.split(pattern, rendered):
            if not part:
                continue
            if part in contents:
                text, special = contents[part], False
            else:
                text, special = part, True
            tokens += vocab.tokenize(text.encode("utf-8"), special=special, add_bos=add_bos)
            add_bos = False
        return tokens

    def shared_prefix_len(self, messages: Sequence[Message], tokens: list[int]) -> int:
        """How many leading prompt tokens don't depend on the last message (the cacheable part).

        The template is rendered twice with different last contents; the common text is what
        every record shares (system message, schema, the user turn's header). Only tokens that
        lie entirely inside it and match its own tokenization count, so a merge across the
        boundary can never be cached as if it were shared.
        """
        if not messages:
            return 0
        last = dict(messages[-1])
        probes = []
        for filler in ("a", "b"):
            probes.append(self.render([*messages[:-1], {**last, "content": filler}]))
        common = os.path.commonprefix(probes)  # noqa: RUF071 -- strings, not paths
        shared = self._vocab.tokenize(common.encode("utf-8"), special=True, add_bos=False)
        offset = 1 if tokens and shared and tokens[0] != shared[0] else 0  # a BOS we added
        n = 0
        for a, b in zip(tokens[offset:], shared, strict=False):
            if a != b:
                break
            n += 1
        # The last shared token may merge with the record's first characters: leave it out.
        return max(0, offset + n - 1)
