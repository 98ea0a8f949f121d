"""Synthetic training pairs for the pair classifier: one-detail edits (negatives) and style rewrites (positives).

Hand-written near misses teach the classifier which details matter, but only in the words
they happen to use. These rules make more of both kinds from any training text (the prompt
benchmark's *train* split and QQP's training part, never an evaluation set):

- ``near_miss(text, rng)`` changes one detail so that the answer changes: a number, a year, a
  version, a unit, a named thing (from small word classes: countries, cities, languages,
  programming languages, products), an antonym (ascending/descending, largest/smallest), a
  time (today/tomorrow, this/next year), a person (my/your, he/she), the two ends of
  "X to Y", or a negation;
- ``paraphrase(text, rng)`` rewrites the form but not the request: lower case without
  punctuation, a typo, a politeness wrapper, a contraction, an instruction form
  (``prompt_styles.rewrite``).

Both return ``None`` when no rule applies. Word lists are generic English, chosen before any
evaluation data was read.
"""

from __future__ import annotations

import random
import re

from benchmarks.prompt_styles import rewrite

__all__ = ["near_miss", "paraphrase"]

_CLASSES = [
    "france germany spain italy japan china india brazil canada mexico russia egypt australia norway sweden poland "
    "turkey greece portugal ireland kenya nigeria argentina chile vietnam thailand korea".split(),
    "paris berlin madrid rome tokyo london beijing delhi toronto sydney moscow cairo dubai chicago boston seattle "
    "lisbon vienna prague amsterdam dublin oslo".split(),
    "english french spanish german italian japanese chinese korean russian portuguese arabic hindi dutch".split(),
    "python javascript java typescript rust go ruby php kotlin swift scala haskell perl c++".split(),
    "windows linux macos ubuntu android ios".split(),
    "mysql postgresql sqlite mongodb redis oracle".split(),
    "react vue angular django flask rails spring laravel".split(),
    "iphone ipad macbook pixel galaxy kindle".split(),
    "dog cat rabbit hamster parrot horse".split(),
    "monday tuesday wednesday thursday friday saturday sunday".split(),
    "january february march april june july august september october november december".split(),
    "protein fiber sugar caffeine calcium iron vitamin".split(),
    "list dictionary tuple set array string".split(),
]
_CLASS_OF = {word: words for words in _CLASSES for word in words}
_SWAPS = [  # (word, its opposite); both directions
    ("ascending", "descending"), ("largest", "smallest"), ("biggest", "smallest"), ("highest", "lowest"),
    ("maximum", "minimum"), ("max", "min"), ("best", "worst"), ("more", "less"), ("increase", "decrease"),
    ("first", "last"), ("before", "after"), ("upper", "lower"), ("uppercase", "lowercase"), ("encrypt", "decrypt"),
    ("import", "export"), ("upload", "download"), ("push", "pull"), ("buy", "sell"), ("add", "remove"),
    ("enable", "disable"), ("open", "close"), ("start", "stop"), ("win", "lose"), ("hot", "cold"),
    ("faster", "slower"), ("cheapest", "most expensive"), ("oldest", "newest"), ("longest", "shortest"),
    ("north", "south"), ("east", "west"), ("left", "right"), ("above", "below"), ("inside", "outside"),
    ("today", "tomorrow"), ("yesterday", "today"), ("this week", "next week"), ("this year", "last year"),
    ("next month", "last month"), ("latest", "first"), ("current", "previous"), ("morning", "evening"),
    ("summer", "winter"), ("spring", "autumn"), ("my", "your"), ("he", "she"), ("his", "her"), ("him", "her"),
    ("men", "women"), ("boys", "girls"), ("adults", "children"), ("formal", "casual"), ("short", "long"),
    ("with", "without"), ("always", "never"), ("can", "can't"), ("should", "shouldn't"), ("is", "isn't"),
    ("do", "don't"), ("does", "doesn't"), ("will", "won't"),
]
_SWAP = {a: b for a, b in _SWAPS} | {b: a for a, b in _SWAPS}
_UNITS = [("km", "miles"), ("kilometers", "miles"), ("kg", "lbs"), ("kilograms", "pounds"), ("celsius", "fahrenheit"),
          ("cm", "inches"), ("meters", "feet"), ("liters", "gallons"), ("gb", "mb"), ("hours", "minutes"),
          ("days", "weeks"), ("dollars", "euros"), ("usd", "eur"), ("grams", "ounces"), ("mph", "km/h")]
_UNIT = {a: b for a, b in _UNITS} | {b: a for a, b in _UNITS}
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.]*\d)")
_YEAR = re.compile(r"\b(19[5-9]\d|20[0-4]\d)\b")
_VERSION = re.compile(r"\b(\d+)\.(\d+)\b")
_TOWARDS = re.compile(r"\b([A-Za-z]+) (to|into) ([A-Za-z]+)\b")
_WORD = re.compile(r"[A-Za-z][A-Za-z+']*")
_STOP = frozenset("a an the to of in on for and or is are be how what".split())


def _match_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def _replace_word(text: str, rng: random.Random, choose) -> str | None:
    spans = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text) if choose(m.group().lower()) is not None]
    if not spans:
        return None
    start, end, word = rng.choice(spans)
    return text[:start] + _match_case(choose(word.lower()), word) + text[end:]


def _number(text: str, rng: random.Random) -> str | None:
    spans = [m for m in _NUMBER.finditer(text) if not _YEAR.fullmatch(m.group())]
    if not spans:
        return None
    m = rng.choice(spans)
    value = float(m.group())
    new = rng.choice([value + rng.randint(1, 9), value * rng.choice([2, 3, 10]), max(0.0, value - rng.randint(1, 5))])
    if new == value:
        new = value + 1
    new_text = f"{new:g}" if "." in m.group() else str(int(new))
    return text[:m.start()] + new_text + text[m.end():]


def _year(text: str, rng: random.Random) -> str | None:
    spans = list(_YEAR.finditer(text))
    if not spans:
        return None
    m = rng.choice(spans)
    return text[:m.start()] + str(int(m.group()) + rng.choice([-3, -2, -1, 1, 2])) + text[m.end():]


def _version(text: str, rng: random.Random) -> str | None:
    spans = list(_VERSION.finditer(text))
    if not spans:
        return None
    m = rng.choice(spans)
    return text[:m.start()] + f"{m.group(1)}.{int(m.group(2)) + rng.choice([1, 2])}" + text[m.end():]


def _entity(text: str, rng: random.Random) -> str | None:
    return _replace_word(text, rng, lambda w: rng.choice([x for x in _CLASS_OF[w] if x != w]) if w in _CLASS_OF else None)


def _unit(text: str, rng: random.Random) -> str | None:
    return _replace_word(text, rng, _UNIT.get)


def _opposite(text: str, rng: random.Random) -> str | None:
    for phrase in sorted((p for p in _SWAP if " " in p), key=len, reverse=True):
        if phrase in text.lower():
            i = text.lower().index(phrase)
            return text[:i] + _SWAP[phrase] + text[i + len(phrase):]
    return _replace_word(text, rng, _SWAP.get)


def _direction(text: str, rng: random.Random) -> str | None:
    spans = [m for m in _TOWARDS.finditer(text) if m.group(1).lower() not in _STOP and m.group(3).lower() not in _STOP
             and m.group(1).lower() != m.group(3).lower()]
    if not spans:
        return None
    m = rng.choice(spans)
    return text[:m.start()] + f"{m.group(3)} {m.group(2)} {m.group(1)}" + text[m.end():]


_NEAR_MISSES = {"number": _number, "year": _year, "version": _version, "entity": _entity, "unit": _unit,
                "opposite": _opposite, "direction": _direction}


def near_miss(text: str, rng: random.Random) -> tuple[str, str] | None:
    """Return (text with one detail changed, the kind of change), or None when no rule applies."""
    kinds = list(_NEAR_MISSES)
    rng.shuffle(kinds)
    for kind in kinds:
        changed = _NEAR_MISSES[kind](text, rng)
        if changed is not None and changed.lower() != text.lower():
            return changed, kind
    return None


_WRAPPERS = ("hey, {q}", "{q} thanks", "{q} pls", "Quick question - {q}", "can you help? {q}", "{q} thank you!",
             "I was wondering, {q}", "Hi! {q}", "{q}??", "please: {q}")
_CONTRACTIONS = [("what is", "what's"), ("how is", "how's"), ("do not", "don't"), ("i am", "i'm"), ("it is", "it's"),
                 ("cannot", "can't"), ("that is", "that's"), ("where is", "where's")]


def _typo(text: str, rng: random.Random) -> str | None:
    words = [m for m in re.finditer(r"[A-Za-z]{5,}", text)]
    if not words:
        return None
    m = rng.choice(words)
    word = m.group()
    i = rng.randrange(1, len(word) - 2)
    broken = rng.choice([word[:i] + word[i + 1] + word[i] + word[i + 2:], word[:i] + word[i + 1:], word[:i] + word[i] + word[i:]])
    return text[:m.start()] + broken + text[m.end():]


def _bare(text: str, rng: random.Random) -> str | None:
    return re.sub(r"[^\w\s'+#%$-]", "", text).lower().strip() or None


def _wrap(text: str, rng: random.Random) -> str | None:
    return rng.choice(_WRAPPERS).format(q=text[:1].lower() + text[1:] if rng.random() < 0.5 else text)


def _contract(text: str, rng: random.Random) -> str | None:
    lower = text.lower()
    for long, short in _CONTRACTIONS:
        if long in lower:
            i = lower.index(long)
            return text[:i] + short + text[i + len(long):]
        if short in lower:
            i = lower.index(short)
            return text[:i] + long + text[i + len(short):]
    return None


def _instruction(text: str, rng: random.Random) -> str | None:
    return rewrite(text, rng)


_PARAPHRASES = (_typo, _bare, _wrap, _contract, _instruction)


def paraphrase(text: str, rng: random.Random) -> str | None:
    """Return ``text`` in another form that asks the same thing (one or two rewrites), or None."""
    rules = list(_PARAPHRASES)
    rng.shuffle(rules)
    out = text
    for rule in rules[: rng.choice([1, 1, 2])]:
        changed = rule(out, rng)
        if changed:
            out = changed
    return out if out != text else None
