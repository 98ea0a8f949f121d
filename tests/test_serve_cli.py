"""``semcache serve`` as an operator starts it: one ready line on stderr, none of the libraries' load noise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest

from semcache.matching.policy import DEFAULT_THRESHOLD
from semcache.testing.mock import create_app as create_mock
from semcache.testing.processes import free_port, stop_process
from semcache.testing.serving import running_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.model
@pytest.mark.server
@pytest.mark.slow
def test_serve_prints_one_ready_line_and_hides_third_party_load_noise(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEMCACHE_", "OPENAI_", "HF_HUB_DISABLE", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="1", MOCK_KEY="sk-mock", PYTHONUNBUFFERED="1")
    with running_server(create_mock()) as mock_url:
        command = [sys.executable, "-m", "semcache.cli", "serve", "--port", str(port), "--cache-dir", str(tmp_path / "cache"),
                   "--upstream-base-url", mock_url + "/v1", "--upstream-api-key-env", "MOCK_KEY"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 120
            while not any("semcache ready" in line for line in lines):
                assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
                time.sleep(0.1)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-user", max_retries=0)
            answer = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "What is 2+2?"}])
            assert answer.headers["x-semcache"] == "miss"
            client.close()
        finally:
            stop_process(process)
            reader.join(10)
            process.stdout.close()
    output = "".join(lines)
    before_ready = output[:output.index("semcache ready")]
    assert before_ready.strip() == "", before_ready  # nothing of its own or the libraries' before the ready line
    ready = next(line for line in lines if "semcache ready" in line).strip()
    # the model, or with the multilingual extra the routing: "languages(en=all-MiniLM-L6-v2; zh=...)"
    assert re.match(rf"semcache ready on http://127\.0\.0\.1:{port}/v1 \| upstream {re.escape(mock_url)}/v1 \| model (languages\(en=)?all-MiniLM-L6-v2", ready)
    assert f"| store {tmp_path / 'cache'} (0 entries) | policy threshold {DEFAULT_THRESHOLD:g}, languages en" in ready
    for noise in ("Loading weights", "Started server process", "Waiting for application startup", "Uvicorn running"):
        assert noise not in output
