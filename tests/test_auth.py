"""Who may call the sidecar: sidecar keys (tenants, limits, budgets), the exposure check, Host, Origin, CORS, JSON bodies.

A real uvicorn sidecar in front of the real mock upstream, which accepts only the sidecar's own
key: an answer proves the caller's key was not forwarded. The mock's counters say what reached it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import httpx2
import openai
import pytest

from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.errors import ConfigError
from semcache.server import create_app
from semcache.server.auth import ClientKey, ClientKeys, hash_key, is_loopback, load_client_keys
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server

from servers import Sidecars

pytestmark = pytest.mark.server

OWN = "sk-own-upstream-key"  # the sidecar's provider key; the mock accepts nothing else
ADMIN = "admin-secret"
ALICE, BOB, CAROL = "sk-side-alice-0001", "sk-side-bob-00002", "sk-side-carol-003"
MODEL = "gpt-4o-mini"
JSON = {"content-type": "application/json"}
POLICY = MatchPolicy.cosine(0.9)


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KEYS = {"keys": [
    {"key_sha256": sha(ALICE), "tenant": "team-a"},
    {"key_sha256": sha(BOB), "tenant": "team-b", "rpm": 2},
    # A call reserves its estimate (prompt + 256) first: 280 admits one and refuses the next.
    {"key": CAROL, "tenant": "team-c", "budget_tokens_per_day": 280},
]}


@pytest.fixture(scope="module")
def mock_url():
    with running_server(create_mock(api_key=OWN)) as url:
        yield url


@pytest.fixture
def mock(mock_url):
    httpx2.post(mock_url + "/mock/reset")
    return mock_url


def upstream_requests(mock_url: str) -> int:
    return httpx2.get(mock_url + "/mock/stats").json()["requests"]


@pytest.fixture
def sidecar(tmp_path, embedder, mock):
    """``sidecar(keys=..., **settings) -> base URL``; keys (a document) go to a TOML-free JSON file."""
    sidecars = Sidecars()

    def start(*, keys=KEYS, environ=None, **options):
        options.setdefault("upstream_base_url", mock + "/v1")
        if keys is not None:
            path = tmp_path / f"keys{len(sidecars)}.json"
            path.write_text(json.dumps(keys))
            options["client_keys_file"] = str(path)
        settings = Settings(cache_dir=str(tmp_path / f"cache{len(sidecars)}"), **options)
        env = {"OPENAI_API_KEY": OWN, "SEMCACHE_ADMIN_TOKEN": ADMIN} if environ is None else environ
        return sidecars.start(settings, environ=env, embedder=embedder, policy=POLICY)

    start.apps = lambda: sidecars.apps
    yield start
    sidecars.close()


def client(url: str, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key or "unused", max_retries=0,
                         default_headers={} if key else {"Authorization": ""})


def chat(url: str, key: str | None, text: str, **extra):
    with client(url, key) as c:
        raw = c.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": text}], **extra)
        return raw.headers, raw.parse()


# -- sidecar keys ----------------------------------------------------------------------------

def test_a_known_key_is_its_tenant_and_the_upstream_gets_the_sidecars_own_key(sidecar, mock):
    url = sidecar()
    headers, answer = chat(url, ALICE, "what is the capital of peru")
    assert headers["x-semcache"] == "miss" and answer.choices[0].message.content  # the mock took OWN, not ALICE
    headers, _ = chat(url, ALICE, "what is the capital of peru")
    assert headers["x-semcache"] == "hit"
    headers, _ = chat(url, CAROL, "what is the capital of peru")  # plaintext in the file, hashed at load
    assert headers["x-semcache"] == "miss"  # another tenant: never shares an answer
    stats = httpx2.get(url + "/semcache/stats", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert set(stats["by_tenant"]) == {"team-a", "team-c"}
    assert stats["by_tenant"]["team-a"]["requests"] == 2 and stats["by_tenant"]["team-a"]["exact_hits"] == 1


@pytest.mark.parametrize("key", [None, "sk-not-a-sidecar-key", OWN, ALICE + "x"])
def test_a_missing_or_unknown_key_gets_401_and_nothing_goes_upstream(sidecar, mock, key):
    url = sidecar()
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(url, key, "anything at all")
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    assert set(refused.value.body) == {"message", "type", "param", "code"}
    with pytest.raises(openai.AuthenticationError):
        client(url, key).models.list()
    assert upstream_requests(mock) == 0


def test_keys_from_the_environment_variable_and_from_toml(sidecar, tmp_path, mock):
    url = sidecar(keys=None, environ={"OPENAI_API_KEY": OWN, "SEMCACHE_CLIENT_KEYS": json.dumps(KEYS)})
    assert chat(url, BOB, "hello from the environment")[0]["x-semcache"] == "miss"
    toml = tmp_path / "keys.toml"
    toml.write_text(f'[[keys]]\nkey_sha256 = "{sha(ALICE).upper()}"\ntenant = "team-a"\nrpm = 60\n')
    keys = load_client_keys(Settings(client_keys_file=str(toml)), {})
    assert keys.authenticate(ALICE).tenant == "team-a" and keys.authenticate(ALICE).rpm == 60
    assert "team-a" in repr(keys) and ALICE not in repr(keys) and sha(ALICE) not in repr(keys)


def test_a_tenant_over_its_own_rpm_gets_429_and_hits_stay_free(sidecar, mock):
    url = sidecar()
    for text in ("first question of bob", "second question of bob"):
        assert chat(url, BOB, text)[0]["x-semcache"] == "miss"
    with pytest.raises(openai.RateLimitError) as limited:
        chat(url, BOB, "third question of bob")
    response = limited.value.response
    assert limited.value.code == "rate_limit_exceeded" and "team-b" in limited.value.message
    assert int(response.headers["retry-after"]) >= 1 and response.headers["x-ratelimit-limit-requests"] == "2"
    assert chat(url, BOB, "first question of bob")[0]["x-semcache"] == "hit"  # hits do not count
    assert chat(url, ALICE, "third question of bob")[0]["x-semcache"] == "miss"  # another tenant is not limited
    assert upstream_requests(mock) == 3


def test_a_tenant_over_its_own_tpm_gets_429(sidecar, mock):
    keys = {"keys": [{"key": ALICE, "tenant": "team-a", "tpm": 100}]}
    url = sidecar(keys=keys)
    chat(url, ALICE, "a short question", max_tokens=80)  # reserves ~90 of 100, then its real usage (> 25)
    with pytest.raises(openai.RateLimitError):
        chat(url, ALICE, "another short question", max_tokens=80)
    with pytest.raises(openai.BadRequestError) as never:  # can never fit the tenant's limit
        chat(url, ALICE, "a long answer please", max_tokens=500)
    assert never.value.body["param"] == "max_tokens"
    assert upstream_requests(mock) == 1


def test_a_tenant_over_its_own_budget_is_cache_only(sidecar, mock):
    url = sidecar()
    assert chat(url, CAROL, "what is the tallest mountain")[0]["x-semcache"] == "miss"  # reserved ~268, spent ~30-85
    with pytest.raises(openai.RateLimitError) as stopped:
        chat(url, CAROL, "what is the longest river")
    assert stopped.value.code == "budget_exceeded"
    assert chat(url, CAROL, "what is the tallest mountain")[0]["x-semcache"] == "hit"
    assert chat(url, ALICE, "what is the longest river")[0]["x-semcache"] == "miss"  # its own budget, not team-c's
    assert upstream_requests(mock) == 2


def test_streamed_misses_count_against_the_tenant(sidecar, mock):
    url = sidecar()
    with client(url, BOB) as c:
        for text in ("stream one", "stream two"):
            list(c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], stream=True))
        with pytest.raises(openai.RateLimitError):
            list(c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "stream three"}], stream=True))


def test_sidecar_keys_never_reach_logs_stats_reprs_or_disk(sidecar, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="semcache")
    url = sidecar()
    chat(url, CAROL, "where does a key end up")
    with pytest.raises(openai.RateLimitError):
        chat(url, CAROL, "and a second one")
    with pytest.raises(openai.AuthenticationError):
        chat(url, "sk-wrong-key-0000", "refused")
    stats = httpx2.get(url + "/semcache/stats", headers={"Authorization": f"Bearer {ADMIN}"}).text
    metrics = httpx2.get(url + "/metrics").text
    seen = [stats, metrics, caplog.text, repr(sidecar.apps()[0].state.sidecar)]
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.name.startswith("keys"):
            seen.append(path.read_bytes().decode("latin-1"))
    for secret in (CAROL, ALICE, "sk-wrong-key-0000", OWN):
        assert not any(secret in text for text in seen), secret


def test_sidecar_keys_do_not_open_the_admin_routes(sidecar):
    url = sidecar()
    headers, _ = chat(url, ALICE, "delete me if you can")
    entry = headers["x-semcache-entry-id"]
    refused = httpx2.delete(url + f"/semcache/entries?id={entry}", headers={"Authorization": f"Bearer {ALICE}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_admin_token"
    assert "by_tenant" not in httpx2.get(url + "/semcache/stats", headers={"Authorization": f"Bearer {ALICE}"}).json()
    done = httpx2.delete(url + f"/semcache/entries?id={entry}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert done.json() == {"deleted": 1}


@pytest.mark.parametrize("document, message", [
    ({"keys": [{"key_sha256": "abc", "tenant": "t"}]}, "64 hex digits"),
    ({"keys": [{"key": ALICE, "key_sha256": sha(ALICE), "tenant": "t"}]}, "exactly one of"),
    ({"keys": [{"key_sha256": sha(ALICE)}]}, "'tenant'"),
    ({"keys": [{"key_sha256": sha(ALICE), "tenant": "bad tenant!"}]}, "'tenant'"),
    ({"keys": [{"key_sha256": sha(ALICE), "tenant": "t", "rmp": 5}]}, "unknown field"),
    ({"keys": [{"key_sha256": sha(ALICE), "tenant": "t", "rpm": 0}]}, "'rpm' must be a positive integer"),
    ({"keys": [{"key_sha256": sha(ALICE), "tenant": "t", "budget_usd_per_day": -1}]}, "'budget_usd_per_day'"),
    ({"keys": [{"key_sha256": sha(ALICE), "tenant": "t"}, {"key": ALICE, "tenant": "u"}]}, "listed twice"),
    ({"keys": [{"key_sha256": sha(ALICE), "tenant": "t", "rpm": 5}, {"key": BOB, "tenant": "t", "rpm": 6}]}, "two values"),
    ({"keys": []}, "empty"),
    ({"tokens": []}, "unknown top-level"),
    ([{"key": "short", "tenant": "t"}], "at least 8"),
])
def test_bad_key_files_are_refused_naming_the_problem(tmp_path, document, message):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=message) as refused:
        load_client_keys(Settings(client_keys_file=str(path)), {})
    assert ALICE not in str(refused.value)


def test_an_unreadable_key_file_never_quotes_its_lines(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(f'[[keys]]\nkey = "{ALICE}\ntenant = "t"\n')  # unterminated string
    with pytest.raises(ConfigError, match="not valid TOML") as refused:
        load_client_keys(Settings(client_keys_file=str(path)), {})
    assert ALICE not in str(refused.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_client_keys(Settings(client_keys_file=str(tmp_path / "missing.toml")), {})
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_client_keys(Settings(), {"SEMCACHE_CLIENT_KEYS": "{" + ALICE})
    assert load_client_keys(Settings(), {}) is None


def test_hash_key_is_sha256_hex_and_keys_of_a_tenant_share_its_limits():
    assert hash_key("test") == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # sha256sum's answer
    keys = ClientKeys([ClientKey(hash_key(ALICE), "team-a", rpm=5), ClientKey(hash_key(BOB), "team-a")])
    assert keys.authenticate(BOB).rpm == 5 and keys.tenants == {"team-a": {"rpm": 5}}
    assert ALICE not in repr(keys.authenticate(ALICE)) and hash_key(ALICE) not in repr(keys.authenticate(ALICE))


# -- refusing to serve the sidecar's own key to anyone ---------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "sidecar.internal"])
def test_own_key_on_a_public_address_without_client_keys_is_refused(tmp_path, host, embedder):
    settings = Settings(cache_dir=str(tmp_path / "c"), host=host)
    with pytest.raises(ConfigError, match="refusing to serve") as refused:
        create_app(settings, environ={"OPENAI_API_KEY": OWN})  # refused before the model loads
    assert "open" in str(refused.value) and OWN not in str(refused.value)
    with SemanticCache(settings.cache_dir, embedder=embedder, policy=POLICY) as cache:
        create_app(settings.replace(open=True), cache=cache, environ={"OPENAI_API_KEY": OWN})
        create_app(settings, cache=cache, environ={})  # no own key: callers bring theirs
        create_app(settings, cache=cache, environ={"OPENAI_API_KEY": OWN, "SEMCACHE_CLIENT_KEYS": json.dumps(KEYS)})


def test_client_keys_need_an_own_upstream_key(tmp_path, embedder):
    with SemanticCache(str(tmp_path / "c"), embedder=embedder, policy=POLICY) as cache:
        with pytest.raises(ConfigError, match="no upstream key of its own"):
            create_app(Settings(cache_dir=str(tmp_path / "c")), cache=cache, environ={"SEMCACHE_CLIENT_KEYS": json.dumps(KEYS)})


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True),
                                            ("[::1]", True), ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


# -- Host, Origin, CORS, Content-Type ----------------------------------------------------------

def post_chat(url: str, **kwargs) -> httpx2.Response:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi there"}]})
    headers = {**JSON, "Authorization": f"Bearer {ALICE}", **kwargs.pop("headers", {})}
    return httpx2.post(url + "/v1/chat/completions", content=body, headers=headers, **kwargs)


def assert_refused(answer: httpx2.Response, status: int, code: str) -> None:
    assert answer.status_code == status
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    assert not any(name.startswith("access-control-") for name in answer.headers)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "10.1.2.3:80", ""])
def test_a_foreign_host_is_refused(sidecar, mock, host):
    url = sidecar()
    assert_refused(post_chat(url, headers={"Host": host}), 403, "host_not_allowed")
    assert_refused(httpx2.get(url + "/v1/models", headers={"Host": host}), 403, "host_not_allowed")
    assert httpx2.get(url + "/healthz", headers={"Host": host}).status_code == 200  # probes use the machine's IP
    assert upstream_requests(mock) == 0


def test_loopback_names_the_configured_host_and_allowed_hosts_are_served(sidecar):
    url = sidecar(allowed_hosts=("sidecar.internal",))
    port = url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "sidecar.internal:443"):
        assert post_chat(url, headers={"Host": host}).status_code == 200, host
    assert post_chat(sidecar(allowed_hosts=("*",)), headers={"Host": "anything.example"}).status_code == 200


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1", "http://localhost"])
def test_a_foreign_origin_is_refused_even_for_a_simple_request(sidecar, mock, origin):
    url = sidecar()
    assert_refused(post_chat(url, headers={"Origin": origin}), 403, "origin_not_allowed")
    # The CSRF shape: a text/plain POST needs no preflight, so a browser sends it from any page.
    simple = post_chat(url, headers={"Origin": origin, "content-type": "text/plain"})
    assert_refused(simple, 403, "origin_not_allowed")
    preflight = httpx2.options(url + "/v1/chat/completions", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    assert_refused(preflight, 403, "origin_not_allowed")
    assert upstream_requests(mock) == 0


def test_cors_only_for_allowed_origins(sidecar, mock):
    plain = sidecar()
    assert not any(h.startswith("access-control-") for h in post_chat(plain).headers)
    url = sidecar(allowed_origins=("https://app.example",))
    preflight = httpx2.options(url + "/v1/chat/completions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    answer = post_chat(url, headers={"Origin": "https://app.example"})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-semcache" in answer.headers["access-control-expose-headers"]
    assert_refused(post_chat(url, headers={"Origin": "https://evil.example"}), 403, "origin_not_allowed")
    assert upstream_requests(mock) == 2  # one miss on each sidecar


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/json; charset=latin-1", "application/jsonx", "text/json"])
def test_only_json_bodies_are_read(sidecar, mock, content_type):
    url = sidecar()
    headers = {"Authorization": f"Bearer {ALICE}"} | ({"content-type": content_type} if content_type else {})
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    answer = httpx2.post(url + "/v1/chat/completions", content=body, headers=headers)
    assert_refused(answer, 415, "unsupported_media_type")
    assert answer.json()["error"]["param"] == "content-type"
    assert upstream_requests(mock) == 0
    for good in ("application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"):
        assert post_chat(url, headers={"content-type": good}).status_code == 200


def test_feedback_honours_the_body_limit_and_content_type(sidecar):
    url = sidecar(max_body_bytes=500)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    big = json.dumps({"id": 1, "correct": False, "query": "x" * 1000})
    assert_refused(httpx2.post(url + "/semcache/feedback", content=big, headers={**auth, **JSON}), 413, "request_too_large")
    chunks = (part.encode() for part in [big[:300], big[300:]])  # no content-length: counted as it arrives
    assert_refused(httpx2.post(url + "/semcache/feedback", content=chunks, headers={**auth, **JSON}), 413, "request_too_large")
    assert_refused(httpx2.post(url + "/semcache/feedback", content="{}", headers={**auth, "content-type": "text/plain"}),
                   415, "unsupported_media_type")


def test_the_environment_is_not_read_when_environ_is_given(sidecar, monkeypatch, mock):
    monkeypatch.setenv("SEMCACHE_CLIENT_KEYS", json.dumps({"keys": [{"key": "sk-from-os-environ", "tenant": "os"}]}))
    url = sidecar(keys=None, environ={"OPENAI_API_KEY": OWN})
    assert chat(url, None, "no keys configured in environ")[0]["x-semcache"] == "miss"
    assert os.environ["SEMCACHE_CLIENT_KEYS"]
