"""Concise schema syntax: a few words in, a JSON Schema (draft 2020-12) object out.

A superset of the syntax of simonw/llm's ``--schema 'name, age int'``::

    name, age int 0..150, bio: a short bio
    sentiment positive|neutral|negative
    nickname? str 1..40
    address {street, city, zip? str: postcode}
    born date, email? email, site? url
    people [{name, role: job title}] 1..
    tags [str] ..10
    score float|null 0..1
    "first name": quoted names take any characters
    姓名: 全名，年龄 int 0..150

Grammar (EBNF; spaces and tabs between tokens are ignored; NEWLINE is a line break)::

    schema      = fields ;
    fields      = { sep } field { sep { sep } field } { sep } ;
    sep         = "," | NEWLINE ;
    field       = name [ "?" ] [ typed ] [ ":" description ] ;
    name        = WORD | NUMBER | STRING ;
    typed       = type [ range ] | range ;               (* a bare range means str *)
    type        = base [ "|" "null" ] [ "derived" ] | enum ;   (* derived: int, float, date *)
    base        = "str" | "int" | "float" | "bool" | "text" | "quote"
                | "string" | "integer" | "number" | "boolean"
                | "date" | "time" | "datetime" | "email" | "uri" | "url" | "uuid"
                | "{" fields "}"
                | "[" { NEWLINE } typed { NEWLINE } "]" ;
    enum        = value "|" value { "|" value } | STRING ;
    value       = WORD | NUMBER | STRING | "null" | "true" | "false" ;
    range       = NUMBER ".." [ NUMBER ] | ".." NUMBER ;
    description = STRING | RAW ;

    WORD   = a letter or "_", then letters, digits, marks, "_" (any script: 姓名, नाम, café),
             with single "-" inside ("first-name"); "1080p" is a WORD too
    NUMBER = JSON number: -?digits[.digits][(e|E)[+|-]digits]
    STRING = a JSON string in double quotes, with JSON escapes
    RAW    = the text after ":" up to the end of the line, or up to a "}" or "]" it didn't
             open; in a field list written on one line (the whole schema, or a "{…}" group
             whose "}" is on the line of its "{"), up to the next "," as well. Stripped.

The full-width "，", "：" and "？" that Chinese keyboards type are the same as ",", ":", "?".

Meaning:

- Every field is required unless its name is followed by ``?``. Property order is the order
  written. Every object has ``additionalProperties: false``. No type means ``str``.
- ``str int float bool`` are ``string integer number boolean`` (the long names work too).
- ``date time datetime email uri uuid`` are strings in that JSON Schema ``format``
  (``datetime`` is ``date-time``, ``url`` is ``uri``). Followed by ``|`` and a value other than
  ``null`` they are plain words of an enum: ``contact email|phone``.
- ``{…}`` is a nested object; ``[T]`` a list of T (any type: ``[{…}]``, ``[a|b]``, ``[[int]]``).
- ``a|b|c`` is an enum. Bare words are strings, numbers are numbers, ``null true false`` are
  JSON literals; quote anything else (``"very good"|bad``, ``"int"|"str"``). A single quoted
  string is a one-value enum. The enum's ``type`` follows its values.
- ``text`` and ``quote`` are strings that ``extract`` writes in its own words (a summary) or
  copies from the input: ``"x-grounded": false`` or ``true`` (without either, extract decides
  by the field, see ``qwenjson.grounding``). ``summary text, code quote 1..20``.
- ``derived`` after ``int``, ``float`` or ``date`` (and ``|null``) marks a value the model
  works out rather than reads from the text: ``"x-grounded": false`` (extract otherwise takes
  numbers and dates only as the text says them, so a count of items the text lists one by one
  could not be written). ``items int derived 0..``, ``due date|null derived``.
- ``T|null`` also allows null.
- A range ``lo..hi`` is inclusive and either end may be left open. It bounds the value of
  ``int`` (integer bounds) and ``float``, the length of ``str`` and the length of lists
  (non-negative integer bounds): ``age int 0..150``, ``title str 1..80``, ``tags [str] 1..5``.
- A description runs as RAW above. To keep a comma in a one-line schema, quote it
  (``bio: "short, funny"``) or write one field per line (as llm does). ``age: int`` is refused
  (it would make "int" a description; write ``age int``).

Errors raise :class:`DslError` (a :class:`~qwenjson.errors.SchemaError`, exit code 3) whose
message names the line and column and shows the line with a caret under the place.
"""

from qwenjson.dsl.lexer import DRAFT_2020_12, MAX_DEPTH, DslError
from qwenjson.dsl.parser import parse_dsl
from qwenjson.dsl.render import schema_to_dsl

__all__ = ["DRAFT_2020_12", "MAX_DEPTH", "DslError", "parse_dsl", "schema_to_dsl"]
