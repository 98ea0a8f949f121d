"""Guess the language of a prompt, cheaply: the script first, then how common its words are where.

Pure logic over one small data file. The semantic tier answers only languages its model
reads (``MatchPolicy.languages``): all-MiniLM-L6-v2 maps Chinese, Japanese and Korean
characters to ``[UNK]`` -- every Chinese prompt embeds alike -- and its Spanish vectors cannot
tell a paraphrase from a near miss (LCQMC ROC-AUC 0.64; see docs/languages.md), so by default
only English gets semantic hits.

``language_of`` returns an ISO 639-1 code. Non-Latin scripts are decided by the script (Han
"zh", kana "ja", Hangul "ko", Cyrillic "ru", Arabic "ar", Devanagari "hi", Greek "el",
Hebrew "he", Thai "th"). Latin-script text is scored against word frequencies of English,
Spanish, French, German, Portuguese and Italian (``semcache/data/languages.json.gz``, the
12,000 commonest words of each from the ``wordfreq`` lists, written by
``benchmarks/make_language_profiles.py``): each word adds its Zipf frequency in a language, a
word a language lacks adds a floor. Another language must beat English clearly; text with no
evidence either way ("python sort list desc", "capital australia") counts as English.
"""

from __future__ import annotations

import gzip
import json
import re
from functools import lru_cache
from importlib import resources

__all__ = ["LATIN_LANGUAGES", "language_of"]

_SCRIPTS = (  # (first code point, last code point, language)
    (0x3040, 0x30FF, "ja"), (0x31F0, 0x31FF, "ja"), (0xAC00, 0xD7AF, "ko"), (0x1100, 0x11FF, "ko"),
    (0x4E00, 0x9FFF, "zh"), (0x3400, 0x4DBF, "zh"), (0xF900, 0xFAFF, "zh"), (0x0400, 0x04FF, "ru"),
    (0x0600, 0x06FF, "ar"), (0x0900, 0x097F, "hi"), (0x0370, 0x03FF, "el"), (0x0590, 0x05FF, "he"),
    (0x0E00, 0x0E7F, "th"),
)
LATIN_LANGUAGES = ("en", "es", "fr", "de", "pt", "it")
_TOKEN = re.compile(r"[^\W\d_]+")
# A word a language's list lacks scores as a rare word of it (Zipf 1: once per 100M words).
_FLOOR = 1.0
# Another language wins only with this much more evidence than English (Zipf points): one
# shared word ("capital", "python") never decides, two clearly foreign ones do.
_MARGIN = 3.0


@lru_cache(maxsize=1)
def _profiles() -> dict[str, dict[str, float]]:
    raw = resources.files("semcache").joinpath("data", "languages.json.gz").read_bytes()
    return json.loads(gzip.decompress(raw))["languages"]


def _script_language(text: str) -> str | None:
    counts: dict[str, int] = {}
    for ch in text:
        code = ord(ch)
        if code < 0x0370:
            continue
        for first, last, lang in _SCRIPTS:
            if first <= code <= last:
                counts[lang] = counts.get(lang, 0) + 1
                break
    if not counts:
        return None
    if counts.get("ja"):  # Japanese mixes kana with Han characters
        return "ja"
    return max(counts, key=counts.get)


@lru_cache(maxsize=8192)
def language_of(text: str) -> str:
    """Return the ISO 639-1 code of ``text``'s language (see the module docstring for how)."""
    script = _script_language(text)
    if script is not None:
        return script
    words = _TOKEN.findall(text.lower().replace("’", "'"))
    if not words:
        return "en"
    profiles = _profiles()
    scores = {lang: sum(profiles[lang].get(w, _FLOOR) for w in words) for lang in LATIN_LANGUAGES}
    best = max(LATIN_LANGUAGES, key=lambda lang: (scores[lang], lang == "en"))
    return best if best != "en" and scores[best] >= scores["en"] + _MARGIN else "en"
