"""What the ``usage`` of an answer the sidecar did not buy says (#18 item 7).

A hit, a stale answer and a coalesced one (a follower of an identical call in flight) cost no
upstream tokens. Cost trackers (LiteLLM, Langfuse, Helicone, an app's own meter) price an answer
from its ``usage``; replayed as stored, every hit would be billed again. OpenAI's own
``prompt_tokens_details.cached_tokens`` does not fit: it marks *prompt* tokens read from the
provider's prompt cache, still billed at a discount, and the completion in full.

So with ``hit_usage = "zero"`` (the default) such an answer's ``usage`` keeps every field it was
stored with (clients that read ``usage.prompt_tokens`` or ``usage.total_tokens`` keep working:
the fields are there, integers), each count set to 0 -- what this request cost -- and the stored
counts move to ``usage.semcache.saved`` (the tokens the cache saved; the openai SDK exposes it
as ``usage.model_extra["semcache"]``). ``hit_usage = "stored"`` replays the stored ``usage``
unchanged (for callers that want the original counts where they were).
"""

from __future__ import annotations

from typing import Any

__all__ = ["HIT_USAGE", "served_usage"]

HIT_USAGE = ("zero", "stored")


def _zeroed(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return 0
    if isinstance(value, dict):
        return {k: _zeroed(v) for k, v in value.items()}
    return value


def served_usage(response: Any, mode: str = "zero") -> Any:
    """Return ``response`` (an answer not bought upstream) with the ``usage`` that ``mode`` says."""
    if mode == "stored" or not isinstance(response, dict) or not isinstance(response.get("usage"), dict):
        return response
    usage = response["usage"]
    return {**response, "usage": {**_zeroed(usage), "semcache": {"saved": usage}}}
