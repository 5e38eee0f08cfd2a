"""The name a message greets the customer by: a first name, or none at all.

"Hi Ada Lovelace," reads like a form letter; "Hi Ada," like the shop. But a full name
does not always say which word is the first name, and a wrong guess ("Hi Dr,", "Hi
Lovelace,") is worse than a neutral "Hi,". The rule, in order:

1. ``customer.given_name`` when the publisher sent one (it knows best);
2. else, from ``customer.name``: leading honorifics are skipped (``Dr``, ``Mrs.``,
   ``Mme``, …); "Family, Given" (a comma) gives the first word after the comma;
   otherwise, when at least two words remain, the first of them;
3. else none: a single word (``Lovelace``, ``ACME``) may be a family or company name,
   and an initial (``A. Lovelace``) is not a name to greet anyone by.

Templates see the result as ``customer.first_name``; ``None`` means "greet neutrally"
("Hi," / "Bonjour,"). Names written family name first without a comma ("Yamada
Taro") cannot be told apart here: publishers that know better send ``given_name``.
"""

from __future__ import annotations

#: titles that come before a name, lower-cased, without a trailing dot
HONORIFICS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "prof",
        "sir",
        "dame",
        "lord",
        "lady",
        "rev",
        "m",
        "mme",
        "mlle",
        "me",
        "pr",
        "herr",
        "frau",
        "sr",
        "sra",
        "srta",
    }
)


def first_name(given_name: str | None, name: str | None) -> str | None:
    """The customer's first name by the rule above, or None when none can be derived."""
    if given_name and given_name.strip():
        return given_name.strip()
    if not name:
        return None
    family, comma, rest = name.partition(",")
    words = _without_honorifics(rest.split() if comma else name.split())
    if comma:
        # "Lovelace, Ada": the given name follows the comma, whatever its count
        candidate = words[0] if words and family.strip() else None
    else:
        candidate = words[0] if len(words) >= 2 else None
    return candidate if candidate is not None and _is_a_name(candidate) else None


def _without_honorifics(words: list[str]) -> list[str]:
    start = 0
    while start < len(words) and words[start].lower().rstrip(".") in HONORIFICS:
        start += 1
    return words[start:]


def _is_a_name(word: str) -> bool:
    """Not an initial ("A." or "A"), and holds a letter."""
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2
