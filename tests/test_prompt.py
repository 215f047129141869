"""The messages sent to the model: fields in plain words, the text unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from qwenjson.prompt import (
    CHINESE,
    ENGLISH,
    FIELDS_HEADER,
    RULES,
    build_messages,
    system_message,
    words_for,
)

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "full name"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "hobbies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
}


def test_the_text_is_the_user_message_without_surrounding_blanks() -> None:
    # A file or a pipe ends the text with a newline: a token of prompt that says nothing.
    text = "\n 请创建一个叫李明的人\n  <|im_end|> stays text\n\n"
    messages = build_messages(PERSON, text)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "请创建一个叫李明的人\n  <|im_end|> stays text"


def test_fields_are_listed_in_order_with_type_and_whether_required() -> None:
    lines = system_message(PERSON).splitlines()
    assert "JSON object" in lines[0]
    start = lines.index(FIELDS_HEADER)
    assert lines[start + 1 : start + 4] == [
        '- "name": string, required — full name',
        '- "age": integer from 0 to 150, required',
        '- "hobbies": list of string, optional',
    ]
    assert lines[-1] == RULES


def test_enums_consts_nesting_and_refs_are_described() -> None:
    schema = {
        "type": "object",
        "$defs": {"city": {"type": "string", "title": "city name"}},
        "properties": {
            "状态": {"enum": ["开", "关"]},
            "kind": {"const": "order"},
            "address": {
                "type": "object",
                "properties": {"city": {"$ref": "#/$defs/city"}, "zip": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    text = system_message(schema)
    assert '- "状态": one of "开", "关", optional' in text  # not \\u-escaped
    assert '- "kind": always "order", optional' in text
    assert '- "address": object with fields, optional' in text
    assert '  - "city": string, required — city name' in text
    assert '  - "zip": string, optional' in text


def test_a_value_that_is_not_an_object_is_described_in_one_line() -> None:
    text = system_message({"type": "array", "items": {"type": "integer", "minimum": 1}})
    assert "JSON value" in text.splitlines()[0]
    assert "The value is: list of integer ≥ 1" in text
    assert FIELDS_HEADER not in text


def test_an_instruction_becomes_the_task() -> None:
    text = system_message(PERSON, "  only the first person  ")
    assert "\n\nTask: only the first person\n\n" in text


def test_a_huge_schema_is_described_only_in_part() -> None:
    schema = {"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(500)}}
    text = system_message(schema)
    assert "(more fields follow the same pattern)" in text
    assert '"f499"' not in text
    assert len(text.splitlines()) < 80


def test_boolean_and_empty_schemas_still_give_a_message() -> None:
    for schema in (True, {}, {"anyOf": [{"type": "string"}, {"type": "null"}]}):
        text = system_message(schema)
        assert text.startswith("Extract data") and text.endswith(RULES)


def test_the_schemas_own_description_of_the_whole_follows_the_first_line() -> None:
    schema = {**PERSON, "description": "A person named\n  in a short   note."}
    paragraphs = system_message(schema, "Skip titles.").split("\n\n")
    assert paragraphs[1:3] == ["A person named in a short note.", "Task: Skip titles."]
    assert system_message(PERSON).split("\n\n")[1].startswith(FIELDS_HEADER)


def test_a_schema_described_in_chinese_gets_a_chinese_message() -> None:
    schema = {
        "type": "object",
        "description": "从简历中抽取的信息",
        "properties": {
            "name": {"type": "string", "description": "本人姓名"},
            "titles": {"type": "array", "items": {"type": "string"}, "description": "职务"},
        },
        "required": ["name"],
    }
    text = system_message(schema, "只抽取中文")
    assert text.split("\n\n") == [
        "从用户的文本中抽取数据，输出一个 JSON 对象。",
        "从简历中抽取的信息",
        "任务：只抽取中文",
        '字段：\n- "name": 字符串，必填 — 本人姓名\n- "titles": 字符串列表，可选 — 职务',
        CHINESE.rules,
    ]


@pytest.mark.parametrize(
    "schema",
    [
        PERSON,  # no descriptions at all
        {"type": "object", "properties": {"名字": {"type": "string"}}},  # Chinese keys only
        {"enum": ["北京", "上海"], "description": "the city"},  # values are not the schema's words
        {"properties": {"a": {"description": "地址 street address and city"}}},  # mostly English
    ],
)
def test_other_schemas_keep_the_english_message(schema: Any) -> None:
    assert words_for(schema) is ENGLISH
    assert system_message(schema).endswith(RULES)


@pytest.mark.parametrize(
    "description",
    ["お客様の氏名と住所", "고객의 이름 名前"],  # Japanese with kana; Korean with hanja
)
def test_japanese_and_korean_schemas_keep_the_english_message(description: str) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "description": description}}}
    assert words_for(schema) is ENGLISH
