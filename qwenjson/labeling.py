"""Entity lists: each item goes to the list whose name makes the model likeliest to write it.

A schema of sibling lists of grounded strings (``people``, ``organizations``, ``locations``…)
asks the model to type every span. Written left to right under a grammar that fixes the lists'
order, the 0.5B types poorly: it copies spans from one list into the next, and the later copy is
the surer one (it is a copy), so the contest in ``qwenjson.evidence`` often keeps the wrong list.

So once the document is written, each item is typed again as a generative classifier would: the
list ``L`` that maximises ``p(item | the reply begins '{"L": ["')``, every list asked in the same
context (the prompt, then that list alone), so no list gains from coming later. The full score
is computed for the ``SHORTLIST`` lists whose first token of the item is likeliest (a cheap look
at every list). Measured with ``scripts/quality.py`` (the Qwen2 0.5B bench model, 2 threads) on
the dev set's three entity-list sources, before → after: CoNLL 21.1 → 22.6%, CLUENER 9.7 →
9.8%, résumés 25.8 → 29.9%; the other sources unchanged (34.4 → 35.2% overall). The cost: mean
seconds per text 2.0 → 3.2, 3.5 → 4.7 and 4.8 → 7.3 on those three.

Two other classifiers typed worse. Scored offline on the items of one ``quality.py --out``
run, each with its full score under every list: the other direction, ``p(list | item)`` (the
reply begins ``'{"item": ['``, then each list's name), CoNLL 14.8%, CLUENER 7.5%, résumés 19.6%
(13 texts) against 26.3%, 9.2%, 33.5%; and a head giving the list's description
(``'L (description): ["'``), CoNLL 27.8%, CLUENER 8.4%, résumés 28.3% (7 texts) against 26.3%,
9.2%, 28.8%: no better overall. Nor did taking each list's bias out of its scores, as
"calibrate before use" does for a classifier (rescored offline on one run's items): less each
list's mean score over the text's items, CoNLL 27.6%, CLUENER 8.6%, résumés 28.2%; less its
score for a content-free item ``N/A``, 21.0%, 11.6%, 31.6%; against 26.3%, 8.2%, 34.0%. Nor
did moving an item from the model's own list only when another scores higher by a margin
(0.5 to 5 nats: 22.1 to 23.3% over the three sources, against 22.8%).

Only the items move: none is added (abstention stays with ``qwenjson.grounding``), one that two
lists held as copies of one mention is listed once (the text's own repeats all stay), their
evidence and confidence move with them, and a document that would no longer validate
(``maxItems``, ``uniqueItems``…) is kept as the model wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from qwenjson.evidence import Annotated
from qwenjson.field_examples import decisive_field
from qwenjson.fields import FieldRule, Pattern
from qwenjson.generation import Message
from qwenjson.pointer import leaf_pointers, to_pointer

# How many lists get the full score for an item, after a look at its first token under every
# list. In a prototype on the dev set's outputs (the same three sources), 3 typed exactly as
# every list did (22.8%, 11.4%, 29.9%); the first token alone did worse (20.5%, 8.6%, 30.8%).
# quality.py with 2 instead of 3: 21.8 / 9.6 / 30.2% against 22.6 / 9.8 / 29.9%, for a mean of
# 4.7 s per text against 5.2 s on those sources.
SHORTLIST = 3


@runtime_checkable
class Scorer(Protocol):
    """A model that can say how likely a continuation is (``Engine.continuation_logprobs``)."""

    def continuation_logprobs(
        self,
        messages: Sequence[Message],
        head: str,
        tails: Sequence[str],
        *,
        max_tokens: int | None = None,
    ) -> list[float]:
        """log p(tail | reply begins with ``head``) for each tail."""
        ...


def entity_lists(rules: Mapping[Pattern, FieldRule], schema: Mapping[str, Any] | bool) -> list[str]:
    """The root object's lists of grounded free-text strings, in schema order, when there are
    two or more of them (otherwise there is nothing to choose between)."""
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(props, Mapping):
        return []
    names = [
        name
        for name in props
        if (rule := rules.get((name, None))) is not None and rule.grounded and rule.kind == "text"
    ]
    return names if len(names) >= 2 else []


def relabel(
    found: Annotated,
    *,
    lists: Sequence[str],
    messages: Sequence[Message],
    scorer: Scorer,
    is_valid: Callable[[Any], bool],
    tick: Callable[[], None] | None = None,
    examples: Mapping[str, Sequence[str]] | None = None,
) -> Annotated:
    """``found`` with every string item of ``lists`` (root members) in the list that makes it
    likeliest (see the module's docstring), its evidence, confidence and unsupported pointers
    following the items; unchanged when nothing moves or the result would not validate.
    ``tick`` is called before each evaluation (a time limit's check). ``examples``: each
    list's example items (``field_examples``): an item they decisively give to one of the
    lists goes there unscored."""
    data, evidence = found.data, found.evidence
    if not isinstance(data, dict):
        return found
    present = [name for name in lists if isinstance(data.get(name), list)]
    at = [(name, i) for name in present for i in range(len(data[name]))]
    items = [data[n][i] for n, i in at if _typed(data[n][i])]
    if len(present) < 2 or not items:
        return found
    choices = {name: examples[name] for name in present if examples and name in examples}
    decided = {item: decisive_field(item, choices) for item in items} if len(choices) > 1 else {}
    unscored = [item for item in dict.fromkeys(items) if decided.get(item) is None]
    best = _best_lists(unscored, present, messages, scorer, tick or _nothing)
    best.update({item: name for item, name in decided.items() if name is not None})
    keep = _items_kept(data, at, evidence)
    moved: dict[str, str] = {}  # old pointer -> new pointer
    out = dict(data)
    for name in present:
        out[name] = []
    for name, i in at:
        item = data[name][i]
        if _typed(item):
            if (name, i) not in keep:
                continue
            target = best[item]
        else:
            target = name  # not typed: stays where it is
        moved[to_pointer((name, i))] = to_pointer((target, len(out[target])))
        out[target].append(item)
    if out == data or not is_valid(out):
        return found

    def rekey(pointers: Iterable[str]) -> list[tuple[str, str]]:
        """(new, old) for the pointers that still name a value."""
        return [(moved.get(p, p), p) for p in pointers if p in moved or not _under(p, present)]

    # In document order, as ``annotate`` gives them.
    order = {p: n for n, p in enumerate(leaf_pointers(out))}

    def ordered(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return sorted(pairs, key=lambda pair: order.get(pair[0], len(order)))

    return Annotated(
        out,
        {new: evidence[old] for new, old in ordered(rekey(evidence))},
        {new: found.confidence[old] for new, old in ordered(rekey(found.confidence))},
        tuple(new for new, _ in ordered(rekey(found.unsupported))),
    )


def _items_kept(
    data: dict[str, Any], at: list[tuple[str, int]], evidence: Mapping[str, Any]
) -> set[tuple[str, int]]:
    """The typed items to keep: an item two lists held is listed once when the two are copies
    of one mention (the same words of the text, or one with no source), the copy with a source
    kept; the text's own repeats, each from its own place, all stay ("Rome, Paris, Rome": two
    Romes, wherever the model first put them). Items of one list are left as that list has
    them."""
    kept: dict[str, list[tuple[str, Any]]] = {}  # item -> (list, span) of the copies kept
    keep: set[tuple[str, int]] = set()
    spans = {(name, i): evidence.get(to_pointer((name, i))) for name, i in at}
    typed = [(name, i) for name, i in at if _typed(data[name][i])]
    # Those with a source first: of two copies, the one with a source is kept.
    for name, i in sorted(typed, key=lambda place: spans[place] is None):
        span, copies = spans[name, i], kept.setdefault(data[name][i], [])
        if span is not None:
            copy = any(other == span for _, other in copies)
        else:
            copy = any(held != name for held, _ in copies)
        if not copy:
            copies.append((name, span))
            keep.add((name, i))
    return keep


def _typed(item: Any) -> bool:
    """Whether a list item is typed again: a non-empty string (others stay where they are)."""
    return isinstance(item, str) and item != ""


def _nothing() -> None:
    pass


def _best_lists(
    items: list[str],
    lists: list[str],
    messages: Sequence[Message],
    scorer: Scorer,
    tick: Callable[[], None],
) -> dict[str, str]:
    """For each item, the list under which the model finds it likeliest."""
    if not items:
        return {}
    heads = {name: "{" + json.dumps(name, ensure_ascii=False) + ': ["' for name in lists}
    # Each item as the model writes it inside the list: JSON-escaped, with its closing quote
    # (so that "Rwandan" and "Rwandan Hutu" are told apart).
    tails = [json.dumps(item, ensure_ascii=False)[1:] for item in items]
    first: dict[str, list[float]] = {}
    for name in lists:
        tick()
        first[name] = scorer.continuation_logprobs(messages, heads[name], tails, max_tokens=1)
    shortlist = {
        k: sorted(lists, key=lambda name: (-first[name][k], lists.index(name)))[:SHORTLIST]
        for k in range(len(items))
    }
    full: dict[tuple[str, int], float] = {}
    for name in lists:
        wanted = [k for k in range(len(items)) if name in shortlist[k]]
        if wanted:
            tick()
            scores = scorer.continuation_logprobs(messages, heads[name], [tails[k] for k in wanted])
            full.update({(name, k): s for k, s in zip(wanted, scores, strict=True)})
    return {
        item: max(shortlist[k], key=lambda name: (full[name, k], -lists.index(name)))
        for k, item in enumerate(items)
    }


def _under(pointer: str, lists: Sequence[str]) -> bool:
    return any(pointer.startswith(to_pointer((name,)) + "/") for name in lists)
