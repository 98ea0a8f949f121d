"""Decide whether a stored entry answers a new query: the checks, the policy, language detection.

Pure logic: nothing here touches a store, a network or a model.
"""

from .policy import Candidate, Decision, MatchPolicy

__all__ = ["Candidate", "Decision", "MatchPolicy"]
