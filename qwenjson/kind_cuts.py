"""Entity-list items cut at the kinds the schema lists: one name per item, ending in its kind.

A Chinese description often enumerates the kinds a field holds (``具体单位名称（公司、学校、政府
部门、协会等）``: ``qwenjson.field_examples.kinds_of``), and a Chinese name ends in its kind
(head-final: 武汉钢铁股份有限**公司**). The 0.5B copies a résumé's
``任武汉钢铁股份有限公司董事会秘书`` ("served as the board secretary of 武汉钢铁…公司") as one
item, company and post together, under ``organizations`` or under ``titles``. So, for the
root's entity lists (``qwenjson.labeling.entity_lists``):

* an item of a list with kinds that doesn't end in one but contains one ends there (the last
  one it contains): ``武汉钢铁股份有限公司董事会秘书`` under organizations is
  ``武汉钢铁股份有限公司``;
* an item that contains none of its own list's kinds but a kind of another list (and doesn't
  end in one of that list's: then it is that list's name, for the typing after this to move)
  begins after it: ``金塔县棉花公司副经理`` under titles (whose kinds are 职务, 职称, 头衔) is
  ``副经理``.

What is cut off is dropped, not placed elsewhere: nothing is added. Measured with
``scripts/quality.py --no-anchor --source zh-resume --source cluener`` (the bench model, 2
threads), before -> after: résumés 44.9 -> 50.8% (10 documents better, none worse; one of
them lost ``西电公司微电机厂``, a works of that company, cut to ``西电公司``), Chinese NER 14.4%
unchanged (its descriptions give examples, not kinds). The cut itself, the evidence and the
confidence are ``qwenjson.value_cuts``'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from qwenjson.evidence import Annotated
from qwenjson.field_examples import KIND
from qwenjson.fields import Path
from qwenjson.source import SourceText
from qwenjson.value_cuts import cut_values

__all__ = ["cut_at_kinds"]


def cut_at_kinds(
    found: Annotated,
    lists: Sequence[str],
    examples: Mapping[str, Sequence[str]],
    source: SourceText,
    is_valid: Callable[[Any], bool],
) -> Annotated:
    """``found`` with the string items of the root's ``lists`` cut at the kinds among the
    lists' ``examples`` (``field_examples``, kinds marked ``KIND``) as the module says, their
    evidence with them; unchanged when none is, or the document would then not validate."""
    kinds = {
        name: tuple(e[len(KIND) :] for e in examples.get(name, ()) if e.startswith(KIND))
        for name in lists
    }
    kinds = {name: k for name, k in kinds.items() if k}
    if not kinds:
        return found

    def cutter(path: Path, value: str, _: tuple[int, int]) -> tuple[int, int] | None:
        own = kinds.get(str(path[0]), ())
        if any(value.endswith(kind) for kind in own):
            return None
        end = _last_end(value, own)
        if end:
            return 0, end
        others = [k for ks in kinds.values() if not any(value.endswith(k) for k in ks) for k in ks]
        start = _last_end(value, others)
        return (start, len(value)) if start and value[start:].strip() else None

    items = {(name, None) for name in lists}
    return cut_values(found, cutter, source, is_valid, where=items)


def _last_end(item: str, kinds: Sequence[str]) -> int:
    """Where the last of ``kinds`` that ``item`` contains before its end ends (0: none)."""
    ends = [item.rfind(kind) + len(kind) for kind in kinds if kind and kind in item]
    inside = [end for end in ends if end < len(item)]
    return max(inside, default=0)
