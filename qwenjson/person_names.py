"""Person names without the title before them or the honorific after them.

A résumé says ``袁先生于一九九零年…`` ("Mr Yuan graduated…") and the 0.5B copies
``"name": "袁先生"``; a news story says ``Rep. Richard Gephardt`` and the people list gets the
title with the name. The text's words are right, the value isn't: 先生 ("Mr"), 女士 and 小姐
follow a Chinese name, Mr., Dr., Sen., President… precede an English one, and neither is part
of it. So a grounded text value of a field that holds person names (``person_fields``: its
name or description says so) loses a title it begins with or an honorific it ends in, when a
name is left, and its evidence with it. Measured with ``scripts/quality.py --no-anchor`` (the
bench model, 2 threads) on the sources with such fields, before -> after: résumés 40.3 ->
44.9% (five names such as 袁先生 -> 袁, none worse), news NER 29.5 -> 30.1% (Rep. Richard
Gephardt and Sen. Thomas Daschle, then typed as people), Chinese NER 14.4% and citations
84.5% unchanged.

The cut itself, the evidence and the confidence are ``qwenjson.value_cuts``'.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from qwenjson.evidence import Annotated
from qwenjson.field_examples import schema_objects
from qwenjson.fields import FieldRule, Path, Pattern
from qwenjson.pointer import follow_local_refs
from qwenjson.source import SourceText
from qwenjson.value_cuts import cut_values

__all__ = ["cut_titles", "person_fields", "with_entity_lists"]

# Field names that hold persons, and words of a description or title that say a field does.
_PERSON_NAMES = frozenset(
    {"people", "person", "persons", "author", "authors", "speaker", "speakers", "人名", "姓名"}
)
# A description that begins so says what the field holds ("People mentioned; …", "Author
# names in order"), one that mentions people on the way doesn't ("number of people for the
# booking"); in Chinese, 人名 and 姓名 are "person's name" wherever they stand.
_PERSON_WORDS = re.compile(
    r"^\s*(?:the\s+)?(?:people|persons?|authors?|(?:full |first |last )?names? of (?:the )?"
    r"(?:people|persons?|authors?)|person'?s? (?:full )?names?|full names?)\b"
    r"|人名|姓名",
    re.IGNORECASE,
)
# Chinese honorifics that follow a name (袁先生, 王女士); a name is left before them.
_AFTER = ("先生", "女士", "小姐")
# English titles before a name: the word, an optional period, blanks, then a capital.
_BEFORE = re.compile(
    r"(?:Mr|Mrs|Ms|Mx|Dr|Prof|Professor|Sir|Dame|Rev|Reverend|President|Vice President|"
    r"Sen|Senator|Rep|Representative|Gov|Governor|Gen|General|Col|Colonel|Capt|Captain|Lt|"
    r"Sgt|Judge|Justice|Minister|Prime Minister|Chancellor|Mayor|King|Queen|Prince|Princess|"
    r"Pope)\.?\s+(?=[A-Z])"
)


def person_fields(
    schema: Mapping[str, Any] | bool, rules: Mapping[Pattern, FieldRule]
) -> frozenset[Pattern]:
    """The grounded text fields (and list items) of ``schema`` that hold person names: the
    field's name is one (``people``, ``authors``…) or its description or title says so
    ("People mentioned", "本人姓名", "人名")."""
    root = schema if isinstance(schema, Mapping) else {}
    found: set[Pattern] = set()
    for pattern, node in _members(root):
        for target in (pattern, (*pattern, None)):
            rule = rules.get(target)
            if (
                rule is not None
                and rule.grounded
                and rule.kind == "text"
                and _says_person(str(pattern[-1]), node)
            ):
                found.add(target)
    return frozenset(found)


def with_entity_lists(persons: frozenset[Pattern], lists: Sequence[str]) -> frozenset[Pattern]:
    """``persons`` (``person_fields``), and the items of all the root's entity ``lists``
    (``qwenjson.labeling.entity_lists``) when one of them holds persons: a title marks a person
    wherever the model put it (``Rep. Richard Gephardt`` under organizations), and the typing
    after the cut sees the name."""
    entity_items = {(name, None) for name in lists}
    return persons | entity_items if persons & entity_items else persons


def _says_person(name: str, node: Mapping[str, Any]) -> bool:
    if name.lower() in _PERSON_NAMES:
        return True
    said = [node.get(k) for k in ("description", "title")]
    items = node.get("items")
    if isinstance(items, Mapping):
        said += [items.get(k) for k in ("description", "title")]
    return any(isinstance(s, str) and _PERSON_WORDS.search(s) for s in said)


def _members(root: Mapping[str, Any]) -> Iterator[tuple[Pattern, Mapping[str, Any]]]:
    """Each object member of ``root`` by pattern, with its schema (within the limits on depth
    and visits of ``field_examples.schema_objects``: a recursive schema ends)."""
    for pattern, node in schema_objects(root):
        for name, sub in node["properties"].items():
            sub = follow_local_refs(root, sub)
            if isinstance(sub, Mapping):
                yield (*pattern, name), sub


def cut_titles(
    found: Annotated,
    fields: frozenset[Pattern],
    source: SourceText,
    is_valid: Callable[[Any], bool],
) -> Annotated:
    """``found`` with each value of ``fields`` that begins with a title or ends in an honorific
    cut to the name, its evidence with it; unchanged when none is, or the document would then
    not validate."""
    if not fields:
        return found

    def cutter(_: Path, value: str, __: tuple[int, int]) -> tuple[int, int] | None:
        return _name_in(value)

    return cut_values(found, cutter, source, is_valid, where=fields)


def _name_in(value: str) -> tuple[int, int] | None:
    """Where the name is in ``value`` (``(lo, hi)``), or None when there is nothing to cut."""
    lo, hi = 0, len(value)
    title = _BEFORE.match(value)
    if title is not None:
        lo = title.end()
    for honorific in _AFTER:
        if value.endswith(honorific) and hi - len(honorific) > lo:
            hi -= len(honorific)
            break
    return (lo, hi) if (lo, hi) != (0, len(value)) and value[lo:hi].strip() else None
