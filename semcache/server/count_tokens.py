"""``POST /v1/messages/count_tokens``: Anthropic's free token count, passed through to the Messages route.

Claude's SDKs and tools ask it before sending (context management); it is not an answer, so it is
neither cached nor paced (Anthropic limits it apart from messages). It goes to the route a Messages
request for the same model would take, with that route's key (or the caller's, where the route passes
it through) as ``x-api-key``, and the caller's ``anthropic-beta``; the provider's answer, error
included, comes back as it was sent.
"""

from __future__ import annotations

from typing import Any

import httpx2
from starlette.requests import Request
from starlette.responses import Response

from ..errors import AuthenticationFailed, RequestError, UpstreamConnectionError, UpstreamTimeout
from ..upstream.anthropic import ANTHROPIC_VERSION

__all__ = ["count_tokens"]


async def _post(http: httpx2.AsyncClient, url: str, headers: dict, body: dict) -> httpx2.Response:
    try:
        return await http.post(url, json=body, headers=headers)
    except httpx2.TimeoutException as exc:
        raise UpstreamTimeout("the upstream provider did not answer in time") from exc
    except httpx2.TransportError as exc:
        raise UpstreamConnectionError(f"the upstream provider could not be reached: {type(exc).__name__}") from exc


async def count_tokens(request: Request) -> Response:
    """Pass a token count through to the model's Anthropic route (errors raised for ``guarded`` to shape)."""
    sidecar: Any = request.app.state.sidecar
    sidecar.prepare()
    caller = sidecar.caller(request.headers)
    body = await request.app.state.read_json(request, sidecar.settings.max_body_bytes)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("missing required parameter 'model' (a string)", field="model")
    route = sidecar.upstreams.routes.match(model, "messages")
    key = sidecar.upstreams.route_key(route, caller.upstream_key)
    if not key:
        raise AuthenticationFailed(f"no API key for route {route.name!r}: set the environment variable {route.key_env} "
                                   "for the sidecar", status_code=401, code="invalid_api_key")
    headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
    if request.headers.get("anthropic-beta"):
        headers["anthropic-beta"] = request.headers["anthropic-beta"]
    answer = await sidecar.engine.run(_post(sidecar.upstreams.http, route.base_url + "/messages/count_tokens", headers, body))
    return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type", "application/json"))
