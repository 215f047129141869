"""Validation after generation: the formats and regex semantics jsonschema alone gets wrong."""

from __future__ import annotations

from typing import Any

import pytest

from qwenjson.errors import SchemaError
from qwenjson.validate import check_metaschema, make_validator, validation_errors


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"pattern": "^\\d+$"}, ["12"], ["৪", "1\n"]),
        ({"pattern": "^\\w$"}, ["a"], ["é"]),
        (
            {"format": "time"},
            ["23:59:60Z", "15:59:60-08:00", "08:30:06.283185Z"],
            ["22:59:60Z", "24:00:00Z"],
        ),
        (
            {"format": "date-time"},
            ["1998-12-31T23:59:60Z", "1963-06-19T08:30:06Z"],
            ["1998-12-31T22:59:60Z", "2021-02-29T00:00:00Z"],
        ),
        ({"format": "duration"}, ["P4DT12H30M5S", "P2W"], ["P", "PT", "P1D2H"]),
        (
            {"format": "hostname"},
            ["example.com", "xn--bcher-kva.example"],
            ["-a.com", "ab--c.com", "a" * 64],
        ),
        ({"format": "uri"}, ["https://example.com/a?b#c"], ["//no-scheme", "http://a b"]),
        ({"format": "regex"}, ["^\\p{L}+$"], ["(unclosed"]),
        (
            {"patternProperties": {"^\\d$": {"type": "integer"}}, "additionalProperties": False},
            [{"1": 1}],
            [{"1": "x"}, {"৪": 1}],
        ),
    ],
)
def test_validation(schema: dict[str, Any], good: list[Any], bad: list[Any]) -> None:
    validator = make_validator(schema)
    for value in good:
        assert validation_errors(value, validator) == [], value
    for value in bad:
        assert validation_errors(value, validator), value


def test_errors_are_json_pointers() -> None:
    schema = {
        "type": "object",
        "properties": {"a/b": {"type": "array", "items": {"type": "integer"}}},
    }
    errors = validation_errors({"a/b": [1, "x"]}, make_validator(schema))
    assert errors == ["/a~1b/1: 'x' is not of type 'integer'"]


def test_metaschema_accepts_ecma_only_patterns_and_refuses_broken_ones() -> None:
    check_metaschema({"pattern": "^\\p{Letter}\\cC$"})
    with pytest.raises(SchemaError, match="at /pattern"):
        check_metaschema({"pattern": "(unclosed"})


def test_validation_never_fetches_a_remote_ref() -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    hits: list[bool] = []

    def serve() -> None:
        try:
            conn, _ = server.accept()
            hits.append(True)
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    validator = make_validator({"$ref": f"http://127.0.0.1:{port}/schema.json"})
    with pytest.raises(Exception, match="Unresolvable"):
        validation_errors(1, validator)
    thread.join()
    server.close()
    assert hits == []
