"""The keyword report: every keyword occurrence in a schema, with its JSON pointer and fate.

A keyword is *enforced* when the grammar lets through exactly what it allows, *validated-after*
when the grammar is a superset and jsonschema checks the rest once the document is complete,
*annotation* when it has no say over validity, and *unsupported* when qwenjson can do neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qwenjson.errors import SchemaError
from qwenjson.schema.dialect import dialect_of
from qwenjson.schema.keywords import Status, static_status
from qwenjson.schema.refs import RefIndex, follow_refs, subschemas


@dataclass(frozen=True)
class KeywordUse:
    """One keyword at one place in the schema and how qwenjson honours it."""

    pointer: str
    keyword: str
    status: Status
    note: str = ""


# Keywords in draft 7 and earlier that `$ref` overrides (JSON Schema says to ignore them).
_REF_OVERRIDES_NOTE = "ignored beside $ref (draft 7 and earlier)"


def build_report(
    root: Any,
    marks: dict[tuple[str, str], tuple[Status, str]],
    nodes: list[tuple[str, Any]] | None = None,
) -> tuple[KeywordUse, ...]:
    """Every keyword occurrence in ``root`` in document order, refined by ``marks``.

    ``nodes`` is the document's subschemas with their pointers when the caller has them
    already (the compiler's `$ref` index walked them); otherwise they are walked here.
    """
    hides_siblings = dialect_of(root).ref_hides_siblings
    read: set[str] | None = None  # where extract reads x-grounded, worked out when first asked
    uses: list[KeywordUse] = []
    seen: set[tuple[str, str]] = set()
    for pointer, node in nodes if nodes is not None else _walk(root):
        if isinstance(node, dict):
            ref_overrides = "$ref" in node and hides_siblings
            for keyword in node:
                key = (pointer, keyword)
                seen.add(key)
                if key in marks:
                    status, note = marks[key]
                elif ref_overrides and keyword not in ("$ref", "definitions", "$defs"):
                    status, note = "annotation", _REF_OVERRIDES_NOTE
                else:
                    status, note = static_status(keyword)
                if keyword == "x-grounded" and isinstance(node[keyword], bool):
                    read = _marks_read(root) if read is None else read
                    note = _grounded_note(root, node) if pointer in read else _UNREAD_NOTE
                uses.append(KeywordUse(pointer, keyword, status, note))
        elif node is False:
            uses.append(KeywordUse(pointer, "false", "enforced", "matches nothing"))
    # Marks the compiler made at places that aren't keyword occurrences (merged schemas).
    for (pointer, keyword), (status, note) in sorted(marks.items()):
        if (pointer, keyword) not in seen:
            uses.append(KeywordUse(pointer, keyword, status, note))
    return tuple(uses)


_UNREAD_NOTE = "extract: not read here, where its rules don't reach (README: Where the rules reach)"


def _marks_read(root: Any) -> set[str]:
    """The pointers of the nodes whose ``x-grounded`` ``extract`` reads: those
    ``qwenjson.fields``' walk reaches (properties, items, prefixItems, local $refs, the one
    branch it goes on to) where it reads one (``fields.reads_mark``)."""
    # Imported here: qwenjson.fields imports qwenjson.schema, which imports this module.
    from qwenjson.fields import branch_of, reads_mark

    try:
        index: RefIndex | None = RefIndex(root)
    except SchemaError:  # a schema the compiler refuses: its report says why
        index = None
    read: set[str] = set()
    seen: set[str] = set()
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        pointer, node = stack.pop()
        if not isinstance(node, dict) or pointer in seen:
            continue
        seen.add(pointer)
        if reads_mark(root, node):
            read.add(pointer)
        ref = node.get("$ref")
        if isinstance(ref, str) and index is not None:
            try:
                target = index.resolve(ref, index.base_of(pointer), pointer)
            except SchemaError:
                target = None
            if target is not None:
                stack.append((target.pointer, target.schema))
        props = node.get("properties")
        if isinstance(props, dict):
            stack.extend((f"{pointer}/properties/{_escape(k)}", sub) for k, sub in props.items())
        if isinstance(node.get("items"), dict):
            stack.append((f"{pointer}/items", node["items"]))
        if isinstance(node.get("prefixItems"), list):
            stack.extend(
                (f"{pointer}/prefixItems/{i}", p) for i, p in enumerate(node["prefixItems"])
            )
        if (branch := branch_of(root, node)) is not None:
            stack.extend(
                (f"{pointer}/{key}/{i}", b)
                for key in ("anyOf", "oneOf", "allOf")
                if isinstance(node.get(key), list)
                for i, b in enumerate(node[key])
                if b is branch
            )
    return read


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _grounded_note(root: Any, node: dict[str, Any]) -> str:
    """What ``extract`` does with this ``x-grounded`` (``qwenjson.fields``): its own value,
    and on an object or list (behind a ``$ref`` or in an Optional's branch too), for what it
    holds that says nothing itself."""
    what = (
        "copied or read from the input text"
        if node["x-grounded"]
        else "written or worked out by the model"
    )
    resolved = follow_refs(root, node)
    shapes = [resolved] + [
        follow_refs(root, branch)
        for key in ("anyOf", "oneOf")
        for branch in (resolved.get(key) if isinstance(resolved.get(key), list) else [])
    ]
    holds = ("properties", "items", "prefixItems")

    def container(shape: Any) -> bool:
        if not isinstance(shape, dict):
            return False
        kind = shape.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        return any(k in shape for k in holds) or any(k in ("object", "array") for k in kinds)

    if any(container(shape) for shape in shapes):
        return (
            "extract: strings, numbers and dates in it with no mark of their own (an enum, a "
            f"format, a pattern or a name such as summary keeps its own rule): {what}"
        )
    return f"extract: {what}"


def _walk(root: Any) -> list[tuple[str, Any]]:
    """Every subschema with its pointer, in document order (iteratively: no deep recursion)."""
    out: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        pointer, node = stack.pop()
        out.append((pointer, node))
        stack.extend(reversed(list(subschemas(node, pointer))))
    return out


__all__ = ["KeywordUse", "Status", "build_report", "static_status"]
