"""From the command line, as a user runs it: `semcache serve --config semcache.toml` with a routes table in front of
three mock providers (OpenAI, DeepSeek, Anthropic), each a process of its own; the anthropic SDK, the openai SDK
and curl-like requests with the cache headers all pass through the one sidecar, the real model inside it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from semcache.testing.processes import free_port, stop_process

pytestmark = [pytest.mark.server, pytest.mark.model, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def _wait(url: str, process: subprocess.Popen, log: Path | None = None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited with {process.returncode}: {log.read_text()[-3000:] if log else ''}")
        with contextlib.suppress(httpx2.HTTPError):
            httpx2.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout}s")


@pytest.fixture
def providers(tmp_path):
    """Three mock providers in processes of their own, and the sidecar the CLI starts in front of them."""
    started: list[subprocess.Popen] = []
    logs: list = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEMCACHE_", "OPENAI_", "ANTHROPIC_"))}
    env["HF_HUB_OFFLINE"] = "1"

    def spawn(args: list[str], extra: dict | None = None, log: Path | None = None) -> subprocess.Popen:
        out = log.open("wb") if log else subprocess.DEVNULL
        if log:
            logs.append(out)
        process = subprocess.Popen([sys.executable, *args], env={**env, **(extra or {})}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    ports = {name: free_port() for name in ("openai", "deepseek", "anthropic", "sidecar")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for name, key in (("openai", "sk-openai"), ("deepseek", "sk-deepseek")):
        process = spawn(["-m", "semcache.cli", "mock-upstream", "--port", str(ports[name]), "--api-key-env", "MOCK_KEY"], {"MOCK_KEY": key})
        _wait(urls[name] + "/mock/stats", process)
    process = spawn(["-m", "semcache.testing.mock_anthropic", "--port", str(ports["anthropic"])])
    _wait(urls["anthropic"] + "/mock/stats", process)
    config = tmp_path / "semcache.toml"
    config.write_text(f"""
cache_dir = "{tmp_path / 'cache'}"
port = {ports['sidecar']}
upstream_base_url = "{urls['openai']}/v1"
upstream_api_key_env = "OPENAI_KEY"
pass_through_key = false

[[routes]]
name = "deepseek"
models = ["deepseek-*"]
base_url = "{urls['deepseek']}/v1"
key_env = "DEEPSEEK_API_KEY"
tpd = 1000000

[[routes]]
name = "anthropic"
models = ["claude-*"]
base_url = "{urls['anthropic']}/v1"
api = "anthropic"
key_env = "ANTHROPIC_API_KEY"
""")
    keys = {"OPENAI_KEY": "sk-openai", "DEEPSEEK_API_KEY": "sk-deepseek", "ANTHROPIC_API_KEY": "sk-ant-sidecar",
            "SEMCACHE_ADMIN_TOKEN": "adm"}
    log = tmp_path / "sidecar.log"
    sidecar = spawn(["-m", "semcache.cli", "serve", "--config", str(config), "--log-level", "warning"], keys, log)
    _wait(urls["sidecar"] + "/readyz", sidecar, log, timeout=240)
    yield urls
    for process in reversed(started):
        stop_process(process)
    for out in logs:
        out.close()


def _stats(url: str) -> dict:
    return httpx2.get(url + "/mock/stats").json()


def test_every_client_passes_through_semcache_serve(providers):
    url = providers["sidecar"]
    # The openai SDK: two models, two routes, each provider reached with its own key only.
    with openai.OpenAI(base_url=url + "/v1", api_key="sk-caller", max_retries=0, timeout=60) as client:
        for model in ("gpt-4o-mini", "deepseek-chat", "deepseek-chat"):
            raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "Name a river in Europe."}])
            assert raw.parse().choices[0].message.content
        assert raw.headers["x-semcache"] == "hit"
    assert _stats(providers["openai"])["by_model"] == {"gpt-4o-mini": 1}
    assert _stats(providers["deepseek"])["by_model"] == {"deepseek-chat": 1}
    # The anthropic SDK: the Messages API, a miss then a hit, streamed and not.
    claude = anthropic.Anthropic(base_url=url, api_key="sk-ant-caller", max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "What is the tallest mountain in Africa?"}]
    raw = claude.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=64, messages=messages)
    assert raw.headers["x-semcache"] == "miss" and raw.parse().content[0].text
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=messages) as stream:
        assert stream.get_final_message().content[0].text == raw.parse().content[0].text
    claude.close()
    anthropic_stats = _stats(providers["anthropic"])
    assert anthropic_stats["by_model"] == {"claude-sonnet-4-5": 1}
    assert anthropic_stats["by_key"] == {hashlib.sha256(b"sk-ant-sidecar").hexdigest()[:12]: 1}  # the route's own key
    # curl: the cache headers, as raw HTTP.
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Name a river in Europe."}]}
    headers = {"Authorization": "Bearer sk-caller", "Content-Type": "application/json"}
    assert httpx2.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=60).headers["x-semcache"] == "hit"
    spaced = httpx2.post(url + "/v1/chat/completions", json=body, timeout=60,
                         headers={**headers, "x-semcache-namespace": "other-app", "Cache-Control": "max-age=600"})
    assert spaced.status_code == 200 and spaced.headers["x-semcache"] == "miss"
    bucket = httpx2.post(url + "/v1/chat/completions", json=body, timeout=60, headers={**headers, "x-semcache-bucket": "7"})
    assert bucket.headers["x-semcache"] == "miss"
    assert httpx2.post(url + "/v1/chat/completions", json=body, timeout=60,
                       headers={**headers, "Cache-Control": "no-cache"}).headers["x-semcache"] == "bypass"
    assert _stats(providers["openai"])["by_model"] == {"gpt-4o-mini": 4}
    # One set of stats for every provider, with their prices.
    stats = httpx2.get(url + "/semcache/stats", headers={"Authorization": "Bearer adm"}, timeout=60).json()
    assert stats["total"]["upstream_calls"] == 6
    for model in ("gpt-4o-mini", "deepseek-chat", "claude-sonnet-4-5"):
        assert stats["by_model"][model]["cost_spent_usd"] > 0
