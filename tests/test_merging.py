"""The merger's shortcuts against the slow obvious method: "is this item one the list holds?"
asked of an index (normalised forms, spans by start) gives what asking every held item gives,
and a just-appended item's evidence is what a scan of the whole table finds."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qwenjson.merging import Found, Merger, PathT, _Append, _Held, _Undo, _within
from qwenjson.pointer import to_pointer, value_at
from qwenjson.validate import make_validator, validation_errors

PEOPLE = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "role": {"type": "string"}},
                "required": ["name"],
            },
        },
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 6},
    },
}


class EveryItem(Merger):
    """The reference: ``_same`` with every item the list holds, and with every item of the
    piece taken before."""

    def _holds(self, path: PathT, found: Found, item: PathT) -> bool:
        held = value_at(self.data, path)
        return any(self._same(found, item, (*path, i)) for i in range(len(held)))

    def _repeats(self, found: Found, item: PathT, taken: list[PathT], mine: _Held) -> bool:
        return any(self._same(found, item, other, mine=True) for other in taken)


NAMES = ["Ann", "ann", "Ann Lee", "Bob", "BOB", "Cy", "Dan", "Ｅｖｅ"]


@st.composite
def pieces(draw: Any) -> list[Found]:
    """Pieces of made-up items whose spans overlap often, with equal names and roles."""
    found = []
    for n in range(draw(st.integers(1, 6))):
        data: dict[str, Any] = {"items": [], "tags": []}
        evidence: dict[str, list[int] | None] = {}
        base = n * 40  # each piece further on, overlapping the one before
        for i in range(draw(st.integers(0, 6))):
            item = {"name": draw(st.sampled_from(NAMES))}
            start = base + draw(st.integers(0, 60))
            evidence[f"/items/{i}/name"] = draw(
                st.sampled_from([None, [start, start + draw(st.integers(0, 8))]])
            )
            if draw(st.booleans()):
                item["role"] = draw(st.sampled_from(["cook", "chef", ""]))
                role = base + draw(st.integers(0, 60))
                evidence[f"/items/{i}/role"] = [role, role + 4]
            data["items"].append(item)
        for i in range(draw(st.integers(0, 4))):
            data["tags"].append(draw(st.sampled_from(NAMES)))
            tag = base + draw(st.integers(0, 60))
            evidence[f"/tags/{i}"] = [tag, tag + draw(st.integers(1, 5))]
        confidence = {p: 0.5 for p in evidence}
        found.append(Found(data, evidence, confidence))
    return found


@settings(max_examples=300, deadline=None)
@given(pieces())
def test_the_indexed_merge_is_the_merge_with_every_item(found: list[Found]) -> None:
    fast, slow = Merger(make_validator(PEOPLE)), EveryItem(make_validator(PEOPLE))
    for piece in found:
        appended = fast.add(piece)
        assert appended == slow.add(piece)
        for path in appended:
            prefix = to_pointer(path)
            scanned = (
                value_at(fast.data, path),
                _within(fast.evidence, prefix, ""),
                _within(fast.confidence, prefix, ""),
            )
            assert fast.subtree(path) == scanned
    assert (fast.data, fast.evidence, fast.skipped) == (slow.data, slow.evidence, slow.skipped)


@st.composite
def with_members(draw: Any) -> list[Found]:
    """``pieces`` with a title and an object member some of them give (sources or none), so
    that members are set and replaced as well as items appended."""
    found = []
    for n, piece in enumerate(draw(pieces())):
        data, evidence = dict(piece.data), dict(piece.evidence)
        confidence, unsupported = dict(piece.confidence), list(piece.unsupported)
        if draw(st.booleans()):
            data["title"] = draw(st.sampled_from(["T", "Title", ""]))
            evidence["/title"] = draw(st.sampled_from([None, [n * 40, n * 40 + 5]]))
            confidence["/title"] = draw(st.sampled_from([0.2, 0.6, 0.9]))
            if evidence["/title"] is None and draw(st.booleans()):
                unsupported.append("/title")
        if draw(st.booleans()):
            data["meta"] = {"a": draw(st.sampled_from(NAMES))}
            evidence["/meta/a"] = [n * 40 + 1, n * 40 + 4]
            confidence["/meta/a"] = draw(st.sampled_from([0.3, 0.8]))
        found.append(Found(data, evidence, confidence, tuple(unsupported)))
    return found


class Snapshots(Merger):
    """The reference for a piece whose additions break the schema: the whole document checked
    after every change, and a deep copy of everything taken back instead of ``_undo``."""

    def add(self, found: Found) -> list[PathT]:
        self._fresh = {}
        if not self.started:
            return self._first(found)
        changes = list(self._changes(self.data, found, (), ()))
        saved = copy.deepcopy((self.data, self.evidence, self.confidence, self.unsupported))
        placed = [self._apply(change, found, []) for change in changes]
        if not validation_errors(self.data, self.validator):
            return [p for c, p in zip(changes, placed, strict=True) if isinstance(c, _Append)]
        self.data, self.evidence, self.confidence, self.unsupported = saved
        self._held = {}
        appended = []
        for change in changes:
            before = copy.deepcopy((self.data, self.evidence, self.confidence, self.unsupported))
            path = self._apply(change, found, [])
            if validation_errors(self.data, self.validator):
                self.data, self.evidence, self.confidence, self.unsupported = before
                self._held = {}
                self.skipped += 1
            elif isinstance(change, _Append):
                appended.append(path)
        return appended


def state(merger: Merger) -> str:
    """Everything a merge leaves, the document's member order included."""
    tables = sorted(merger.evidence.items()), sorted(merger.confidence.items())
    return json.dumps([merger.data, *tables, sorted(merger.unsupported), merger.skipped])


@settings(max_examples=300, deadline=None)
@given(with_members(), st.booleans())
def test_the_merge_is_the_one_that_validates_everything_and_copies(
    found: list[Found], confident: bool
) -> None:
    schema = copy.deepcopy(PEOPLE)
    schema["properties"]["title"] = {"type": "string", "maxLength": 4}
    schema["properties"]["meta"] = {"type": "object", "properties": {"a": {"enum": NAMES[:4]}}}
    assume(not validation_errors(found[0].data, make_validator(schema)))  # as a piece's is
    fast = Merger(make_validator(schema), confident=confident)
    slow = Snapshots(make_validator(schema), confident=confident)
    for piece in found:
        assert fast.add(piece) == slow.add(piece)
        assert state(fast) == state(slow)


@settings(max_examples=200, deadline=None)
@given(with_members(), st.booleans())
def test_undo_leaves_the_merge_as_it_was(found: list[Found], confident: bool) -> None:
    merger = Merger(make_validator(PEOPLE), confident=confident)
    merger.add(found[0])
    for piece in found[1:]:
        before = state(merger)
        journal: list[_Undo] = []
        for change in list(merger._changes(merger.data, piece, (), ())):
            merger._apply(change, piece, journal)
        merger._undo(journal)
        assert state(merger) == before
        merger.add(piece)


def test_two_people_who_share_a_role_stay_two_whichever_field_comes_first() -> None:
    # With `role` before `name` in the schema, the shared role alone decided: Bob was lost.
    for order in (("role", "name"), ("name", "role")):
        item = {"type": "object", "properties": {k: {"type": "string"} for k in order}}
        merger = Merger(make_validator({"type": "array", "items": item}))
        spans = {"role": [16, 25], "name": [0, 3]}, {"role": [16, 25], "name": [8, 11]}
        people = [{k: v for k, v in zip(order, (p[k] for k in order), strict=True)} for p in (
            {"role": "engineers", "name": "Ann"}, {"role": "engineers", "name": "Bob"}
        )]  # fmt: skip
        evidence = {f"/{i}/{k}": spans[i][k] for i in range(2) for k in order}
        merger.add(Found(people, evidence, dict.fromkeys(evidence, 0.9)))
        assert [p["name"] for p in merger.data] == ["Ann", "Bob"], order
        # The same two again (the next piece's overlap) add nothing.
        assert merger.add(Found(people, evidence, dict.fromkeys(evidence, 0.9))) == []


def test_members_of_an_optional_object_come_out_in_the_schema_order() -> None:
    # Under anyOf [object, null] (Pydantic's Optional) the order was the pieces': street, zip,
    # city.
    addr = {
        "type": "object",
        "properties": {k: {"type": "string"} for k in ("street", "city", "zip")},
    }
    schema = {"type": "object", "properties": {"addr": {"anyOf": [addr, {"type": "null"}]}}}
    merger = Merger(make_validator(schema), confident=True)
    first = {"/addr/street": [0, 7], "/addr/zip": [20, 23]}
    merger.add(
        Found({"addr": {"street": "Main St", "zip": "123"}}, first, dict.fromkeys(first, 0.9))
    )
    merger.add(Found({"addr": {"city": "Oslo"}}, {"/addr/city": [300, 304]}, {"/addr/city": 0.9}))
    assert list(merger.data["addr"]) == ["street", "city", "zip"]


def test_one_person_seen_by_two_pieces_is_one_even_with_a_role_found_elsewhere() -> None:
    # The first piece can't see Ann's own role and takes one from Bob's mention; the next sees
    # "Ann Lee" and her own "engineer". Every shared leaf having to overlap made her two.
    item = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "role": {"type": "string"}},
    }
    merger = Merger(make_validator({"type": "array", "items": item}))
    first = {"/0/name": [200, 203], "/0/role": [5, 13]}
    merger.add(Found([{"name": "Ann", "role": "engineer"}], first, dict.fromkeys(first, 0.9)))
    second = {"/0/name": [200, 207], "/0/role": [209, 217]}
    added = merger.add(Found([{"name": "Ann Lee", "role": "engineer"}], second, {}))
    assert added == [] and len(merger.data) == 1
    # A role that says something else, from elsewhere: two different people after all.
    third = {"/0/name": [200, 207], "/0/role": [300, 307]}
    merger.add(Found([{"name": "Ann Lee", "role": "manager"}], third, {}))
    assert len(merger.data) == 2


def test_a_leaf_inside_a_nested_list_does_not_tell_two_items_apart() -> None:
    # The same "Ann Lee" from two pieces with her skills in another order: by index, "Go" and
    # "Python" differed, and she was listed twice.
    skills = {"type": "array", "items": {"type": "string"}}
    item = {"type": "object", "properties": {"name": {"type": "string"}, "skills": skills}}
    merger = Merger(make_validator({"type": "array", "items": item}))
    first = {"/0/name": [0, 7], "/0/skills/0": [20, 26], "/0/skills/1": [30, 32]}
    merger.add(Found([{"name": "Ann Lee", "skills": ["Python", "Go"]}], first, {}))
    second = {"/0/name": [0, 7], "/0/skills/0": [30, 32], "/0/skills/1": [20, 26]}
    assert merger.add(Found([{"name": "Ann Lee", "skills": ["Go", "Python"]}], second, {})) == []
    assert len(merger.data) == 1


def test_rows_and_items_told_apart_by_a_nested_list_stay_apart() -> None:
    # Items written as rows ([name, role]) or holding their names in a list: sharing the role
    # merged them when every leaf inside a list was taken for an index that says nothing.
    row = {"type": "array", "items": {"type": "string"}}
    merger = Merger(make_validator({"type": "array", "items": row}))
    spans = {"/0/0": [0, 3], "/0/1": [20, 29], "/1/0": [8, 11], "/1/1": [20, 29]}
    merger.add(Found([["Ann", "engineers"], ["Bob", "engineers"]], spans, {}))
    assert merger.data == [["Ann", "engineers"], ["Bob", "engineers"]]
    names = {"type": "array", "items": {"type": "string"}}
    item = {"type": "object", "properties": {"names": names, "role": {"type": "string"}}}
    merger = Merger(make_validator({"type": "array", "items": item}))
    spans = {"/0/names/0": [0, 3], "/0/role": [20, 29], "/1/names/0": [8, 11], "/1/role": [20, 29]}
    people = [{"names": ["Ann"], "role": "engineers"}, {"names": ["Bob"], "role": "engineers"}]
    merger.add(Found(people, spans, {}))
    assert len(merger.data) == 2


def test_items_told_apart_inside_a_nested_list_of_objects_stay_apart() -> None:
    person = {"type": "object", "properties": {"name": {"type": "string"}}}
    people = {"type": "array", "items": person}
    item = {"type": "object", "properties": {"people": people, "role": {"type": "string"}}}
    merger = Merger(make_validator({"type": "array", "items": item}))
    spans = {
        "/0/people/0/name": [0, 3],
        "/0/role": [20, 29],
        "/1/people/0/name": [8, 11],
        "/1/role": [20, 29],
    }
    data = [
        {"people": [{"name": "Ann"}], "role": "engineers"},
        {"people": [{"name": "Bob"}], "role": "engineers"},
    ]
    merger.add(Found(data, spans, {}))
    assert len(merger.data) == 2
