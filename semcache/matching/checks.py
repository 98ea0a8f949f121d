"""Verify what embeddings blur: numbers, units, versions, dates, negation, names, code.

Pure functions of two texts. ``analyze(text)`` extracts the facts of one text once (the
query's facts are reused for every candidate); each ``check_*`` compares two ``Facts`` and
returns a ``Check``. A check fails only on a *conflict* -- both sides state the thing and
they disagree, or one side names a literal (quoted string, code identifier) that the other
text lacks -- so a paraphrase that merely drops a detail passes. One-sided differences are
left to the cosine, because on QQP they separate duplicates from non-duplicates only weakly.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

from .checks_zh import ZH_CHECKS, ZhFacts, analyze_zh, multiset_minus
from .language import language_of

__all__ = [
    "CHECKS",
    "Check",
    "Facts",
    "analyze",
    "canonical",
    "check_dates",
    "check_entities",
    "check_identifiers",
    "check_language",
    "check_negation",
    "check_numbers",
    "check_opposites",
    "check_order",
    "check_question_word",
    "check_quoted",
    "check_time",
    "check_units",
    "check_versions",
    "normalize_text",
    "run_checks",
]

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*|\d+(?:[.,]\d+)*")
_NUMBER_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "dozen": 12,
    "zero": 0, "half": 0.5,
}  # "one" is left out on purpose: "which one is better" is a pronoun far more often than a count.
_NUMBER = re.compile(r"(?<![\w.])(?:[-+]?\$?\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?![.\d]*\.\d)")
# Versions: two or more dots ("1.2.3"), a "v" prefix or the word "version"; "Python 3.11"
# (a number right after a name) is added in ``analyze``.
_VERSION = re.compile(r"(?<![\w.])(?:v(\d+(?:\.\d+)*)|(\d+(?:\.\d+){2,3}))(?![\w.]*\.\d)|\bversion\s+(\d+(?:\.\d+)*)", re.I)
_MULTIPLIERS = {"k": 1e3, "m": 1e6, "mn": 1e6, "bn": 1e9, "lakh": 1e5, "lakhs": 1e5, "crore": 1e7, "crores": 1e7}
NEGATION_OVERLAP = 0.5
_FUNCTION_WORDS = frozenset("""
a an the is are was were be been am do does did i you we he she it they my your our his her its their me
to of in on at for with by from and or but if so as that this these those what which who whom whose why how
when where can could should would will shall may might must have has had there here about into than then
""".split())
_NOT_IDENTIFIER = re.compile(r"(?:[a-z]\.)+[a-z]?|e\.g|i\.e|etc|[a-z]{1,2}\.[a-z]+|.*\.(?:com|org|net|in|io)")
_YEAR = re.compile(r"(?<![\w.])(1[5-9]\d\d|20\d\d)s?(?![\w.%])")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_MONTH_ALIAS = {m[:3]: m for m in _MONTHS if m != "may"} | {"sept": "september"}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNITS = {
    "km": "km", "kms": "km", "kilometer": "km", "kilometers": "km", "kilometre": "km", "kilometres": "km",
    "mi": "mile", "mile": "mile", "miles": "mile", "m": "m", "meter": "m", "meters": "m", "metre": "m",
    "metres": "m", "cm": "cm", "mm": "mm", "ft": "ft", "feet": "ft", "foot": "ft", "inch": "in",
    "inches": "in", "kg": "kg", "kgs": "kg", "kilogram": "kg", "kilograms": "kg", "kilo": "kg", "kilos": "kg",
    "g": "g", "gram": "g", "grams": "g", "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb",
    "oz": "oz", "ounce": "oz", "ounces": "oz", "l": "l", "liter": "l", "liters": "l", "litre": "l",
    "litres": "l", "ml": "ml", "gallon": "gal", "gallons": "gal", "%": "%", "percent": "%",
    "percentage": "%", "c": "C", "celsius": "C", "f": "F", "fahrenheit": "F", "degrees": "deg",
    "second": "s", "seconds": "s", "sec": "s", "secs": "s", "minute": "min", "minutes": "min",
    "mins": "min", "hour": "h", "hours": "h", "hrs": "h", "day": "day", "days": "day", "week": "week",
    "weeks": "week", "month": "month", "months": "month", "year": "year", "years": "year",
    "dollar": "usd", "dollars": "usd", "usd": "usd", "$": "usd", "euro": "eur", "euros": "eur",
    "eur": "eur", "€": "eur", "rupees": "inr", "rs": "inr", "inr": "inr", "gb": "GB", "mb": "MB",
    "tb": "TB", "kb": "KB", "ghz": "GHz", "mhz": "MHz", "mph": "mph", "kmh": "km/h", "kph": "km/h",
    "k": "thousand", "bn": "billion", "x": "times", "times": "times",
}
# "a cup", "an hour", "a mile": one of a unit, as "1 cup" is ("half a cup" is half of one).
_ONE_OF = frozenset("""
mile kilometer kilometre meter metre foot inch yard kilogram kilo gram pound ounce ton tonne liter litre
gallon cup tablespoon teaspoon second minute hour day week month year dollar euro
""".split())
# Words naming what is measured or counted in: "seconds" vs "milliseconds", "radius" vs
# "diameter". Calendar words (day, week, month, year) are left to the time check: they name
# when as often as how much.
_MEASURES = {word: unit for word, unit in _UNITS.items() if len(word) > 2 and unit not in (
    "day", "week", "month", "year", "usd", "eur", "inr", "%", "times", "thousand", "billion", "deg")} | {
    "millisecond": "ms", "milliseconds": "ms", "microsecond": "us", "microseconds": "us", "nanosecond": "ns",
    "nanoseconds": "ns", "radius": "radius", "diameter": "diameter", "circumference": "circumference",
    "perimeter": "perimeter", "area": "area", "volume": "volume", "yard": "yd", "yards": "yd", "ton": "t",
    "tons": "t", "tonne": "t", "tonnes": "t", "cup": "cup", "cups": "cup", "tablespoon": "tbsp",
    "tablespoons": "tbsp", "teaspoon": "tsp", "teaspoons": "tsp", "kelvin": "K"}
# An arithmetic operator between two operands ("5x+6", "1/2 ÷ 1/3", "x^2 - 5x"): the operand on
# the left is a digit, a closing bracket, a superscript or a lone letter; a hyphen between words
# ("step-by-step", "x-ray") is not one.
_OPERATOR = re.compile(r"(?:(?<=[\d)²³])|(?<=[A-Za-z])(?<![A-Za-z]{2}))\s*([-+*/×÷^=−<>≤≥])\s*(?=[\d(]|[A-Za-z](?![A-Za-z]))")
_OPERATOR_NAMES = {"−": "-", "×": "*", "÷": "/"}
_UNIT_AFTER = re.compile(r"\s*(%|€|[A-Za-z]+)")
_NEGATIONS = frozenset({
    "not", "no", "never", "without", "cannot", "none", "nobody", "nothing", "neither", "nor",
    "nowhere", "unable", "isnt", "arent", "wasnt", "werent", "dont", "doesnt", "didnt", "cant",
    "couldnt", "shouldnt", "wouldnt", "wont", "havent", "hasnt", "hadnt", "mustnt",
})
_POLAR = frozenset("is are was were am do does did can could should would will shall has have had may might must".split())
_WH_WORDS = {"how": "how", "why": "why", "when": "when", "where": "where", "who": "who", "whom": "who", "whose": "who"}
_STOP_CAPS = frozenset({
    "i", "i'm", "i've", "i'd", "i'll", "what", "which", "who", "whom", "whose", "why", "how", "when",
    "where", "is", "are", "was", "were", "do", "does", "did", "can", "could", "should", "would",
    "will", "the", "a", "an", "if", "in", "on", "my", "me", "quora", "ok", "okay", "please", "hi",
    "hello", "tell", "explain", "give", "write", "list", "describe", "summarize", "translate", "show",
    "mr", "mrs", "ms", "dr", "god", "english",
} | set(_MONTHS) | set(_WEEKDAYS))
# Lowercase text is common in prompts, so capitalisation alone misses "capital of france":
# a small gazetteer of names that embeddings treat as near-synonyms catches the swaps that matter.
_GAZETTEER = frozenset("""
afghanistan albania algeria argentina armenia australia austria bangladesh belgium bhutan bolivia
brazil bulgaria cambodia canada chile china colombia croatia cuba cyprus czechia denmark egypt
estonia ethiopia finland france georgia germany ghana greece hungary iceland india indonesia iran
iraq ireland israel italy jamaica japan jordan kazakhstan kenya korea kuwait laos latvia lebanon
libya lithuania luxembourg malaysia maldives mexico mongolia morocco myanmar nepal netherlands
nigeria norway oman pakistan palestine peru philippines poland portugal qatar romania russia
rwanda serbia singapore slovakia slovenia somalia spain sri sudan sweden switzerland syria taiwan
tanzania thailand tunisia turkey uganda ukraine uruguay uzbekistan venezuela vietnam yemen zambia
zimbabwe europe asia africa america antarctica australia london paris berlin tokyo delhi mumbai
bangalore beijing shanghai moscow madrid rome sydney toronto chicago boston seattle dubai
python java javascript typescript kotlin scala ruby php perl swift rust haskell golang c++ c#
matlab sql mysql postgresql postgres mongodb redis sqlite react angular vue django flask rails
spring node.js nodejs linux ubuntu windows macos ios android aws azure gcp docker kubernetes
excel numpy pandas pytorch tensorflow iphone samsung google apple microsoft amazon facebook
twitter instagram netflix tesla uber whatsapp youtube linkedin snapchat
french german spanish italian japanese chinese mandarin cantonese korean russian portuguese arabic hindi
dutch swedish norwegian danish finnish polish greek turkish hebrew latin vietnamese thai indonesian
swedes germans italians americans canadians mexicans brazilians indians japanese australians
""".split())
_ALIASES = {"usa": "us", "u.s.": "us", "u.s": "us", "america": "us", "uk": "britain", "england": "britain",
            "js": "javascript", "golang": "go", "postgres": "postgresql", "nodejs": "node.js", "py": "python"}
_QUOTED = re.compile(r"\"([^\"]{1,200})\"|“([^”]{1,200})”|‘([^’]{1,200})’|(?<!\w)'([^']{1,200})'(?!\w)|`([^`]{1,200})`")
_IDENTIFIER = re.compile(
    r"(?<![\w.])(?:[A-Za-z_][\w]*_[\w]*|[a-z]{2,}[A-Z][A-Za-z0-9]*|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z_]\w*\(\))(?![\w])"
)
# Ids that must agree as numbers do (issue 17): hex and mixed letter-digit codes ("dedff7f7eb",
# "ORD-12345", "A1B2C3", "gpt4"), long digit runs and @usernames. A number with a unit or an
# ordinal suffix ("10km", "15k", "3pm", "2nd") is a number, checked as one.
_CODE = re.compile(r"(?<![\w@#])(?:@\w{2,}|[A-Za-z0-9][A-Za-z0-9_-]*[A-Za-z0-9])(?![\w@])")
_NUMBER_WITH_SUFFIX = re.compile(r"\d+(?:[.,]\d+)*(?:st|nd|rd|th|[a-z]{1,3})|[a-z]{1,2}\d{1,2}")


def _codes(text: str) -> frozenset[str]:
    """Return the id-like tokens of ``text``, letters and digits only, lowercased."""
    out = set()
    for m in _CODE.finditer(text):
        token = m.group()
        low = token.lower()
        squashed = re.sub(r"[^0-9a-z]", "", low)
        if token.startswith("@"):
            out.add(squashed)
        elif any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
            if not _NUMBER_WITH_SUFFIX.fullmatch(low):
                out.add(squashed)
        elif token.isdigit() and len(token) >= 6:  # an order or account number, not a quantity
            out.add(token)
    return frozenset(out)


_DIRECTIONAL = frozenset({"to", "into", "from", "than", "over", "before", "after", "beat", "beats", "vs", "versus"})
# Words with an opposite: a text stating one and the other stating its opposite ask different things.
_OPPOSITES = [
    ("ascending", "descending"), ("asc", "desc"), ("largest", "smallest"), ("biggest", "smallest"),
    ("highest", "lowest"), ("maximum", "minimum"), ("max", "min"), ("best", "worst"), ("increase", "decrease"),
    ("first", "last"), ("before", "after"), ("upper", "lower"), ("uppercase", "lowercase"), ("encrypt", "decrypt"),
    ("encode", "decode"), ("import", "export"), ("upload", "download"), ("push", "pull"), ("buy", "sell"),
    ("enable", "disable"), ("win", "lose"), ("hot", "cold"), ("faster", "slower"), ("fastest", "slowest"),
    ("cheapest", "expensive"), ("oldest", "newest"), ("longest", "shortest"), ("north", "south"), ("east", "west"),
    ("above", "below"), ("inside", "outside"), ("morning", "evening"), ("summer", "winter"), ("men", "women"),
    ("male", "female"), ("boys", "girls"), ("adults", "children"), ("formal", "informal"), ("formal", "casual"),
    ("add", "remove"), ("start", "stop"), ("open", "close"), ("local", "remote"), ("horizontal", "vertical"),
    ("positive", "negative"), ("left", "right"), ("wet", "dry"), ("rich", "poor"), ("install", "uninstall"),
    ("sunrise", "sunset"), ("plural", "singular"), ("early", "late"), ("plus", "minus"), ("add", "subtract"),
    ("multiply", "divide"), ("sum", "difference"), ("profit", "loss"), ("deposit", "withdraw"),
    ("start", "end"), ("begin", "end"), ("starts", "ends"), ("begins", "ends"), ("started", "ended"), ("began", "ended"),
    ("safe", "unsafe"), ("legal", "illegal"), ("possible", "impossible"), ("healthy", "unhealthy"),
    ("valid", "invalid"), ("correct", "incorrect"), ("likely", "unlikely"),
]
_OPPOSITE: dict[str, set[str]] = {}
for _x, _y in _OPPOSITES:
    _OPPOSITE.setdefault(_x, set()).add(_y)
    _OPPOSITE.setdefault(_y, set()).add(_x)
# Phrases naming a time, by what they mean: "today" and "right now" agree, "today" and "tomorrow" do not.
_TIMES = [
    ("now", ("today", "tonight", "right now", "now", "current", "currently", "these days", "latest", "newest", "most recent", "present")),
    ("tomorrow", ("tomorrow",)), ("yesterday", ("yesterday",)),
    ("this week", ("this week",)), ("next week", ("next week",)), ("last week", ("last week", "past week")),
    ("this weekend", ("this weekend",)), ("this month", ("this month",)), ("next month", ("next month",)),
    ("last month", ("last month", "past month")), ("this year", ("this year",)), ("next year", ("next year",)),
    ("last year", ("last year", "past year")), ("next", ("next", "upcoming", "coming")),
]
_TIME_PHRASES = sorted(((phrase, name) for name, phrases in _TIMES for phrase in phrases), key=lambda p: -len(p[0]))


@dataclass(frozen=True, slots=True)
class Check:
    """One verification run on a (query, candidate) pair; ``detail`` says why it failed."""

    name: str
    passed: bool
    detail: str = ""


def normalize_text(text: str) -> str:
    """Return ``text`` lowercased with punctuation dropped and whitespace collapsed."""
    return " ".join(w.lower().replace("’", "'") for w in _WORD.findall(text))


_CONTRACTIONS = {
    "what's": "what is", "how's": "how is", "where's": "where is", "who's": "who is", "when's": "when is",
    "it's": "it is", "that's": "that is", "there's": "there is", "i'm": "i am", "you're": "you are",
    "we're": "we are", "they're": "they are", "i've": "i have", "you've": "you have", "let's": "let us",
    "don't": "do not", "doesn't": "does not", "didn't": "did not", "can't": "cannot", "isn't": "is not",
    "aren't": "are not", "won't": "will not", "wouldn't": "would not", "shouldn't": "should not",
    "couldn't": "could not", "whats": "what is", "hows": "how is", "dont": "do not", "cant": "cannot",
}
_LEADING = tuple(f"{phrase} " for phrase in (
    "hey there", "hey", "hi there", "hi", "hello", "quick question", "question", "please", "pls", "can you tell me",
    "could you tell me", "can you please tell me", "could you please tell me", "tell me", "please tell me",
    "i was wondering", "do you know", "i want to know", "i would like to know", "i'd like to know", "can you"))
_TRAILING = tuple(f" {phrase}" for phrase in ("please", "pls", "plz", "thanks", "thank you", "thx", "thanks in advance"))
_ARTICLES = frozenset({"a", "an", "the"})


def canonical(text: str) -> str:
    """Return the form two prompts share when they differ only in case, punctuation, contractions,
    articles and politeness ("Hey, what's the capital of France?" / "what is capital of france thanks")."""
    words = [_CONTRACTIONS.get(w, w) for w in normalize_text(text).split()]
    out = " ".join(words)
    changed = True
    while changed:
        changed = False
        for lead in _LEADING:
            if out.startswith(lead):
                out, changed = out[len(lead):], True
        for trail in _TRAILING:
            if out.endswith(trail):
                out, changed = out[: -len(trail)], True
    operators = "".join(operators_of(text))  # "x^2+5x+6" and "x^2-5x+6" share their words
    return " ".join([*(w for w in out.split() if w not in _ARTICLES), *([operators] if operators else [])])


@dataclass(frozen=True, slots=True)
class Facts:
    """What the checks compare, extracted once per text by ``analyze``."""

    text: str
    lower: str
    words: tuple[str, ...]
    numbers: tuple[str, ...]          # sorted; versions and years are kept apart
    units: frozenset[tuple[str, str]]  # (number, unit) pairs: "5 km" -> ("5", "km")
    versions: frozenset[str]
    years: frozenset[str]
    months: frozenset[str]
    negated: bool
    entities: tuple[str, ...]         # in order of appearance, lowercased, aliases applied
    quoted: frozenset[str]
    identifiers: frozenset[str]
    wh_words: frozenset[str]          # leading how/why/when/where/who
    directions: frozenset[tuple[str, str]]  # the two ends of each "X to Y" / "X into a Y"
    language: str                     # ISO 639-1 (``language.language_of``)
    opposites: tuple[str, ...]        # words that have an opposite ("ascending", "plus"), sorted, repeats kept
    times: frozenset[str]             # the times named, by meaning ("now", "tomorrow", "next year")
    operators: tuple[str, ...] = ()   # arithmetic operators between operands, in order ("x^2+5x-6": ^ + -)
    measures: frozenset[str] = frozenset()  # what is measured in ("seconds", "radius"), by unit
    codes: frozenset[str] = frozenset()   # id-like tokens ("dedff7f7eb", "ord12345"), letters and digits only
    zh: ZhFacts | None = None         # the Chinese facts of a text with Chinese characters (``checks_zh``)


def _number_value(token: str) -> str:
    token = token.replace(",", "").replace("$", "").lstrip("+")
    if "." in token:
        token = token.rstrip("0").rstrip(".") or "0"
    return token


def _times(words: tuple[str, ...]) -> frozenset[str]:
    text = f" {' '.join(words)} "
    found = set()
    for phrase, name in _TIME_PHRASES:
        if f" {phrase} " in text:
            found.add(name)
            text = text.replace(f" {phrase} ", "  ")
    return frozenset(found)


def _fold(text: str) -> str:
    """Lowercase and strip accents, so "Pokémon" and "pokemon" compare equal."""
    text = text.lower().replace("’", "'")
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


# "X to Y", "X into a Y": the two words a conversion, translation or move goes between.
_TOWARDS = re.compile(r"(?=\b([^\W_]+) (?:to|into) (?:(?:a|an|the) )?([^\W_]+)\b)")


def _canonical(word: str) -> str:
    return _UNITS.get(word) or _ALIASES.get(word, word)


def _directions(words: tuple[str, ...]) -> frozenset[tuple[str, str]]:
    """The two ends of each "X to Y": the word on each side, and each side's two words written as one,
    so "snake case to camel case" and "camelcase to snake case" are seen as the reverse of each other."""
    pairs = {(_canonical(x), _canonical(y)) for x, y in _TOWARDS.findall(" ".join(words))}
    for i, w in enumerate(words):
        if w in ("to", "into") and 1 <= i and i + 1 < len(words):
            j = i + 1 + (words[i + 1] in ("a", "an", "the"))
            lefts = {words[i - 1]} | ({words[i - 2] + words[i - 1]} if i >= 2 else set())
            rights = {words[j]} | ({words[j] + words[j + 1]} if j + 1 < len(words) else set()) if j < len(words) else set()
            pairs |= {(x, y) for x in lefts for y in rights if x.isalpha() and y.isalpha()}
    return frozenset((x, y) for x, y in pairs if x != y)


def analyze(text: str) -> Facts:
    """Extract the facts that the checks compare from one text."""
    lower = _fold(text)
    raw = _WORD.findall(text)
    words = tuple(_fold(t) for t in raw)
    versions = {m.group(1) or m.group(2) or m.group(3) for m in _VERSION.finditer(text)}
    years = set(_YEAR.findall(text))
    numbers, units = [], set()
    for m in _NUMBER.finditer(text):
        value = _number_value(m.group())
        after = _UNIT_AFTER.match(text, m.end())
        suffix = after.group(1).lower() if after and after.start(1) == m.end() else ""
        if suffix in _MULTIPLIERS:  # "15k", "1.1m": one number, not a number and a unit
            value = _number_value(str(float(value) * _MULTIPLIERS[suffix]))
        if value in years or value in versions:
            continue
        numbers.append(value)
        unit = _UNITS.get(after.group(1).lower()) if after and suffix not in _MULTIPLIERS else None
        if unit == "deg":  # "30 degrees C": the scale is the word after
            scale = _UNIT_AFTER.match(text, after.end())
            unit = _UNITS.get(scale.group(1).lower(), "deg") if scale else unit
            unit = unit if unit in ("C", "F") else "deg"
        if m.group().lstrip("+-").startswith("$"):
            unit = "usd"
        if unit:
            units.add((value, unit))
    for i, w in enumerate(words):
        if w in _NUMBER_WORDS:
            value = _number_value(str(_NUMBER_WORDS[w]))
            numbers.append(value)
            if i + 1 < len(words) and words[i + 1] in _UNITS:
                units.add((value, _UNITS[words[i + 1]]))
        elif w in ("a", "an") and i + 1 < len(words) and words[i + 1] in _ONE_OF:
            if i == 0 or words[i - 1] != "half":  # "half a cup": the half is the number, already read
                numbers.append("1")
    months = {w for w in words if w in _MONTHS and w != "may"} | {_MONTH_ALIAS[w] for w in words if w in _MONTH_ALIAS}
    negated = any(w.endswith("n't") or w.replace("'", "") in _NEGATIONS for w in words)
    entities = []
    for i, (token, low) in enumerate(zip(raw, words)):
        if low in _GAZETTEER:
            entities.append(_ALIASES.get(low, low))
        elif token[:1].isupper() and i > 0 and low not in _STOP_CAPS:
            entities.append(_ALIASES.get(low, low))
        elif len(token) >= 2 and token.isupper() and low not in _STOP_CAPS:
            entities.append(_ALIASES.get(low, low))
        elif low[:1].isdigit() and i > 0 and entities and entities[-1] == _ALIASES.get(words[i - 1], words[i - 1]):
            versions.add(_number_value(low) if low.count(".") < 2 else low)  # "Python 3.11", "iOS 17"
    quoted = {" ".join(_fold(next(g for g in m.groups() if g is not None)).split()) for m in _QUOTED.finditer(text)}
    identifiers = {m.group().rstrip("()") for m in _IDENTIFIER.finditer(text)}
    identifiers = {i.lower() for i in identifiers if not _NOT_IDENTIFIER.fullmatch(i.lower())}
    wh = frozenset(_WH_WORDS[w] for w in words[:6] if w in _WH_WORDS)
    return Facts(
        text=text, lower=lower, words=words, numbers=tuple(sorted(numbers)), units=frozenset(units),
        versions=frozenset(versions), years=frozenset(years), months=frozenset(months), negated=negated,
        entities=tuple(entities), quoted=frozenset(quoted), identifiers=frozenset(identifiers),
        wh_words=wh, directions=_directions(words), language=language_of(text),
        opposites=tuple(sorted(w for w in words if w in _OPPOSITE)), times=_times(words),
        operators=operators_of(text), measures=frozenset(_MEASURES[w] for w in words if w in _MEASURES),
        codes=_codes(text),
        zh=analyze_zh(text),
    )


def operators_of(text: str) -> tuple[str, ...]:
    """Return the arithmetic operators between operands in ``text``, in order ("1/2 × 1/3": / * /)."""
    if not any(c in text for c in "+-*/×÷^=−<>≤≥"):
        return ()
    text = text.replace(">=", "≥").replace("<=", "≤")
    return tuple(_OPERATOR_NAMES.get(op, op) for op in _OPERATOR.findall(text))


def _swap(name: str, only_a, only_b) -> Check:
    """Fail when each side has something the other lacks: a contradiction, not an omission."""
    if only_a and only_b:
        return Check(name, False, f"{sorted(set(only_a))} != {sorted(set(only_b))}")
    return Check(name, True)


def check_numbers(a: Facts, b: Facts) -> Check:
    """Fail when each text has a number the other lacks ("1+1" vs "1+2"; "5 ideas" vs "10 ideas").

    An added number ("dial 100" vs "dial 100 or 911") is an omission, left to the score.
    """
    return _swap("numbers", multiset_minus(a.numbers, b.numbers), multiset_minus(b.numbers, a.numbers))


def check_units(a: Facts, b: Facts) -> Check:
    """Fail when the same number carries different units ("5 km" vs "5 miles")."""
    units_a, units_b = dict(a.units), dict(b.units)
    clashes = sorted(f"{v} {units_a[v]} != {v} {units_b[v]}" for v in units_a.keys() & units_b.keys() if units_a[v] != units_b[v])
    return Check("units", not clashes, "; ".join(clashes))


def check_versions(a: Facts, b: Facts) -> Check:
    """Fail when each text names a version the other lacks ("python 3.11" vs "3.12")."""
    return _swap("versions", a.versions - b.versions, b.versions - a.versions)


def check_dates(a: Facts, b: Facts) -> Check:
    """Fail when each text names a year (or month) the other lacks ("in 2018" vs "in 2014")."""
    for name, x, y in (("years", a.years, b.years), ("months", a.months, b.months)):
        if x - y and y - x:
            return Check("dates", False, f"{name} {sorted(x)} != {sorted(y)}")
    return Check("dates", True)


def _content(facts: Facts) -> set[str]:
    return {w for w in facts.words if w not in _FUNCTION_WORDS and w not in _NEGATIONS and not w.endswith("n't")}


def _negated_words(facts: Facts) -> set[str]:
    """Return the first content word after each negation ("without sugar" -> "sugar")."""
    out = set()
    for i, w in enumerate(facts.words):
        if w.endswith("n't") or w.replace("'", "") in _NEGATIONS:
            out.update(next(([x] for x in facts.words[i + 1:i + 4] if x not in _FUNCTION_WORDS), []))
    return out


def check_negation(a: Facts, b: Facts) -> Check:
    """Fail when one text negates what the other asserts.

    "can I eat eggs" vs "can't I eat eggs"; "with sugar" vs "without sugar". The word a
    negation governs must appear in the other text, and half of the content words must be
    shared: "find my phone without the police" vs "find my lost phone" *adds* a clause
    rather than flipping one (QQP: 4% of duplicates differ in negation somewhere).
    """
    if a.negated == b.negated:
        return Check("negation", True)
    negated, other = (a, b) if a.negated else (b, a)
    ca, cb = _content(a), _content(b)
    flipped = _negated_words(negated) & _content(other)
    if not flipped or len(ca & cb) / max(len(ca | cb), 1) < NEGATION_OVERLAP:
        return Check("negation", True, "negation differs, wording too")
    return Check("negation", False, f"negated {sorted(flipped)} in " + ("query" if a.negated else "candidate") + " only")


def _present(entity: str, facts: Facts) -> bool:
    if entity in facts.lower or entity in facts.entities:
        return True
    if len(entity) >= 4 and any(len(w) >= 4 and (w.startswith(entity) or entity.startswith(w)) for w in facts.words):
        return True  # "gandhi" / "gandhiji", "americans" / "america"
    initials = "".join(w[0] for w in facts.words)
    return entity.isalpha() and 2 <= len(entity) <= 5 and entity in initials  # "wwi" / "world war i"


def check_entities(a: Facts, b: Facts) -> Check:
    """Fail when each text names something the other lacks (a swap: "France" vs "Spain").

    A name present on one side only ("Trump" vs "Donald Trump") passes: it is a detail, not
    a contradiction.
    """
    return _swap("entities", [e for e in a.entities if not _present(e, b)], [e for e in b.entities if not _present(e, a)])


def _squash(text: str) -> str:
    return "".join(text.split())


def check_quoted(a: Facts, b: Facts) -> Check:
    """Fail when each text quotes a string the other text lacks ("'ephemeral'" vs "'ethereal'")."""
    sa, sb = _squash(a.lower), _squash(b.lower)
    return _swap("quoted", [q for q in a.quoted if _squash(q) not in sb], [q for q in b.quoted if _squash(q) not in sa])


def check_identifiers(a: Facts, b: Facts) -> Check:
    """Fail when each text names an identifier the other lacks: code (snake_case, camelCase,
    dotted.name, call()) or an id (hex, a letter-digit code, a long digit run, an @username)."""
    sa, sb = re.sub(r"[^0-9a-z]", "", a.lower), re.sub(r"[^0-9a-z]", "", b.lower)
    only_a = [i for i in a.identifiers if i not in b.lower] + [c for c in a.codes if c not in sb]
    only_b = [i for i in b.identifiers if i not in a.lower] + [c for c in b.codes if c not in sa]
    return _swap("identifiers", only_a, only_b)


def check_question_word(a: Facts, b: Facts) -> Check:
    """Fail when both questions lead with wh-words (how/why/when/where/who) and share none.

    "what" and "which" are left out: "what is the best way to X" paraphrases "how do I X".
    "where and how is X made" shares "how" with "how is X made", so it passes.
    """
    if a.wh_words and b.wh_words and not a.wh_words & b.wh_words:
        return Check("question_word", False, f"{sorted(a.wh_words)} != {sorted(b.wh_words)}")
    # "Why is X unsafe?" presumes what "Is X safe?" asks: a reason is not a yes or a no.
    for x, y in ((a, b), (b, a)):
        if x.wh_words == {"why"} and not y.wh_words and y.words[:1] and y.words[0] in _POLAR:
            return Check("question_word", False, f"why vs a yes/no question ({y.words[0]!r})")
    return Check("question_word", True)


def check_language(a: Facts, b: Facts) -> Check:
    """Fail when the texts are in different languages (``language.language_of``: the script, then word frequencies)."""
    if a.language != b.language:
        return Check("language", False, f"{a.language} != {b.language}")
    return Check("language", True)


def check_opposites(a: Facts, b: Facts) -> Check:
    """Fail when one text says a word more often than the other and the other says its opposite
    more often ("sort ascending" vs "sort descending"; "x plus 5x plus 6" vs "x minus 5x plus 6")."""
    more_a, more_b = multiset_minus(a.opposites, b.opposites), multiset_minus(b.opposites, a.opposites)
    for word in more_a:
        clash = _OPPOSITE[word] & set(more_b)
        if clash:
            return Check("opposites", False, f"{word} vs {sorted(clash)[0]}")
    return Check("opposites", True)


def check_operators(a: Facts, b: Facts) -> Check:
    """Fail when each expression has an operator the other lacks ("x^2 + 5x + 6" vs "x^2 - 5x + 6",
    "1/2 × 1/3" vs "1/2 ÷ 1/3"); an operator one side drops ("= 0") is an omission."""
    return _swap("operators", multiset_minus(a.operators, b.operators), multiset_minus(b.operators, a.operators))


def check_measures(a: Facts, b: Facts) -> Check:
    """Fail when each text measures in something the other does not ("milliseconds in an hour" vs
    "seconds in an hour", "area from the radius" vs "area from the diameter")."""
    return _swap("measures", a.measures - b.measures, b.measures - a.measures)


def check_time(a: Facts, b: Facts) -> Check:
    """Fail when both texts name a time and no time they name agrees ("today" vs "tomorrow",
    "this year" vs "next year"); "today" and "right now", "next" and "upcoming" agree."""
    if a.times and b.times and not a.times & b.times:
        return Check("time", False, f"{sorted(a.times)} != {sorted(b.times)}")
    return Check("time", True)


def _key_sequence(facts: Facts) -> list[str]:
    keys = set(facts.entities) | {w for w in facts.words if len(w) > 2 and w in _UNITS}
    return list(dict.fromkeys(_ALIASES.get(w, w) for w in facts.words if _ALIASES.get(w, w) in keys))


def check_order(a: Facts, b: Facts) -> Check:
    """Fail when the same names, or the two ends of an "X to Y", appear swapped.

    "convert celsius to fahrenheit" vs "convert fahrenheit to celsius"; "is X faster than Y"
    vs "is Y faster than X"; "convert a list to a tuple" vs "a tuple to a list" (any two
    words around "to"/"into", seen in one direction in each text and not both in either).
    Symmetric questions ("X vs Y differences") are not directional.
    """
    seq_a, seq_b = _key_sequence(a), _key_sequence(b)
    directional = _DIRECTIONAL & set(a.words) and _DIRECTIONAL & set(b.words)
    if directional and len(seq_a) >= 2 and set(seq_a) == set(seq_b) and seq_a != seq_b:
        if "vs" in a.words or "versus" in a.words or "between" in a.words:
            return Check("order", True)
        return Check("order", False, f"{seq_a} vs {seq_b}")
    for x, y in a.directions - b.directions:
        if (y, x) in b.directions and (y, x) not in a.directions:
            return Check("order", False, f"{x} to {y} vs {y} to {x}")
    return Check("order", True)


CHECKS: dict[str, Callable[[Facts, Facts], Check]] = {
    "numbers": check_numbers,
    "units": check_units,
    "versions": check_versions,
    "dates": check_dates,
    "negation": check_negation,
    "entities": check_entities,
    "quoted": check_quoted,
    "identifiers": check_identifiers,
    "question_word": check_question_word,
    "language": check_language,
    "order": check_order,
    "opposites": check_opposites,
    "time": check_time,
    "operators": check_operators,
    "measures": check_measures,
}




def _reading_chinese(name: str, check: Callable[[Facts, Facts], Check]) -> Callable[[Facts, Facts], Check]:
    """Return ``check``, run as ``checks_zh`` reads it when both texts are Chinese."""
    chinese = ZH_CHECKS[name]

    def run(a: Facts, b: Facts) -> Check:
        if a.zh is not None and b.zh is not None:
            detail = chinese(a.zh, b.zh)
            return Check(name, detail is None, detail or "")
        return check(a, b)

    run.__doc__ = check.__doc__
    return run


CHECKS["person"] = lambda a, b: Check("person", True)  # who is asking: read in Chinese only (checks_zh.person)
CHECKS.update({name: _reading_chinese(name, CHECKS[name]) for name in ZH_CHECKS})


def run_checks(a: Facts, b: Facts, names=tuple(CHECKS)) -> tuple[Check, ...]:
    """Run the named checks on two analysed texts, in order."""
    return tuple(CHECKS[name](a, b) for name in names)
