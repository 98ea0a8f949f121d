"""Prompt-style rewrites of forum questions, for training the embedding adapter.

QQP teaches the adapter what makes two *forum questions* the same, but people send chatbots
the same question as an instruction ("Explain how to ..."), with a polite wrapper ("Can you
tell me ..."), or tersely, in lower case and without punctuation. ``rewrite`` turns one
question into such a form with the same intent, using rules on its first words only (no
model, no word lists from any evaluation set); ``augment`` applies it to labelled pairs:

- a duplicate pair stays a duplicate when one side is rewritten, a non-duplicate stays a
  non-duplicate (so the adapter learns that a wrapper neither makes nor breaks a match);
- a question and its own rewrite are added as a duplicate pair (``self_share`` of the pairs).

The texts come from the training pairs only; held-out pairs are never touched.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from semcache.tools.data import Pair

__all__ = ["augment", "rewrite"]

# "How do I X?" and friends: the instruction forms of a how-to question.
_HOW_TO = re.compile(r"^how (?:do|can|should|could|would) (?:i|we|you|one) (?P<rest>.+?)\??$", re.IGNORECASE)
_HOW_TO_SHORT = re.compile(r"^how to (?P<rest>.+?)\??$", re.IGNORECASE)
# "What is/are X?": the thing asked about.
_WHAT_IS = re.compile(r"^what (?:is|are|'s) (?P<rest>.+?)\??$", re.IGNORECASE)
_WHAT_IS_CONTRACTED = re.compile(r"^what's (?P<rest>.+?)\??$", re.IGNORECASE)

_HOW_TO_FORMS = ("How to {rest}?", "Explain how to {rest}.", "Tell me how to {rest}.", "Steps to {rest}?",
                 "how to {rest}", "What's the way to {rest}?")
_WHAT_IS_FORMS = ("Tell me {rest}.", "{rest}?", "Explain {rest}.", "I want to know {rest}.")
_WRAPPERS = ("Can you tell me: {q}", "Quick question: {q}", "Please answer this: {q}", "I'd like to know: {q}",
             "{q} Please explain.", "{q} Thanks!", "Hey, {lower}", "{bare}", "Question: {q}", "{q} Answer briefly.")


def _bare(question: str) -> str:
    """Lower case, no trailing punctuation: how people type into a chat box."""
    return re.sub(r"[?.!\s]+$", "", question.strip()).lower()


def rewrite(question: str, rng: random.Random) -> str:
    """Return a prompt-style form of ``question`` that asks the same thing."""
    question = " ".join(question.split())
    for pattern, forms in ((_HOW_TO, _HOW_TO_FORMS), (_HOW_TO_SHORT, _HOW_TO_FORMS),
                           (_WHAT_IS, _WHAT_IS_FORMS), (_WHAT_IS_CONTRACTED, _WHAT_IS_FORMS)):
        match = pattern.match(question) if question.count("?") <= 1 else None
        if match and rng.random() < 0.7:
            rest = match["rest"].strip()
            return rng.choice(forms).format(rest=rest)
    form = rng.choice(_WRAPPERS)
    lower = question[:1].lower() + question[1:]
    return form.format(q=question, lower=lower, bare=_bare(question))


def augment(pairs: Sequence[Pair], seed: int = 0, share: float = 0.3, self_share: float = 0.1) -> list[Pair]:
    """Return ``pairs`` with ``share`` of them given one rewritten side, plus self-pairs.

    Labels are kept: rewriting changes the form, never the intent. ``self_share`` x len(pairs)
    (question, rewrite) duplicates are appended, drawn from distinct questions.
    """
    rng = random.Random(seed)
    out: list[Pair] = []
    for a, b, label in pairs:
        if rng.random() < share:
            if rng.random() < 0.5:
                a = rewrite(a, rng)
            else:
                b = rewrite(b, rng)
        out.append((a, b, label))
    questions = sorted({text for a, b, _ in pairs for text in (a, b)})
    for question in rng.sample(questions, min(len(questions), int(self_share * len(pairs)))):
        out.append((question, rewrite(question, rng), 1))
    rng.shuffle(out)
    return out
