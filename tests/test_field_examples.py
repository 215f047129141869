"""The schema's examples of each field, and what they say of a value's field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qwenjson.evidence import Annotated, annotate
from qwenjson.field_examples import (
    ExampleTyping,
    decisive_field,
    examples_of,
    field_examples,
    kind_score,
    pattern_of_pointer,
)
from qwenjson.fields import grounding_rules, schema_fields
from qwenjson.generation import TokenTrace
from qwenjson.grounding import Grounding, SourceText
from qwenjson.validate import make_validator


@pytest.mark.parametrize(
    ("node", "examples"),
    [
        # The kinds enumerated before the examples, marked as kinds: a value ends in one.
        (
            {"description": "乡、镇、街道，如 龙港镇、五常街道"},
            ("龙港镇", "五常街道", "*乡", "*镇", "*街道"),
        ),
        ({"description": "兴趣点：小区、大厦等地标名称"}, ("*小区", "*大厦")),
        ({"description": "学历或学位，如 硕士"}, ("硕士", "*学历", "*学位")),
        # One word names the field, it lists no kinds; a long one is prose.
        ({"description": "楼层，如 5楼"}, ("5楼",)),
        ({"description": "单位名称（公司、所属的具体单位名称等）"}, ("*公司",)),
        # The author's wildcard goes (公司, an example like any: 外资行 ends like 银行); 等
        # before a mark ends the examples.
        ({"description": "公司名，如 **公司、新华网"}, ("公司", "新华网")),
        ({"description": "地址，如 省/市/村等，尽量完整"}, ("省", "市", "村")),
        (
            {"description": "temperature asked about, e.g. 'cold', 'warm', 'freezing'"},
            ("cold", "warm", "freezing"),
        ),
        ({"description": "地址，如 省/市/区/街道/村等"}, ("省", "市", "区", "街道", "村")),
        (
            {"description": "a kind of place, such as park or museum. Not a city."},
            ("park", "museum"),
        ),
        ({"description": "单元号（如 2单元）"}, ("2单元",)),
        ({"examples": ["9号楼", 3], "description": "楼栋号，如 3幢"}, ("9号楼", "3幢")),
        ({"description": "the person's full name"}, ()),
        # A tail that is prose, not examples: too long to be one.
        (
            {"description": "e.g. whatever the text says about the weather on that day"},
            (),
        ),
    ],
)
def test_examples_of_a_field(node: dict[str, Any], examples: tuple[str, ...]) -> None:
    assert examples_of(node) == examples


@pytest.mark.parametrize(
    ("value", "examples", "score"),
    [
        ("萧山区", ["西湖区", "义乌市"], 1),  # ends in 区
        ("3号楼", ["9号楼", "3幢"], 2),  # 号楼
        ("Cold", ["cold", "warm"], 1000),  # one of them, case aside
        ("colder", ["cold"], 0),  # Latin endings say nothing
        ("曙光路", ["91号"], 0),
    ],
)
def test_kind_score(value: str, examples: list[str], score: int) -> None:
    assert kind_score(value, examples) == score


def test_the_one_field_whose_examples_match_best_decides() -> None:
    fields = {
        "city": ["杭州市"],
        "district": ["西湖区", "义乌市"],
        "road_number": ["91号", "669弄"],
        "building": ["9号楼", "3幢"],
        "floor": ["5楼", "3层"],
    }
    assert decisive_field("153号", fields) == "road_number"
    assert decisive_field("14号楼", fields) == "building"  # 号楼 beats floor's 楼
    assert decisive_field("3层", fields) == "floor"
    assert decisive_field("五楼", fields) is None  # building's 9号楼 ends in 楼 too
    assert decisive_field("宁波市", fields) is None  # city's and district's 市: a tie
    assert decisive_field("黄龙饭店", fields) is None  # no field's ending


def test_a_kind_the_value_ends_in_decides_where_examples_tie() -> None:
    fields = {
        "district": ["西湖区", "义乌市", "*区", "*县"],
        "development_zone": ["仙葫经济开发区", "*开发区"],
        "poi": ["*小区", "*大厦"],
        "titles": ["董事", "*职务"],
        "majors": ["会计专业"],
    }
    assert decisive_field("海曙区", fields) == "district"  # 区 is all of district's kind
    assert decisive_field("滨江开发区", fields) == "development_zone"  # the longer kind
    assert decisive_field("阳光城小区", fields) == "poi"
    assert decisive_field("会计财务", fields) is None  # 务 is not all of 职务
    assert kind_score("会计财务", ["*职务"]) == 0
    assert kind_score("海曙区", ["*区", "西湖区"]) == 1


_ADDRESS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "地级市，如 杭州市"},
        "town": {"type": "string", "description": "乡、镇、街道，如 龙港镇、五常街道"},
        "road": {"type": "string", "description": "道路名，如 戴家墩路"},
        "road_number": {"type": "string", "description": "门牌号，如 91号"},
        "poi": {"type": "string", "description": "地标名称"},
    },
    "required": ["city"],
    "additionalProperties": False,
}


def _typing(schema: dict[str, Any]) -> ExampleTyping:
    return ExampleTyping(schema, grounding_rules(schema))


def _annotated(data: dict[str, Any]) -> Annotated:
    pointers = [f"/{k}" for k in data]
    return Annotated(
        data,
        {p: [i, i + 1] for i, p in enumerate(pointers)},
        {p: 0.5 + i / 100 for i, p in enumerate(pointers)},
        (pointers[-1],),
    )


def test_a_value_moves_to_the_absent_field_its_examples_name() -> None:
    typing = _typing(_ADDRESS)
    found = _annotated({"city": "杭州市", "town": "曙光路", "road": "153号"})
    moved = typing.retype(found, make_validator(_ADDRESS).is_valid)
    # The road's place is free once its number has moved on.
    assert moved.data == {"city": "杭州市", "road": "曙光路", "road_number": "153号"}
    assert list(moved.data) == ["city", "road", "road_number"]  # the schema's order
    # Evidence, confidence and the unsupported mark follow the values.
    assert moved.evidence == {"/city": [0, 1], "/road": [1, 2], "/road_number": [2, 3]}
    assert moved.confidence == {"/city": 0.5, "/road": 0.51, "/road_number": 0.52}
    assert moved.unsupported == ("/road_number",)


def test_a_move_that_empties_a_field_lets_an_earlier_value_move_there() -> None:
    # The bench model's "上海市浦东新区张江镇科苑路88号": the town's place holds the road until
    # the road moves out of it.
    typing = _typing(_ADDRESS)
    found = _annotated({"city": "杭州市", "road_number": "张江镇", "town": "科苑路"})
    moved = typing.retype(found, make_validator(_ADDRESS).is_valid)
    assert moved.data == {"city": "杭州市", "town": "张江镇", "road": "科苑路"}
    assert moved.evidence == {"/city": [0, 1], "/town": [1, 2], "/road": [2, 3]}


def test_two_values_each_in_the_others_field_swap() -> None:
    typing = _typing(_ADDRESS)
    found = _annotated({"city": "杭州市", "town": "科苑路", "road": "张江镇"})
    moved = typing.retype(found, make_validator(_ADDRESS).is_valid)
    assert moved.data == {"city": "杭州市", "town": "张江镇", "road": "科苑路"}
    assert moved.evidence == {"/city": [0, 1], "/town": [2, 3], "/road": [1, 2]}
    assert moved.unsupported == ("/town",)


def test_a_value_replaces_an_empty_one_and_its_evidence() -> None:
    typing = _typing(_ADDRESS)
    found = Annotated(
        {"city": "杭州市", "road": None, "town": "曙光路"},
        {"/city": [0, 3], "/road": None, "/town": [3, 6]},
        {"/city": 0.9, "/road": 0.1, "/town": 0.8},
        (),
    )
    moved = typing.retype(found, make_validator(_ADDRESS).is_valid)
    assert moved.data == {"city": "杭州市", "road": "曙光路"}
    assert moved.evidence == {"/city": [0, 3], "/road": [3, 6]}
    assert moved.confidence == {"/city": 0.9, "/road": 0.8}


def test_a_value_stays_where_its_field_is_taken_or_undecided() -> None:
    typing = _typing(_ADDRESS)
    found = _annotated({"city": "杭州市", "town": "曙光路", "road": "戴家墩路", "poi": "黄龙饭店"})
    assert typing.retype(found, make_validator(_ADDRESS).is_valid) is found


def test_a_move_the_schema_refuses_is_not_made() -> None:
    schema = {**_ADDRESS, "required": ["city", "town"]}
    found = _annotated({"city": "杭州市", "town": "曙光路"})
    assert _typing(schema).retype(found, make_validator(schema).is_valid) is found


def test_claims_and_lists() -> None:
    schema = {
        "type": "object",
        "properties": {
            "company": {
                "type": "array",
                "items": {"type": "string"},
                "description": "公司，如 **公司、**银行",
            },
            "scene": {
                "type": "array",
                "items": {"type": "string"},
                "description": "景点，如 公园、博物馆",
            },
            "slots": _ADDRESS,
        },
    }
    typing = _typing(schema)
    assert typing.field_for(("company", 0), "西湖公园") == "scene"
    assert typing.claims(("scene", 1), "西湖公园")
    assert not typing.claims(("company", 0), "西湖公园")
    assert typing.claims(("slots", "road"), "曙光路")
    assert typing.field_for(("slots", "poi"), "曙光路") == "road"
    assert typing.field_for(("slots", "poi"), 12) is None
    assert set(field_examples(schema)) == {(), ("slots",)}


def test_no_examples_no_typing() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    assert not _typing(schema)


def _contest(claims_first: bool) -> Any:
    """A town and a floor both copied from 闻堰镇; the model surer of the later copy."""
    text = "杭州市萧山区闻堰镇三江花园"
    schema = {
        "type": "object",
        "properties": {
            "town": {"type": "string", "description": "乡、镇、街道，如 龙港镇、五常街道"},
            "floor": {"type": "string", "description": "楼层，如 5楼、3层"},
        },
    }
    raw = '{"town": "闻堰镇", "floor": "闻堰镇"}'
    town, floor = raw.encode().index("闻".encode()), raw.encode().rindex("闻".encode())
    trace = (
        TokenTrace(town, town + 9, -2.0),  # p = 0.14
        TokenTrace(floor, floor + 9, -0.1),  # p = 0.90
    )
    typing = _typing(schema)
    return _annotate(schema, text, raw, trace, claims_first=typing.claims if claims_first else None)


def _annotate(
    schema: dict[str, Any], text: str, raw: str, trace: tuple[TokenTrace, ...], **options: Any
) -> Annotated:
    """``annotate`` on the model's ``raw`` reply to ``text``, grounded as the engine does."""
    fields = schema_fields(schema)
    grounding = Grounding(SourceText(text), fields.rules)
    grounding.accept(raw.encode())
    return annotate(
        json.loads(raw),
        raw,
        source=SourceText(text),
        records=grounding.records,
        trace=trace,
        rules=fields.rules,
        validator=make_validator(schema),
        objects=fields.objects,
        **options,
    )


def test_a_value_its_examples_place_takes_its_words_first() -> None:
    # Without the examples the surer copy keeps the words (the floor); with them, the town.
    assert _contest(claims_first=False).data == {"floor": "闻堰镇"}
    found = _contest(claims_first=True)
    assert found.data == {"town": "闻堰镇"}
    assert found.evidence == {"/town": [6, 9]}


def test_a_value_its_examples_move_to_an_empty_sibling_claims_it_there() -> None:
    typing = _typing(_ADDRESS)
    data = {"city": "杭州市", "town": "", "road": "五常街道", "poi": "龙港镇"}
    # The road's 五常街道 goes to the empty town, and is the first value placed there.
    assert typing.moves(("road",), "五常街道", data)
    assert typing.claims(("road",), "五常街道", data)
    assert not typing.claims(("road",), "五常街道")  # no document: where it stands only
    assert not typing.moves(("poi",), "龙港镇", data)  # poi has no examples: never moved out
    assert not typing.moves(("road",), "五常街道", {**data, "town": "闻堰镇"})  # taken
    # Two values placed in town: the first in the document takes it.
    two = {"road": "五常街道", "road_number": "龙港镇", "town": ""}
    assert typing.moves(("road",), "五常街道", two)
    assert not typing.moves(("road_number",), "龙港镇", two)
    # A value that can't move (poi has no examples) doesn't take the place first.
    assert typing.moves(("road",), "五常街道", {"poi": "龙港镇", "road": "五常街道"})
    assert not typing.moves(("road",), "戴家墩路", data)  # it stays: its own examples


def _unsure_town(sure: bool) -> Annotated:
    """The model wrote 闻堰镇 under road, unsure of it (p = 0.14 under an abstention at 0.5)."""
    text = "杭州市萧山区闻堰镇三江花园"
    raw = '{"city": "杭州市", "town": "", "road": "闻堰镇"}'
    at = raw.encode().index("闻".encode())
    typing = _typing(_ADDRESS)
    data = json.loads(raw)
    return _annotate(
        _ADDRESS,
        text,
        raw,
        (TokenTrace(at, at + 9, -2.0),),
        abstain_below=0.5,
        claims_first=lambda p, v: typing.claims(p, v, data),
        sure=(lambda p, v: typing.moves(p, v, data)) if sure else None,
    )


def test_an_unsure_value_its_examples_move_is_kept_and_moved() -> None:
    # The model's doubt was the field: unsure of "road", it is the town the examples name.
    assert "road" not in _unsure_town(sure=False).data
    found = _unsure_town(sure=True)
    assert found.data["road"] == "闻堰镇"
    moved = _typing(_ADDRESS).retype(found, make_validator(_ADDRESS).is_valid)
    assert moved.data == {"city": "杭州市", "town": "闻堰镇"}
    assert moved.evidence["/town"] == [6, 9]


def test_schema_check_names_the_examples_extract_reads() -> None:
    from qwenjson.schema import check_schema

    schema = {
        "type": "object",
        "properties": {
            "town": {"type": "string", "description": "乡镇，如 龙港镇、五常街道"},
            "road": {"type": "string", "examples": ["戴家墩路"]},
            "district": {"type": "string", "description": "区、县，如 西湖区"},
            "poi": {"type": "string", "description": "兴趣点：小区、大厦等地标名称"},
            "code": {"type": "string", "pattern": "^[0-9]+$", "description": "e.g. 310000"},
            "tags": {"type": "array", "items": {"type": "string", "description": "e.g. urgent"}},
        },
    }
    notes = {(u.pointer, u.keyword): u.note for u in check_schema(schema)}
    assert notes["/properties/town", "description"] == (
        "extract: reads its examples (龙港镇, 五常街道): a value like one goes to this field"
    )
    assert "(戴家墩路)" in notes["/properties/road", "examples"]
    assert notes["/properties/district", "description"] == (
        "extract: reads its examples (西湖区) and the kinds it lists (区, 县): a value like one "
        "goes to this field"
    )
    assert notes["/properties/poi", "description"] == (
        "extract: reads the kinds it lists (小区, 大厦): a value like one goes to this field"
    )
    # A pattern keeps its own rule (not grounded); a lone list has no sibling list to tell from.
    assert notes["/properties/code", "description"] == ""
    assert notes["/properties/tags/items", "description"] == ""
    # A list's examples are its own, else its items': the ones read are named.
    lists = {
        "type": "object",
        "properties": {
            "org": {
                "type": "array",
                "description": "如 新华银行",
                "items": {"type": "string", "description": "如 浙江大学"},
            },
            "scene": {"type": "array", "items": {"type": "string", "description": "如 西湖公园"}},
        },
    }
    notes = {(u.pointer, u.keyword): u.note for u in check_schema(lists)}
    assert "(新华银行)" in notes["/properties/org", "description"]
    assert notes["/properties/org/items", "description"] == ""
    assert "(西湖公园)" in notes["/properties/scene/items", "description"]


@pytest.mark.parametrize(
    ("pointer", "pattern"),
    [
        ("", ()),
        ("/properties/a/items/properties/b~1c", ("a", None, "b/c")),
        ("/$defs/A/properties/b", None),
        ("/properties/a/anyOf/0", None),
    ],
)
def test_pattern_of_pointer(pointer: str, pattern: tuple[str | None, ...] | None) -> None:
    assert pattern_of_pointer(pointer) == pattern


@pytest.mark.parametrize(
    ("description", "examples"),
    [
        # 如 of 如果 "if", 如有 "if any", 如下 "as follows", 如需: no examples begin there.
        ("省份，如果是直辖市则填市名，如 北京市、上海市", ("北京市", "上海市")),
        ("镇名（如有），如 龙港镇、五常街道", ("龙港镇", "五常街道")),
        ("地址格式如下：省市区", ()),
        ("如需填写，请写完整街道，例如 五常街道", ("五常街道",)),
        ("Weather, e.g. cold, warm, etc.", ("cold", "warm")),
        ("e.g.: cold or warm", ("cold", "warm")),
    ],
)
def test_examples_begin_only_where_a_word_introduces_them(
    description: str, examples: tuple[str, ...]
) -> None:
    assert examples_of({"description": description}) == examples


def test_draft4_examples_of_any_kind_are_no_examples() -> None:
    # Draft 4 has no "examples" keyword: any value passes its metaschema.
    assert examples_of({"examples": None}) == ()
    assert examples_of({"examples": "龙港镇"}) == ()


def test_a_value_under_a_field_with_no_examples_stays() -> None:
    # A full address ends in 路 too: it is no road.
    schema = {
        "type": "object",
        "properties": {
            "full_address": {"type": "string"},
            "road": {"type": "string", "description": "如 文三路"},
            "town": {"type": "string", "description": "如 龙港镇"},
        },
    }
    found = _annotated({"full_address": "浙江省杭州市文一西路"})
    assert _typing(schema).retype(found, make_validator(schema).is_valid) is found


def test_an_item_of_a_list_at_the_root_claims_nothing() -> None:
    schema = {
        "type": ["object", "array"],
        "items": {"type": "string"},
        "properties": {
            "town": {"type": "string", "description": "如 龙港镇"},
            "road": {"type": "string", "description": "如 文三路"},
        },
    }
    assert not _typing(schema).claims((0,), "五常镇")


_BUILDINGS = {
    **_ADDRESS,
    "properties": {
        **_ADDRESS["properties"],  # type: ignore[dict-item]
        "province": {"type": "string", "description": "省级行政区，如 浙江省、内蒙古"},
        "building": {"type": "string", "description": "楼栋号，如 9号楼、3幢"},
        "room": {"type": "string", "description": "房间号，如 202室"},
        "estate": {"type": "string", "description": "兴趣点：小区、大厦等地标名称"},
    },
}


@pytest.mark.parametrize(
    ("field", "value", "part"),
    [
        # Fields' names run together: each field keeps its own piece.
        ("road", "曙光路153号", "曙光路"),
        ("road_number", "曙光路153号", "153号"),
        ("building", "59号13幢", "13幢"),
        ("room", "启潮路59号13幢884室", "884室"),
        ("city", "浙江省杭州市", "杭州市"),
        # No piece of it is the field's, or it is one piece: whole.
        ("town", "曙光路153号", None),
        ("building", "9号楼", None),
        ("road", "戴家墩路", None),
        # Pieces of two characters or more, and no kind alone: 古 (of 内蒙古) is no province,
        # 小区 no estate (it goes with the piece after it); a value no pieces make up stays
        # whole.
        ("road", "古墩路丹枫新村", None),
        ("road", "古墩路153号", "古墩路"),
        ("building", "小区211幢1118室", "小区211幢"),
        ("estate", "阳光城小区211幢", "阳光城小区"),
        ("road", "曙光路153号黄龙饭店", None),
        # Prose is not read into pieces.
        ("road", "曙光路153号" * 8, None),
    ],
)
def test_own_part_of_a_value_that_runs_fields_together(
    field: str, value: str, part: str | None
) -> None:
    cut = _typing(_BUILDINGS).own_part((field,), value)
    assert (value[cut[0] : cut[1]] if cut else None) == part


def test_own_part_leaves_fields_without_examples_and_list_items_alone() -> None:
    typing = _typing(_BUILDINGS)
    assert typing.own_part(("poi",), "曙光路153号") is None  # poi has no examples
    assert typing.own_part(("nowhere", "road"), "曙光路153号") is None


def _run_together(cut: bool) -> Annotated:
    """The road and its number both copied as 曙光路153号, the road's copy the surer one."""
    text = "杭州市西湖区曙光路153号黄龙饭店"
    raw = '{"city": "杭州市", "road": "曙光路153号", "road_number": "曙光路153号"}'
    data = raw.encode()
    road, number = data.index("曙".encode()), data.rindex("曙".encode())
    trace = (
        TokenTrace(road, road + 12, -0.1),  # p = 0.90
        TokenTrace(number, number + 12, -2.0),  # p = 0.14
    )
    typing = _typing(_ADDRESS)
    return _annotate(
        _ADDRESS,
        text,
        raw,
        trace,
        abstain_below=0.5,
        claims_first=typing.claims,
        cut=typing.own_part if cut else None,
    )


def test_a_value_cut_to_its_own_piece_leaves_the_others_words_free() -> None:
    # Uncut, the surer road keeps all the words and the number has no source.
    assert _run_together(cut=False).data == {"city": "杭州市", "road": "曙光路153号"}
    found = _run_together(cut=True)
    # Cut, each keeps its piece; the number, unsure as written whole, is not abstained from:
    # the examples name its piece's field, the model's doubt was the rest of the span.
    assert found.data == {"city": "杭州市", "road": "曙光路", "road_number": "153号"}
    text = "杭州市西湖区曙光路153号黄龙饭店"
    for pointer, value in (("/road", "曙光路"), ("/road_number", "153号")):
        span = found.evidence[pointer]
        assert span is not None and text[span[0] : span[1]] == value
    assert found.confidence["/road_number"] == 0.1353  # the whole span's, a lower bound


def test_own_part_reads_folded_endings() -> None:
    schema = {
        "type": "object",
        "properties": {
            "street": {"type": "string", "examples": ["Fuß"]},
            "number": {"type": "string", "examples": ["12"]},
        },
    }
    typing = _typing(schema)
    assert typing.own_part(("street",), "12FUSS") == (2, 6)  # folded, ß is ss
    assert typing.own_part(("number",), "12Fuß") == (0, 2)
