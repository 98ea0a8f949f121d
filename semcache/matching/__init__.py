"""Decide whether a stored entry answers a new query: checks, scores, the policy cascade, metrics.

Pure logic apart from the pair classifier's model file; nothing here touches a store or a network.
"""

from .policy import Candidate, Decision, MatchPolicy

__all__ = ["Candidate", "Decision", "MatchPolicy"]
