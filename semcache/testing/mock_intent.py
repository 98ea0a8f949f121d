"""The mock upstream's answers by intent: one answer per group of a labelled file, worded anew per request.

A support bot answers every question of one intent with one answer, but a language model
words it differently each time. ``IntentAnswers`` does the same for a labelled stream
(``{"text", "group"}`` lines, e.g. Banking77): each group gets a fixed set of facts -- a topic,
a team, an app menu, and for most groups a number of days, a fee or a help-article reference
-- drawn from a hash of the group's name, and each request gets those facts in its own framing,
sentence order and synonyms, drawn from a hash of the request. So two answers to one intent
share every fact and few sentences, and two answers to neighbouring intents share the framing
and often a team or menu, but not the topic and rarely a number: what the answer judge
(``semcache.matching.answers``) must tell apart.

A text the file does not hold (after ``normalize``) gets no intent answer (``answer`` returns
None); the mock then answers as it always does. ``semcache mock-upstream --intents FILE``
serves it; benchmarks call it in process.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Iterable, Mapping

from semcache.errors import ConfigError

__all__ = ["IntentAnswers", "normalize"]

_SPACE = re.compile(r"\s+")

_OPENERS = ("", "Thanks for reaching out. ", "Happy to help. ", "Good question. ", "Sure. ", "Thanks for asking. ",
            "Here is what you need to know. ", "Of course. ")
_TOPIC = ("About {topic}: ", "Regarding {topic}, ", "On {topic}: ", "When it comes to {topic}, ", "For {topic}, ")
_CLOSERS = ("", " Let us know if anything else comes up.", " Is there anything else we can help with?",
            " We hope this helps.", " Feel free to reply if you have more questions.")
_FACTS = {
    "team": ("our {team} team handles this.", "this is handled by the {team} team.",
             "the {team} team can sort this out for you.", "you will be helped by our {team} team."),
    "menu": ("In the app, open {menu}.", "Go to {menu} in the app.", "You can do this from {menu} in the app.",
             "Open the app and choose {menu}."),
    "days": ("It usually takes {days} working days.", "Expect about {days} business days.",
             "Allow up to {days} working days.", "This normally takes {days} business days."),
    "fee": ("There is a fee of ${fee}.", "A charge of ${fee} applies.", "You will be charged ${fee}.",
            "The cost is ${fee}."),
    "article": ("See help article {article} for details.", "Help article {article} explains the details.",
                "Details are in article {article} of our help centre.", "Article {article} covers this step by step."),
}
_TEAMS = ("cards", "payments", "transfers", "security", "accounts", "top-up", "exchange", "identity",
          "disputes", "support", "billing", "compliance")
_MENUS = ("Settings > Cards", "Payments > History", "Account > Details", "Cards > Freeze", "Transfers > New",
          "Profile > Verify", "Help > Chat", "Wallet > Top up", "Security > PIN", "Exchange > Rates",
          "Statements > Download", "Card > Replace", "Account > Close", "Limits > Change", "Devices > Manage")


def normalize(text: str) -> str:
    """Return ``text`` lower-cased with runs of white space as one space (how the file is keyed)."""
    return _SPACE.sub(" ", str(text)).strip().lower()


def _rng(*parts: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big"))


class IntentAnswers:
    """Answer texts of known groups with their group's one answer, reworded per request.

    ``groups`` maps a text (as ``normalize`` writes it) to its group. ``answer(text, salt)``
    returns the group's answer worded by ``salt`` (the request's digest: the same request gets
    the same wording), or None for a text of no group.
    """

    def __init__(self, groups: Mapping[str, str]) -> None:
        self._groups = {normalize(text): str(group) for text, group in groups.items()}
        self._facts: dict[str, dict[str, str]] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def __repr__(self) -> str:
        return f"IntentAnswers(texts={len(self._groups)}, groups={len(set(self._groups.values()))})"

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> "IntentAnswers":
        return cls(dict(pairs))

    @classmethod
    def from_file(cls, path: str | Path, *, text: str = "text", group: str = "group") -> "IntentAnswers":
        """Read a JSONL file of ``{text: ..., group: ...}`` lines; raise ``ConfigError`` naming a bad line."""
        groups: dict[str, str] = {}
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read the intents file {str(path)!r}: {exc}") from exc
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                groups[normalize(row[text])] = str(row[group])
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{number}: expected a JSON object with {text!r} and {group!r} fields "
                                  f"({type(exc).__name__}: {exc})") from exc
        if not groups:
            raise ConfigError(f"the intents file {str(path)!r} holds no {{{text!r}, {group!r}}} lines")
        return cls(groups)

    def group_of(self, text: str) -> str | None:
        return self._groups.get(normalize(text))

    def facts(self, group: str) -> dict[str, str]:
        """Return the fixed facts of a group (a pure function of its name)."""
        known = self._facts.get(group)
        if known is None:
            rng = _rng("intent-facts", group)
            known = {"topic": group.replace("_", " ").replace("-", " ").strip().lower(), "team": rng.choice(_TEAMS),
                     "menu": rng.choice(_MENUS)}
            extra = rng.sample(("days", "fee", "article"), k=rng.choice((0, 1, 1, 2)))
            if "days" in extra:
                known["days"] = str(rng.randint(2, 30))
            if "fee" in extra:
                known["fee"] = f"{rng.randint(1, 40)}.{rng.choice(('00', '50', '99'))}"
            if "article" in extra:
                known["article"] = f"HC-{rng.randint(1000, 9999)}"
            self._facts[group] = known
        return known

    def worded(self, group: str, salt: str | bytes) -> str:
        """Return the group's answer in the wording ``salt`` picks."""
        facts = self.facts(group)
        rng = _rng("intent-wording", group, salt.hex() if isinstance(salt, bytes) else str(salt))
        sentences = [rng.choice(_FACTS[kind]).format(**facts) for kind in ("team", "menu", "days", "fee", "article")
                     if kind in facts or kind in ("team", "menu")]
        rng.shuffle(sentences)
        lead = rng.choice(_TOPIC).format(topic=facts["topic"])
        first = sentences[0]
        body = " ".join([lead + first[0].lower() + first[1:]] + [s[0].upper() + s[1:] for s in sentences[1:]])
        return rng.choice(_OPENERS) + body + rng.choice(_CLOSERS)

    def answer(self, text: str, salt: str | bytes = b"") -> str | None:
        """Return the answer to ``text``'s group worded by ``salt``, or None when ``text`` has no group."""
        group = self.group_of(text)
        return None if group is None else self.worded(group, salt)
