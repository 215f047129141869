"""Which field a value belongs to, told by the schema's own examples of each field.

The 0.5B types the spans it copies poorly: given a Chinese address it writes the pieces under
the fields in the order the prompt lists them (``"town": "曙光路153号"``, ``"floor": "闻堰镇"``),
and the probabilities that settle a contest (``qwenjson.evidence``) favour the later copy. The
schema's author often says what each field holds with examples ("乡、镇、街道，如 龙港镇、五常街道";
"e.g. 'cold', 'warm'"), and those examples tell many values apart without the model:

* a value equal to an example of one field (case and blanks aside) is that field's;
* a Chinese name ends in the word for its kind (head-final: 浙江**省**, 西湖**区**, 曙光**路**,
  153**号**, 会计**专业**, 新华**银行**), so a value that ends in the same Chinese characters as an
  example of one field, longer than it shares with any other field's examples, is that field's;
* the kinds a Chinese description enumerates before its examples ("**区、县、县级市**，如 西湖区")
  are such endings said outright: a value that ends in all of one matches it as far (财务 is no
  职务), and of two fields a value ends like equally, the one with an example or kind that is
  all of that ending wins (海曙区: district's 区, not development_zone's 仙葫经济开发区).

A value that matches no field, or two fields equally well (杭州**市** and 义乌**市** are examples of
``city`` and ``district``), is left to the model. Examples come from the standard ``examples``
keyword (strings) and from a description's words after 如 (not 如果, 如有, 如下…), 例如, 比如,
"e.g." or "such as" at its start or after a mark, split at 、，,;/ and "or".

Used four ways: a member that runs several fields' names together (``曙光路153号`` under
``road``) is cut to its own field's piece before the fields claim words (``own_part``); a
value the examples place takes its words first where two fields copied them (the contest
in ``qwenjson.evidence``; so does one about to move, and that one is not abstained from as
unsure: the model's doubt was the field, ``ExampleTyping.moves``); it moves from a field whose
examples it doesn't match (never from one with none) to the one its examples name when that one
is absent or empty, or swaps with a value there that belongs where it stands
(``ExampleTyping.retype``); an entity-list item goes to the list they name, unscored
(``qwenjson.labeling``).

Measured with ``scripts/quality.py --no-anchor`` (the bench model, 2 threads), before ->
after: Chinese addresses 12.5 -> 22.4%, Chinese NER 12.7 -> 14.4%, résumés 36.4 -> 40.1%,
overall 37.5 -> 39.7%; the English sources unchanged (their examples only ever equal a value:
"here", "cold"); 19 documents better, 5 worse (résumés, by 0.01 to 0.02: a post written with
its company, ending like 高级会计师, moved to ``titles``). Moving again into a place a move
emptied: addresses 22.4 -> 23.6% (overall 39.7 -> 39.9%; one document changed, none worse).
Not moving out of fields with no examples, and the stricter 如: the same 140 documents. The
enumerated kinds (and the examples ending at 等 before a mark: "村等，尽量完整" gave 尽量完整):
addresses 23.6 -> 27.5%, résumés 40.1 -> 40.3%, CLUENER 14.4% still (6 documents better, one
worse by 0.03). Kinds matched by a shared last character, as examples are: résumés 39.6% (a
résumé's 会计财务 went to titles for 职务's 务); CLUENER's "如 **公司、**集团、**银行" read as
kinds too: CLUENER 13.2% (外资行 no longer ends like 银行), so those stay examples. A value
about to move claiming its words first and kept when unsure (``ExampleTyping.moves``): voice
commands 28.3 -> 30.0%, addresses 27.5 -> 28.3%, citations, CLUENER and résumés the same (3
documents changed, none worse); the first placed there among the values that can move, not
among all (a city, which has no examples, held the place of object_select's "current"):
voice commands 31.2%. Kept when unsure also where the examples place it where it stands:
addresses 27.3% (a community's 兰江街道三凤桥村 kept whole, the town's 三凤桥村 copy lost its
words). Members cut to their own piece (``own_part``, ``scripts/quality.py --no-anchor --source
zh-address --source zh-resume --source snips``): addresses 28.3 -> 29.6% (``road``
曙光路153号 -> 曙光路, ``building`` 59号13幢 -> 13幢; no document worse), résumés 50.8% and
voice commands 31.2% the same documents; and a cut member not abstained from as unsure
(``qwenjson.evidence``): addresses 30.3% (``room`` 1118室 of 211幢1118室, one better).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from qwenjson.evidence import Annotated
from qwenjson.fields import FieldRule, Path, Pattern, grounding_rules, pattern_of
from qwenjson.pointer import (
    follow_local_refs,
    leaf_pointers,
    to_pointer,
    unescape_token,
    value_at,
)

__all__ = [
    "KIND",
    "ExampleTyping",
    "decisive_field",
    "examples_of",
    "examples_read",
    "field_examples",
    "kind_score",
    "kinds_of",
    "pattern_of_pointer",
    "schema_objects",
]

# Words that introduce examples in a description, at its start or after a blank or a mark
# (not the 如 of 如果 "if", 如下 "as follows", 如有 "if any", 如需 "if needed"…), and what
# separates them.
_INTRODUCED = re.compile(
    r"(?:^|(?<=[\s，,、：:；;（(]))"
    r"(?:例如|比如|如(?![果何下需有若实同此今是意])|e\.g\.|for example|such as)[\s,，:：]*(.+)",
    re.IGNORECASE,
)
_SEPARATORS = re.compile(r"\s*(?:[、，,;；/]|\bor\b|或)\s*")
_ETC = re.compile(r"(?:等等|等)$")  # the last example's: 村等 is 村
_NOT_EXAMPLES = {"etc", "etc.", "等等"}
_QUOTES = " \t\n'\"“”‘’「」《》()（）*.。…:："
# Past this a description's tail is prose, not a list of examples.
_MAX_EXAMPLE_CHARS = 24
# Kinds are enumerated in a clause of their own, separated so; a kind is a short word (the
# longest the dev set's Chinese schemas enumerate: 工业园区, 政府部门), a longer one is prose
# (所属的具体单位名称, 包括小说人物).
_CLAUSES = re.compile(r"[，,。；;：:（()）\s]+")
_KIND_SEPARATORS = re.compile(r"[、或和及/]")
_MAX_KIND_CHARS = 4
# Objects this deep are not looked into (the rules stop deeper too: ``fields``); a schema's
# nodes visited at most this many times (a recursive one would go on).
_MAX_DEPTH = 12
_MAX_VISITS = 4_000
# A value this long is prose, not a run of names to read into pieces (the longest the dev
# set's address fields hold is 24 characters: 惠风西路866号城南商务大厦B座1815 is 20).
_MAX_RUN_CHARS = 48
# An equal value outranks any shared ending.
_EQUAL = 1_000
# Marks an example that is a kind, the ending of a name, not a name: "*区". (A schema's own
# ``examples`` string that begins so is read as a kind too: "*公司" is the authors' wildcard.)
KIND = "*"


def examples_of(node: Mapping[str, Any]) -> tuple[str, ...]:
    """The example values a schema node gives: its ``examples`` strings, then the words after
    如 / e.g. / such as in its description (the first such phrase), then the kinds it
    enumerates (``kinds_of``, marked ``KIND``)."""
    given = node.get("examples")  # a list in draft 6 and later; anything in draft 4
    found = (
        [e.strip() for e in given if isinstance(e, str) and e.strip()]
        if isinstance(given, list)
        else []
    )
    description = node.get("description")
    if isinstance(description, str):
        for m in _INTRODUCED.finditer(description):
            # Ends at a sentence's end, or at 等 before a mark: "村等，尽量完整" says no more.
            phrase = re.split(r"[。；;）)]|\.\s|等(?=[，,])", m.group(1))[0]
            parts = [p.strip(_QUOTES) for p in _SEPARATORS.split(phrase)]
            if parts:
                parts[-1] = _ETC.sub("", parts[-1]).strip(_QUOTES)
            said = [
                p
                for p in parts
                if p and len(p) <= _MAX_EXAMPLE_CHARS and p.lower() not in _NOT_EXAMPLES
            ]
            if said:  # the first phrase that gives any
                found.extend(said)
                break
        found.extend(kinds_of(description))
    return tuple(dict.fromkeys(found))


def kinds_of(description: str) -> tuple[str, ...]:
    """The kinds a Chinese description enumerates before any examples: "区、县、县级市，如 西湖区"
    gives 区, 县, 县级市; "学历或学位" 学历, 学位; "（公司、学校、政府部门、协会等）" the four. A
    value of the field ends in one of them (head-final names). Each is marked as a kind
    (``*区``): a value matches it only by ending in all of it (财务 is no 职务)."""
    introduced = _INTRODUCED.search(description)
    head = description[: introduced.start()] if introduced else description
    kinds: list[str] = []
    for clause in _CLAUSES.split(head):
        parts = _KIND_SEPARATORS.split(clause)
        if len(parts) < 2:  # one word names the field ("楼层", "人名"), it lists no kinds
            continue
        parts[-1] = parts[-1].split("等")[0]  # 公司等地标名称: 公司
        kinds.extend(KIND + p for p in parts if 0 < len(p) <= _MAX_KIND_CHARS and all(map(_cjk, p)))
    return tuple(kinds)


def _cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def _folded(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def kind_score(value: str, examples: Sequence[str]) -> int:
    """How surely ``value`` is of the kind ``examples`` show: ``_EQUAL`` when it is one of
    them, else the most Chinese characters it ends in that one of them ends in, or the length
    of a kind (``*区``) it ends in (0: none)."""
    return _rank(value, examples)[0]


def decisive_field(value: str, choices: Mapping[str, Sequence[str]]) -> str | None:
    """The one field of ``choices`` (name -> examples) whose examples ``value`` matches best,
    or None when it matches none, or two equally well. Of two fields whose examples share as
    many of its last characters, the one with an example that is all of them (a kind: 海曙区
    ends in district's 区, not in development_zone's 开发区, though it ends like both) is better."""
    scores = {name: _rank(value, examples) for name, examples in choices.items()}
    top = max(scores.values(), default=(0, False))
    winners = [name for name, score in scores.items() if score == top]
    return winners[0] if top[0] > 0 and len(winners) == 1 else None


def _rank(value: str, examples: Sequence[str]) -> tuple[int, bool]:
    """``kind_score``, and whether an example that long is all of the value's ending."""
    folded = _folded(value)
    best = (0, False)
    for example in examples:
        if example.startswith(KIND):
            kind = _folded(example[len(KIND) :])
            if kind and folded.endswith(kind):
                best = max(best, (len(kind), True))
            continue
        other = _folded(example)
        if folded == other:
            return _EQUAL, True
        n = 0
        while n < min(len(folded), len(other)) and folded[-1 - n] == other[-1 - n]:
            if not _cjk(folded[-1 - n]):
                break
            n += 1
        best = max(best, (n, n > 0 and n == len(other)))
    return best


def field_examples(schema: Mapping[str, Any] | bool) -> dict[Pattern, dict[str, tuple[str, ...]]]:
    """For each object of ``schema`` (a path pattern, list indices as None), its members'
    examples (``examples_of``; a list member's from the list node, else its items), for the
    objects where some member has any."""
    root = schema if isinstance(schema, Mapping) else {}
    found: dict[Pattern, dict[str, tuple[str, ...]]] = {}
    for pattern, node in schema_objects(root):
        members = _member_examples(root, node)
        if members:
            found.setdefault(pattern, members)
    return found


def _member_examples(
    root: Mapping[str, Any], node: Mapping[str, Any]
) -> dict[str, tuple[str, ...]]:
    """The examples of the members of the object ``node`` that have any, in schema order."""
    members: dict[str, tuple[str, ...]] = {}
    for name, sub in node["properties"].items():
        sub = follow_local_refs(root, sub)
        if not isinstance(sub, Mapping):
            continue
        examples = examples_of(sub)
        items = follow_local_refs(root, sub.get("items"))
        if not examples and isinstance(items, Mapping):
            examples = examples_of(items)
        if examples:
            members[name] = examples
    return members


def schema_objects(root: Mapping[str, Any]) -> Iterator[tuple[Pattern, Mapping[str, Any]]]:
    """The object nodes of ``root`` with properties, by pattern, breadth first, within the
    depth and visit limits."""
    queue: list[tuple[Pattern, Any]] = [((), root)]
    visits = 0
    while queue and visits < _MAX_VISITS:
        pattern, node = queue.pop(0)
        visits += 1
        node = follow_local_refs(root, node)
        if not isinstance(node, Mapping) or len(pattern) > _MAX_DEPTH:
            continue
        props = node.get("properties")
        if isinstance(props, Mapping):
            yield pattern, node
            queue.extend(((*pattern, name), sub) for name, sub in props.items())
        items = node.get("items")
        if isinstance(items, Mapping):
            queue.append(((*pattern, None), items))
        for key in ("anyOf", "oneOf"):  # Pydantic's Optional[Model]: the object's own branch
            branches = node.get(key)
            if isinstance(branches, list):
                queue.extend((pattern, b) for b in branches if isinstance(b, Mapping))


class ExampleTyping:
    """The examples of a schema's grounded text fields, object by object, and what they say
    of the values written under them."""

    def __init__(
        self, schema: Mapping[str, Any] | bool, rules: Mapping[Pattern, FieldRule]
    ) -> None:
        def text(pattern: Pattern) -> bool:
            rule = rules.get(pattern)
            return rule is not None and rule.grounded and rule.kind == "text"

        self.scalars: dict[Pattern, dict[str, tuple[str, ...]]] = {}
        self.lists: dict[Pattern, dict[str, tuple[str, ...]]] = {}
        self.order: dict[Pattern, list[str]] = {}  # each object's members, in schema order
        self.text = frozenset(p for p in rules if text(p))
        root = schema if isinstance(schema, Mapping) else {}
        typed: set[Pattern] = set()
        for pattern, node in schema_objects(root):
            # A pattern met again (another anyOf branch): the first node with examples holds.
            self.order.setdefault(pattern, list(node["properties"]))
            members = _member_examples(root, node) if pattern not in typed else {}
            if members:
                typed.add(pattern)
            scalars = {k: ex for k, ex in members.items() if text((*pattern, k))}
            lists = {k: ex for k, ex in members.items() if text((*pattern, k, None))}
            # One field with examples has nothing to be told apart from.
            if len(scalars) > 1:
                self.scalars[pattern] = scalars
            if len(lists) > 1:
                self.lists[pattern] = lists

    def __bool__(self) -> bool:
        return bool(self.scalars or self.lists)

    def field_for(self, path: Path, value: Any) -> str | None:
        """The sibling field (of the value at ``path``, a member or a list's item) whose
        examples ``value`` matches decisively (``decisive_field``), if any."""
        if not isinstance(value, str) or not value.strip() or not path:
            return None
        if isinstance(path[-1], str):
            choices = self.scalars.get(pattern_of(path[:-1]))
        elif len(path) > 1 and isinstance(path[-2], str):
            choices = self.lists.get(pattern_of(path[:-2]))
        else:
            return None
        return decisive_field(value, choices) if choices else None

    def own_part(self, path: Path, value: str) -> tuple[int, int] | None:
        """The part of the member ``value`` at ``path`` that is its own field's, as ``(lo,
        hi)`` offsets, when the value runs several fields' names together and the examples
        name one piece of it this field's (``road``: ``曙光路153号`` is ``曙光路``; under
        ``road_number`` it is ``153号``; ``building``: ``59号13幢`` is ``13幢``); None to keep
        it whole: it is one piece, or no piece, or more than one, is this field's.

        The pieces are the most runs that make up the whole value, each one the examples
        decisively give to one field (a Chinese name ends in its kind: a cut after each kind)
        and each of two characters or more (a name is a proper part and its kind: ``古墩路`` is
        no ``古``, though the province's example 内蒙古 ends in it); a value no such runs make
        up is kept whole (``萧山原野汽配城``, and ``江南名芥市场``: a sub_poi example,
        某栋楼名, ends in 名, but nothing ends in 芥市场)."""
        own = path[-1] if path else None
        choices = self.scalars.get(pattern_of(path[:-1])) if isinstance(own, str) else None
        if not choices or own not in choices:
            return None
        pieces = list(_pieces(value, choices))
        mine = [(lo, hi) for lo, hi, name in pieces if name == own]
        return mine[0] if len(pieces) > 1 and len(mine) == 1 else None

    def claims(self, path: Path, value: Any, data: Any = None) -> bool:
        """Whether the examples put ``value`` where it is (``path``'s own field), or, given the
        document ``data``, in the sibling ``retype`` will move it to (``moves``)."""
        own = (
            path[-1] if path and isinstance(path[-1], str) else path[-2] if len(path) > 1 else None
        )
        if own is not None and self.field_for(path, value) == own:
            return True
        return data is not None and self.moves(path, value, data)

    def moves(self, path: Path, value: Any, data: Any) -> bool:
        """Whether the examples put the member ``value`` at ``path`` (one of ``data``'s) in
        an absent or empty sibling, as the first value of its object so placed there that can
        move, while it stands in a field with examples of its own that it doesn't match:
        ``retype`` will move it there."""
        own = path[-1] if path else None
        target = self.field_for(path, value)
        if not isinstance(own, str) or target is None or target == own:
            return False
        parent = value_at(data, path[:-1])
        if not isinstance(parent, dict) or parent.get(target) not in (None, ""):
            return False
        movable = self.scalars.get(pattern_of(path[:-1]), {})
        if own not in movable:
            return False
        first = next(
            (
                k
                for k, v in parent.items()
                if k in movable and self.field_for((*path[:-1], k), v) == target
            ),
            None,
        )
        return first == own

    def retype(self, found: Annotated, is_valid: Callable[[Any], bool]) -> Annotated:
        """``found`` with each grounded text member that has examples of its own but whose
        value's examples decisively name another member of its object moved there when that
        member is absent or empty (in document order: the first value so named takes it; then
        again, for a place a move emptied), or swapped with the value there when that one's
        examples name the first member; evidence and confidence go with the values. Unchanged
        when nothing moves or the result would not validate."""
        moves: dict[str, str] = {}  # old pointer -> new pointer, "" for a value replaced
        result = self._moved(found.data, (), moves)
        if not moves or not is_valid(result):
            return found
        order = {p: n for n, p in enumerate(leaf_pointers(result))}

        def rekey(mapping: Mapping[str, Any]) -> dict[str, Any]:
            # "": a value that was replaced (moves never name the root, whose pointer is "").
            renamed = {moves.get(p, p): v for p, v in mapping.items() if moves.get(p) != ""}
            return dict(sorted(renamed.items(), key=lambda kv: order.get(kv[0], len(order))))

        unsupported = tuple(rekey(dict.fromkeys(found.unsupported)))
        return Annotated(result, rekey(found.evidence), rekey(found.confidence), unsupported)

    def _moved(self, node: Any, path: Path, moves: dict[str, str]) -> Any:
        if isinstance(node, list):
            return [self._moved(v, (*path, i), moves) for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        out = {k: self._moved(v, (*path, k), moves) for k, v in node.items()}
        pattern = pattern_of(path)
        choices = self.scalars.get(pattern)
        if not choices:
            return out
        origin = {k: k for k in out}  # where each member's value was written
        # Again while something moves: a move empties a field that an earlier value's
        # examples name ("district": "张江镇" waits for "town": "科苑路" to go to "road").
        # Each value moves at most once (a swap moves two), so this ends.
        moving = True
        while moving:
            moving = False
            for key in list(out):
                # Only out of a field whose own examples it doesn't match: a field with none
                # may hold anything (a full_address ending in 路 is no road).
                movable = key in choices and origin[key] == key and (*pattern, key) in self.text
                target = self.field_for((*path, key), out[key]) if movable else None
                if target is None or target == key:
                    continue
                if out.get(target) not in (None, ""):
                    # Taken: by a value whose own examples name this field, the two swap.
                    there = self.field_for((*path, target), out[target])
                    if there == key and origin[target] == target:
                        out[key], out[target] = out[target], out[key]
                        origin[key], origin[target] = target, key
                        moving = True
                    continue
                if target in origin:  # an empty value, replaced: its evidence goes
                    moves[to_pointer((*path, origin[target]))] = ""
                out[target] = out.pop(key)
                origin[target] = origin.pop(key)
                moving = True
        if all(k == v for k, v in origin.items()):
            return out
        for key, was in origin.items():
            if key != was:
                moves[to_pointer((*path, was))] = to_pointer((*path, key))
        rank = {k: n for n, k in enumerate(self.order.get(pattern, ()))}
        return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def _pieces(value: str, choices: Mapping[str, Sequence[str]]) -> list[tuple[int, int, str]]:
    """``value`` read as ``ExampleTyping.own_part`` says: ``(lo, hi, field)`` for each of the
    most pieces of at least two characters, each decisively one field's, that make it up ([]
    when none do)."""
    if len(value) > _MAX_RUN_CHARS:
        return []
    # A piece ends as one of the examples or kinds does (``_rank`` matches endings, or the
    # whole): only there, so a long value costs a few looks, not one per pair of places.
    lasts = {f[-1] for ex in choices.values() for e in ex if (f := _folded(e.removeprefix(KIND)))}
    # best[i]: the most pieces that make up value[:i], and where the last one begins.
    best: list[tuple[int, int, str] | None] = [(0, 0, "")] + [None] * len(value)
    for hi in range(2, len(value) + 1):
        if _folded(value[hi - 1])[-1:] not in lasts:  # ß folds to ss: its last letter
            continue
        for lo in range(hi - 1):
            before, now = best[lo], best[hi]
            if before is None or (now is not None and now[0] >= before[0] + 1):
                continue
            name = decisive_field(value[lo:hi], choices)
            # A kind alone is no name (小区 of 阳光城小区, which the model wrote apart).
            if name is not None and KIND + value[lo:hi] not in choices[name]:
                best[hi] = (before[0] + 1, lo, name)
    pieces: list[tuple[int, int, str]] = []
    hi = len(value)
    while hi > 0:
        step = best[hi]
        if step is None:
            return []
        _, lo, name = step
        pieces.append((lo, hi, name))
        hi = lo
    return pieces[::-1]


def examples_read(schema: Mapping[str, Any] | bool) -> dict[Pattern, tuple[str, ...]]:
    """The examples ``extract`` reads, by the field's pattern (its object's, then its name):
    those of grounded text fields with a sibling that has examples too (``ExampleTyping``)."""
    typing = ExampleTyping(schema, grounding_rules(schema))
    return {
        (*pattern, name): examples
        for table in (typing.scalars, typing.lists)
        for pattern, members in table.items()
        for name, examples in members.items()
    }


def pattern_of_pointer(pointer: str) -> Pattern | None:
    """The field pattern a schema pointer names (``/properties/a/items/properties/b``:
    ``("a", None, "b")``), or None where it goes through anything else (``$defs``, ``anyOf``)."""
    parts = [unescape_token(p) for p in pointer.split("/")[1:]] if pointer else []
    pattern: list[str | None] = []
    while parts:
        head = parts.pop(0)
        if head == "properties" and parts:
            pattern.append(parts.pop(0))
        elif head == "items":
            pattern.append(None)
        else:
            return None
    return tuple(pattern)
