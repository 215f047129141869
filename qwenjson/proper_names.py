"""Names in a text that capitalizes them: an item that is no capitalized name is none.

Asked for a news story's organizations, the 0.5B lists ``luxury boat``, ``government ban on
them`` and ``Finnish police`` beside ``Itar-Tass``: words of the text, but no names. Where the
schema says its lists hold names (``name_lists``: the lists of an object whose description says
"named entities" or "proper names", and lists of person names, ``qwenjson.person_names``), and
the text writes in a cased script and capitalizes words inside its sentences (a news story, a
reference list; not a lowercase voice command, not a Chinese text with a Latin brand in it),
a name is a run of words that begins and ends with a capitalized one: English names are
capitalized, and their head, the last word, is the name's own (``Sudan People's Liberation
Army``, ``Rally for the Return of Refugees and Democracy in Rwanda``). So an item of such a
list

* whose last cased word has no capital is no name, and is left out (``luxury boat``,
  ``Finnish police``: a common noun with a name before it);
* that begins with uncapitalized words begins at its first capitalized one, or at the particle
  before it (``western town of Tampere`` -> ``Tampere``; ``de Gaulle`` stays);
* a name's own uncapitalized words join its capitalized ones (``of``, ``the``, ``and``,
  ``de``, ``upon``…: ``Bank of America``, ``Frankfurt am Main``), so an item with another one
  inside is two mentions run together, and keeps the last, the head (``England soccer manager
  Glen Hoddle`` -> ``Glen Hoddle``).

Words without cased letters (numbers, Han characters) have no say: an item of only such words
stays. Applied to the dev set's gold lists (every one the rule would see, 150 items), it
changes none (tests/test_proper_names.py). Measured with ``scripts/quality.py --no-anchor
--source conllpp --source citations`` (the bench model, 2 threads), before -> after: news NER
30.1 -> 35.4% (12 documents changed, 5 better, none worse; items dropped or cut such as
``government ban on them``, ``European Union's scientific panels``, ``Democratic party``),
citations 84.5% unchanged (its authors are capitalized names already); the other sources have
no such lists or write in Chinese or in lowercase. The head kept of two mentions run together:
news NER 35.4 -> 35.8% (one document, its ``Glen Hoddle`` then typed as a person), citations
the same documents.

The cut, the drop, the evidence and the confidence are ``qwenjson.value_cuts``'.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from qwenjson.evidence import Annotated
from qwenjson.field_examples import schema_objects
from qwenjson.fields import FieldRule, Path, Pattern
from qwenjson.source import SourceText
from qwenjson.value_cuts import DROP, cut_values

__all__ = ["capitalizes_names", "cut_to_names", "name_lists", "name_part", "says_names"]

# A description that says its object's lists (or the list itself) hold names.
_NAMES = re.compile(r"\bnamed[ -]entit(?:y|ies)\b|\bproper (?:names?|nouns?)\b", re.IGNORECASE)
# Lowercase words that begin a name before a capitalized one (de Gaulle, van Gogh, bin Laden).
_PARTICLES = frozenset(
    {"van", "von", "de", "da", "di", "del", "della", "der", "den", "du", "la", "le", "al", "el"}
    | {"bin", "ibn", "ter", "dos", "das"}
)
# Marks a word may carry that are not its own ("of," in "Bank of, say, ...", quotes).
_MARKS = ",;:.!?\"'()[]“”‘’"
# Lowercase words inside a name, between capitalized ones: function words of the languages
# written in Latin letters (Bank of America, Tour de France, Frankfurt am Main, Newcastle upon
# Tyne); any other is no word of a name.
_JOINERS = _PARTICLES | frozenset(
    {"of", "the", "for", "and", "in", "on", "at", "upon", "des", "les", "degli", "ben"}
    | {"en", "sur", "sous", "am", "an", "im", "zu", "y", "e", "i", "a"}
)
# A capital that is not a sentence's first letter: after a word's last character, or a mark
# that ends no sentence (, ; : ) and quotes), and blanks; not after . ! ? or a line break.
_INNER_CAPITAL = re.compile(r"[\w,;:)\"'’] +[^\W\d_]*[A-Z\u00c0-\u00de\u0391-\u03a9\u0400-\u042f]")


def name_lists(
    schema: Mapping[str, Any] | bool,
    rules: Mapping[Pattern, FieldRule],
    persons: Collection[Pattern] = (),
) -> frozenset[Pattern]:
    """The item patterns of the grounded text lists of ``schema`` that hold names: those of an
    object whose description says "named entities" or "proper names", those whose own
    description says so, and the lists among ``persons``: the fields that say they hold
    person names (``qwenjson.person_names.person_fields``, not widened to sibling lists by
    ``with_entity_lists``: a list of hobbies beside a list of authors holds no names)."""
    root = schema if isinstance(schema, Mapping) else {}
    found = {p for p in persons if p and p[-1] is None}
    for pattern, node in schema_objects(root):
        says = says_names(node.get("description"))
        for name, member in node["properties"].items():
            target = (*pattern, name, None)
            rule = rules.get(target)
            if rule is None or not rule.grounded or rule.kind != "text":
                continue
            described = member.get("description", "") if isinstance(member, Mapping) else ""
            if says or says_names(described):
                found.add(target)
    return frozenset(found)


def says_names(description: Any) -> bool:
    """Whether a schema ``description`` says its field (or its object's lists) holds names:
    "named entities", "proper names"."""
    return isinstance(description, str) and _NAMES.search(description) is not None


def capitalizes_names(text: str) -> bool:
    """Whether ``text`` writes mostly in a cased script (Latin, Greek, Cyrillic) and capitalizes
    a word inside a sentence: the texts whose names tell themselves by their capitals."""
    letters = [c for c in text if c.isalpha()]
    cased = sum(1 for c in letters if c.isupper() or c.islower())
    if not letters or 2 * cased < len(letters):
        return False
    return any(not _only_pronoun_i(text, m.end()) for m in _INNER_CAPITAL.finditer(text))


def cut_to_names(
    found: Annotated,
    lists: Collection[Pattern],
    source: SourceText,
    is_valid: Callable[[Any], bool],
) -> Annotated:
    """``found`` with the items of ``lists`` (``name_lists``) that are no capitalized name left
    out, and those with uncapitalized words before their name cut to it, as the module says,
    when the text capitalizes names; unchanged otherwise, or when the document would then not
    validate."""
    if not lists or not capitalizes_names(source.text):
        return found

    def cutter(_: Path, value: str, __: tuple[int, int]) -> tuple[int, int] | None:
        return name_part(value)

    return cut_values(found, cutter, source, is_valid, where=lists)


def name_part(value: str) -> tuple[int, int] | None:
    """The part of ``value`` that is a capitalized name as ``(lo, hi)``, None for all of it
    (or no cased word to judge by), ``DROP`` for no name."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", value) if _cased(m.group())]
    if not words:
        return None
    capital = [n for n, (lo, hi) in enumerate(words) if _capitalized(value[lo:hi])]
    if not capital or capital[-1] != len(words) - 1:
        return DROP
    # After the last lowercase word that joins nothing (England soccer manager Glen Hoddle).
    foreign = [n for n in range(capital[0], len(words)) if _foreign(value[slice(*words[n])])]
    first = next(n for n in capital if n > foreign[-1]) if foreign else capital[0]
    while first > 0 and value[slice(*words[first - 1])] in _PARTICLES:
        first -= 1
    return None if first == 0 else (words[first][0], len(value))


def _foreign(word: str) -> bool:
    """Whether ``word`` is a lowercase word no name has inside it."""
    return not _capitalized(word) and word.strip(_MARKS).lower() not in _JOINERS


def _cased(word: str) -> bool:
    # A word that begins with a digit is no word to judge by (49ers, 3rd).
    return not word[0].isdigit() and any(c.isupper() or c.islower() for c in word)


def _capitalized(word: str) -> bool:
    # Any capital counts: iPhone, eBay and al-Qaeda are names.
    return any(c.isupper() for c in word)


def _only_pronoun_i(text: str, end: int) -> bool:
    """Whether the capital that ends at ``end`` is the English pronoun "I" (I, I'm, I'd)."""
    return text[end - 1] == "I" and (end == len(text) or not text[end].isalpha())
