"""Refusals that say what they mean (#18 items 1 and 8), through a real uvicorn sidecar and the openai SDK.

- A request that can never be admitted (``max_tokens`` larger than a whole budget or a whole tpm
  limit) is a 400 naming ``max_tokens``, against the global budget as against a tenant's limits:
  never a 429 that a client would retry forever.
- Feedback on an entry that does not exist is a 404, never ``{"marked": true}``.
- ``/v1/chat/completions/`` (trailing slash) is served as without it, never a 307 with an empty body.
- A tenant with its own limits estimates each route from the field the route reads: an embeddings
  body with an odd ``messages`` field is answered, never a 500.
"""

from __future__ import annotations

import contextlib
import json

import httpx2
import openai
import pytest

from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.server import create_app
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server

pytestmark = pytest.mark.server

OWN, ADMIN, ALICE = "sk-own-upstream-key", "admin-secret", "sk-side-alice-0001"
MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def mock_url():
    with running_server(create_mock(api_key=OWN)) as url:
        yield url


@pytest.fixture
def sidecar(tmp_path, embedder, mock_url):
    """``sidecar(keys=None, **settings) -> URL``: a sidecar spending its own key (tenants from ``keys``)."""
    with contextlib.ExitStack() as stack:
        def start(*, keys=None, **options) -> str:
            if keys is not None:
                path = tmp_path / "keys.json"
                path.write_text(json.dumps({"keys": keys}))
                options["client_keys_file"] = str(path)
            settings = Settings(cache_dir=str(tmp_path / "cache"), upstream_base_url=mock_url + "/v1",
                                pass_through_key=False, **options)
            cache = stack.enter_context(SemanticCache(settings.cache_dir, embedder=embedder, policy=MatchPolicy.cosine(0.9)))
            app = create_app(settings, cache=cache, environ={"OPENAI_API_KEY": OWN, "SEMCACHE_ADMIN_TOKEN": ADMIN})
            return stack.enter_context(running_server(app))

        yield start


def upstream_requests(mock_url: str) -> int:
    return httpx2.get(mock_url + "/mock/stats").json()["requests"]


def ask(url: str, key: str, text: str, **extra):
    with openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0) as client:
        return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], **extra)


@pytest.mark.parametrize("where", ["global budget", "tenant budget", "tenant tpm", "global tpm"])
def test_a_max_tokens_that_can_never_be_admitted_is_a_400_naming_it(sidecar, mock_url, where):
    """Before: 429 ``budget_exceeded`` against a budget (a retryable look), 400 against a tpm limit."""
    keys, options = None, {}
    if where == "global budget":
        options["budget_tokens_per_day"] = 1000
    elif where == "global tpm":
        options["tpm"] = 1000
    else:
        keys = [{"key": ALICE, "tenant": "team-a",
                 **({"budget_tokens_per_day": 1000} if where == "tenant budget" else {"tpm": 1000})}]
    url = sidecar(keys=keys, **options)
    before = upstream_requests(mock_url)
    with pytest.raises(openai.BadRequestError) as refused:
        ask(url, ALICE, "write me a very long story", max_tokens=5000)
    assert refused.value.status_code == 400 and refused.value.body["param"] == "max_tokens", refused.value.body
    assert "retry-after" not in refused.value.response.headers
    assert ask(url, ALICE, "write me a short story", max_tokens=50).choices[0].message.content  # one that fits is served
    assert upstream_requests(mock_url) == before + 1


def test_feedback_on_an_entry_that_does_not_exist_is_a_404(sidecar):
    url = sidecar()
    answer = httpx2.post(url + "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                         headers={"authorization": "Bearer sk-caller"})
    entry = int(answer.headers["x-semcache-entry-id"])
    admin = {"authorization": f"Bearer {ADMIN}"}
    for body in ({"id": entry + 1000, "correct": True}, {"id": entry + 1000, "correct": False},
                 {"id": entry + 1000, "correct": False, "query": "hello"}):
        missing = httpx2.post(url + "/semcache/feedback", json=body, headers=admin)
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"] == {"message": missing.json()["error"]["message"], "type": "invalid_request_error",
                                           "param": "id", "code": "entry_not_found"}
    found = httpx2.post(url + "/semcache/feedback", json={"id": entry, "correct": True}, headers=admin)
    assert (found.status_code, found.json()) == (200, {"marked": True})


def test_a_trailing_slash_is_served_as_without_it(sidecar):
    url = sidecar()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "what is the capital of peru"}]}
    plain = httpx2.post(url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-caller"})
    slashed = httpx2.post(url + "/v1/chat/completions/", json=body, headers={"authorization": "Bearer sk-caller"})
    assert (plain.status_code, slashed.status_code) == (200, 200)
    assert slashed.headers["x-semcache"] == "hit" and slashed.json()["choices"] == plain.json()["choices"]
    assert httpx2.get(url + "/semcache/stats/").status_code == 200
    assert httpx2.get(url + "/healthz/").json() == {"status": "ok"}
    nowhere = httpx2.get(url + "/v1/nowhere/")
    assert nowhere.status_code == 404 and nowhere.json()["error"]["message"]


def test_a_tenant_with_limits_estimates_embeddings_from_input_not_messages(sidecar):
    """Before: ``TenantQuota.admit`` counted ``messages`` on every route: 500 for ``"messages": [1]`` on embeddings."""
    url = sidecar(keys=[{"key": ALICE, "tenant": "team-a", "tpm": 100_000, "budget_tokens_per_day": 100_000}])
    for odd in (None, True, "s", 5, [1], {"a": 1}):
        answer = httpx2.post(url + "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hello", "messages": odd},
                             headers={"authorization": f"Bearer {ALICE}"})
        assert answer.status_code == 200 and answer.json()["data"][0]["embedding"], answer.text[:300]
