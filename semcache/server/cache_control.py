"""Per-request cache controls, spelled as the peers (Helicone, Portkey, LiteLLM) and HTTP spell them.

Pure functions of the request's headers:

- ``Cache-Control: no-cache`` (do not look up), ``no-store`` (do not store), ``max-age=N``: store this
  request's answer for N seconds, and accept no cached answer older than N seconds (``max-age=0``:
  neither, as no-cache + no-store).
- ``x-semcache-namespace: NAME`` joins the partition: answers are shared only within a namespace
  (per app, per feature, per prompt version), inside the caller's tenant.
- ``x-semcache-bucket: N`` joins the partition too: a seed for deliberate variety. Send buckets 0..k-1
  (say, at random) and the cache keeps up to k different answers to the same question.
- ``anthropic-beta`` (Messages API) changes what Claude answers: it joins the partition, and is
  forwarded with the request (``upstream.anthropic.forwarding``).

A value that cannot be used is a ``RequestError`` naming the header (a 400 in the API's shape).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from ..errors import RequestError

__all__ = ["BETA_HEADER", "NAMESPACE_HEADER", "BUCKET_HEADER", "max_age", "partition_extras", "with_partition"]

NAMESPACE_HEADER = "x-semcache-namespace"
BUCKET_HEADER = "x-semcache-bucket"
BETA_HEADER = "anthropic-beta"
_LABEL = re.compile(r"[\x21-\x7e]{1,128}")  # visible ASCII, as a header value can carry it
_BETAS = re.compile(r"[\x20-\x7e]{1,1000}")
_PARTITION_FIELD = "semcache_partition"  # the keyed body's extra field (never sent upstream)


def max_age(directives: set[str]) -> float | None:
    """Return the seconds of a ``max-age=N`` directive (None when absent); raise ``RequestError`` for a bad N."""
    values = [d.split("=", 1)[1].strip().strip('"') for d in directives if d.split("=", 1)[0].strip() == "max-age" and "=" in d]
    if not values:
        return None
    if len(set(values)) > 1 or not values[0].isdigit() or len(values[0]) > 12:
        raise RequestError(f"Cache-Control max-age must be one whole number of seconds, got {', '.join(values)[:50]!r}",
                           field="cache-control")
    return float(values[0])


def partition_extras(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the namespace and bucket a request names, checked; raise ``RequestError`` naming a bad header."""
    out = {}
    for header, name in ((NAMESPACE_HEADER, "namespace"), (BUCKET_HEADER, "bucket")):
        value = headers.get(header)
        if value is None:
            continue
        if not _LABEL.fullmatch(value):
            raise RequestError(f"header {header} must be 1-128 visible ASCII characters, got {value[:50]!r}", field=header)
        out[name] = value
    beta = headers.get(BETA_HEADER)
    if beta is not None:
        if not _BETAS.fullmatch(beta):
            raise RequestError(f"header {BETA_HEADER} must be comma-separated feature names, got {beta[:50]!r}", field=BETA_HEADER)
        out["anthropic_beta"] = ",".join(sorted(b.strip() for b in beta.split(",") if b.strip()))
    return out


def with_partition(body: dict, extras: Mapping[str, Any]) -> dict:
    """Return the body as the cache keys it: with the namespace and bucket (unknown fields join the partition)."""
    return {**body, _PARTITION_FIELD: dict(extras)} if extras else body
