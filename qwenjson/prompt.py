"""The messages a 0.5B model follows best.

Measured on Qwen2 0.5B: given a raw JSON Schema, the model sometimes copies the schema instead of
filling it in. So the system message describes the fields in plain words (name, type, whether
required, description, allowed values); the grammar takes care of syntax. The input text is the
user message, unchanged; the engine renders both with the model's own chat template.

Three other prompts scored lower with ``scripts/quality.py --no-anchor`` on the bench model (a
code model, Qwen2.5-Coder 0.5B), against 36.6% for this one: the schema as a commented JSON
skeleton (``"album"?: string,  // album name``), 33.8%, lower on 6 of the 7 sources; a worked
example before the text (a user turn joining the example values the descriptions give, "如
杭州市", "e.g. '61'", and the assistant's JSON of them), Chinese addresses 11.4% against 13.0%
(the model still puts the address's pieces under the fields in schema order); and receipts
with their line breaks turned into blanks (an address's lines would read as one), 47.5%
against 61.2% on the receipts.

The order is the prompt's, not the grammar's: a grammar that lets the optional keys of an
object come in any order (each once; tried on the addresses' root and the voice commands'
slots) scored the same, 13.0% and 28.3%, with almost the same documents: the model writes the
keys in the order this message lists them whatever the grammar allows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from qwenjson.generation import Message
from qwenjson.pointer import follow_local_refs

# Short on purpose: every prompt token is prefill time on every record (the larger part of a
# short record's time on a small CPU). Measured with `scripts/prompt_eval.py --raw` on Qwen2
# 0.5B, this wording passed as many checks (54 of 57) as one 45 tokens longer ("You are a strict
# JSON generator…", 53) and rewordings of the same length (53–54). The grammar keeps it JSON.
SYSTEM_INTRO = "Extract data from the user's text as one JSON {kind}."
FIELDS_HEADER = "Fields:"
RULES = (
    "Copy values from the text in their original language; never translate. Omit optional "
    "fields the text doesn't mention; never invent values."
)


@dataclass(frozen=True)
class Words:
    """The message's own words (the schema's are quoted as they are), in one language."""

    intro: str  # {kind}: object or value
    kinds: tuple[str, str]  # "object", "value"
    fields_header: str
    required: str
    optional: str
    comma: str
    string: str
    list_of: str  # {item}
    task: str
    rules: str


ENGLISH = Words(
    SYSTEM_INTRO,
    ("object", "value"),
    FIELDS_HEADER,
    "required",
    "optional",
    ", ",
    "string",
    "list of {item}",
    "Task: ",
    RULES,
)
# For a schema described in Chinese, the rest of the message in Chinese too. scripts/quality.py
# --no-anchor on the three Chinese sources, English words against these: CLUENER 5.9 -> 12.7%,
# résumés 34.9 -> 36.5%, addresses 13.0 -> 12.5% (overall 36.4 -> 37.6%; the English sources
# unchanged by construction).
CHINESE = Words(
    "从用户的文本中抽取数据，输出一个 JSON {kind}。",
    ("对象", "值"),
    "字段：",
    "必填",
    "可选",
    "，",
    "字符串",
    "{item}列表",
    "任务：",
    "值从文本中原样摘录，不要翻译；文本没有提到的可选字段不要输出；不要编造值。",
)


def words_for(schema: Mapping[str, Any] | bool) -> Words:
    """Chinese words when most letters of the schema's descriptions and titles are Chinese
    characters (and none is kana or Hangul: Japanese and Korean use them too), else English."""
    letters = [c for text in _texts(schema, 0) for c in text if c.isalpha()]
    if any(
        "\u3040" <= c <= "\u30ff" or "\uac00" <= c <= "\ud7af" or "\u1100" <= c <= "\u11ff"
        for c in letters
    ):
        return ENGLISH
    chinese = sum("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in letters)
    return CHINESE if letters and chinese * 2 >= len(letters) else ENGLISH


def _texts(node: Any, depth: int) -> Iterator[str]:
    """The descriptions and titles anywhere in ``node`` (not property names: they are keys)."""
    if depth > _MAX_NESTING:
        return
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("description", "title") and isinstance(value, str):
                yield value
            elif key not in ("enum", "const", "examples", "default"):
                yield from _texts(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item, depth + 1)


# A schema is described at most this deep and this long: past that, the grammar still enforces
# everything, and a 0.5B model gains nothing from a longer prompt.
_MAX_DEPTH = 4
_MAX_LINES = 60
_MAX_ENUM = 12
# Lists and alternatives are followed at most this deep: a recursive schema (`"items": {"$ref":
# "#"}`) would otherwise be followed without end.
_MAX_NESTING = 16


def build_messages(
    schema: Mapping[str, Any] | bool, text: str, instruction: str | None = None
) -> list[Message]:
    """The system and user messages that ask the model to fill ``schema`` from ``text``."""
    return [
        {"role": "system", "content": system_message(schema, instruction)},
        {"role": "user", "content": text.strip()},
    ]


def system_message(schema: Mapping[str, Any] | bool, instruction: str | None = None) -> str:
    """The system message for ``schema``: what to produce and the fields, in plain words."""
    root = schema if isinstance(schema, Mapping) else {}
    words = words_for(root)
    describer = _Describer(root, words)
    is_object = _types(describer.deref(root)) == ["object"]
    parts = [words.intro.format(kind=words.kinds[0] if is_object else words.kinds[1])]
    # The schema's own word on what the whole is ("Named entities mentioned in a news article
    # excerpt"). scripts/quality.py without it and with it: overall 35.3% -> 35.7%, news NER
    # 21.3 -> 26.6, résumés 29.9 -> 31.6, voice commands 27.7 -> 25.8, Chinese NER 9.8 -> 8.2.
    about = describer.deref(root).get("description")
    if isinstance(about, str) and about.strip():
        parts.append(" ".join(about.split()))
    if instruction:
        parts.append(words.task + instruction.strip())
    lines = describer.describe_root()
    if lines:
        parts.append("\n".join(lines))
    parts.append(words.rules)
    return "\n\n".join(parts)


def _types(schema: Mapping[str, Any]) -> list[str]:
    t = schema.get("type")
    if isinstance(t, str):
        return [t]
    if isinstance(t, list):
        return [x for x in t if isinstance(x, str)]
    if "properties" in schema:
        return ["object"]
    if "items" in schema or "prefixItems" in schema:
        return ["array"]
    return []


class _Describer:
    """Turns a schema into indented plain-language lines."""

    def __init__(self, root: Mapping[str, Any], words: Words = ENGLISH) -> None:
        self.root = root
        self.words = words
        self.lines: list[str] = []

    def deref(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """Follow local ``$ref``s (``#/…``); anything else is described as it stands."""
        node: Mapping[str, Any] = follow_local_refs(self.root, schema)
        return node

    def describe_root(self) -> list[str]:
        root = self.deref(self.root)
        if _types(root) == ["object"] and isinstance(root.get("properties"), Mapping):
            self.lines.append(self.words.fields_header)
            self._fields(root, indent=0, depth=0)
        else:
            self.lines.append("The value is: " + self._summary(root, indent=0, depth=0))
        if len(self.lines) > _MAX_LINES:
            self.lines = [*self.lines[:_MAX_LINES], "(more fields follow the same pattern)"]
        return self.lines

    def _fields(self, schema: Mapping[str, Any], indent: int, depth: int) -> None:
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return
        required = schema.get("required")
        required_set = set(required) if isinstance(required, list) else set()
        pad = "  " * indent
        for name, sub in props.items():
            if len(self.lines) > _MAX_LINES:
                return
            flag = self.words.required if name in required_set else self.words.optional
            sub_map = self.deref(sub) if isinstance(sub, Mapping) else {}
            line_index = len(self.lines)
            self.lines.append("")  # placeholder: nested fields go after this line
            summary = self._summary(sub_map, indent + 1, depth + 1)
            quoted = json.dumps(name, ensure_ascii=False)
            self.lines[line_index] = f"{pad}- {quoted}: {summary}{self.words.comma}{flag}"
            desc = sub_map.get("description") or sub_map.get("title")
            if isinstance(desc, str) and desc.strip():
                self.lines[line_index] += f" — {desc.strip()}"

    def _summary(self, schema: Mapping[str, Any], indent: int, depth: int) -> str:
        """One phrase for a schema; nested object fields are appended as indented lines."""
        if depth > _MAX_NESTING:
            return " or ".join(_types(schema)) or "any JSON value"
        if "const" in schema:
            return "always " + json.dumps(schema["const"], ensure_ascii=False)
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            shown = ", ".join(json.dumps(v, ensure_ascii=False) for v in enum[:_MAX_ENUM])
            more = ", …" if len(enum) > _MAX_ENUM else ""
            return f"one of {shown}{more}"
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                described = [
                    self._summary(self.deref(o), indent, depth + 1)
                    for o in options[:4]
                    if isinstance(o, Mapping)
                ]
                return " or ".join(described) if described else "any JSON value"
        types = _types(schema)
        if not types:
            return "any JSON value"
        phrases = [self._type_phrase(t, schema, indent, depth) for t in types]
        return " or ".join(phrases)

    def _type_phrase(self, t: str, schema: Mapping[str, Any], indent: int, depth: int) -> str:
        if t == "string":
            extra = []
            if isinstance(schema.get("format"), str):
                extra.append(f"format {schema['format']}")
            if isinstance(schema.get("maxLength"), int):
                extra.append(f"at most {schema['maxLength']} characters")
            if isinstance(schema.get("pattern"), str):
                extra.append(f"matching /{schema['pattern']}/")
            return self.words.string + (f" ({', '.join(extra)})" if extra else "")
        if t in ("integer", "number"):
            lo, hi = schema.get("minimum"), schema.get("maximum")
            if isinstance(lo, int | float) and isinstance(hi, int | float):
                return f"{t} from {lo} to {hi}"
            if isinstance(lo, int | float):
                return f"{t} ≥ {lo}"
            if isinstance(hi, int | float):
                return f"{t} ≤ {hi}"
            return t
        if t == "array":
            items = schema.get("items")
            if isinstance(items, Mapping):
                item = self._summary(self.deref(items), indent, depth + 1)
                return self.words.list_of.format(item=item)
            return "list"
        if t == "object":
            if depth < _MAX_DEPTH and isinstance(schema.get("properties"), Mapping):
                self._fields(schema, indent, depth)
                return "object with fields"
            return "object"
        return t  # boolean, null
