"""The review page in a real headless browser (Debian's chromium and chromium-driver under Selenium):
it signs in, shows the numbers /semcache/stats shows, and a "wrong" click stops that entry from answering
that query. The sidecar is real (uvicorn on loopback, the bundled mock upstream, the openai SDK as client);
the embedder is the word-bag fake, so which paraphrase hits does not depend on the model's threshold."""

from __future__ import annotations

import os
import shutil

import httpx2
import openai
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.server import create_app
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server

pytestmark = [pytest.mark.server, pytest.mark.browser]

ADMIN = "review-admin-token"
MODEL = "gpt-4o-mini"
INSTALL = ("the browser test needs Debian's chromium and chromium-driver: `make test` installs them (as root, with "
           "apt-get), or run `sudo apt-get install chromium chromium-driver`")


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/lib/chromium/{name}") if os.access(p, os.X_OK)), None)
        if found:
            return found
    pytest.fail(INSTALL, pytrace=False)


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1800", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=_binary("chromedriver", "chromium-driver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def sidecar(tmp_path, embedder):
    with running_server(create_mock()) as mock:
        settings = Settings(cache_dir=str(tmp_path / "cache"), upstream_base_url=mock + "/v1", budget_usd_per_day=5.0)
        cache = SemanticCache(settings.cache_dir, embedder=embedder, policy=MatchPolicy.cosine(0.9), flush_interval=0)
        app = create_app(settings, cache=cache, environ={"SEMCACHE_ADMIN_TOKEN": ADMIN, "OPENAI_API_KEY": "sk-own"})
        with running_server(app) as url:
            yield url, app
        cache.close()


def chat(url: str, text: str, key: str = "sk-alice"):
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    try:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user", "content": text}])
        return raw.headers
    finally:
        client.close()


def shown(driver, key: str) -> str:
    return driver.find_element(By.ID, f"stat-{key}").text


def test_the_page_shows_the_stats_and_a_wrong_click_stops_the_hit(sidecar, browser, tmp_path):
    url, app = sidecar
    assert chat(url, "how tall is the eiffel tower")["x-semcache"] == "miss"
    assert chat(url, "how tall is the eiffel tower")["x-semcache-match"] == "exact"
    paraphrase = "How tall is the Eiffel tower?"
    assert chat(url, paraphrase)["x-semcache-match"] == "semantic"
    chat(url, "what is the boiling point of water", key="sk-bob")

    browser.get(url + "/semcache/ui")  # not signed in: the form, and no data
    assert browser.find_elements(By.ID, "stat-requests") == []
    browser.find_element(By.ID, "token").send_keys("not the token")
    browser.find_element(By.ID, "sign-in").click()
    WebDriverWait(browser, 10).until(lambda d: "Wrong token" in d.page_source)  # the POST's answer, once it has loaded
    browser.find_element(By.ID, "token").send_keys(ADMIN)
    browser.find_element(By.ID, "sign-in").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "stat-requests"))
    assert browser.current_url == url + "/semcache/ui"  # the token never was in a URL
    cookie = browser.get_cookie("semcache_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and ADMIN not in cookie["value"]

    stats = httpx2.get(url + "/semcache/stats", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    total = stats["total"]
    assert (total["requests"], total["exact_hits"], total["semantic_hits"], total["misses"]) == (4, 1, 1, 2)
    for key in ("requests", "exact_hits", "semantic_hits", "misses", "requests_saved"):
        assert shown(browser, key) == f"{total[key]:,}", key
    assert shown(browser, "tokens_saved") == f"{total['prompt_tokens_saved'] + total['completion_tokens_saved']:,}"
    assert shown(browser, "hit_rate") == f"{2 / 4:.1%}"
    assert float(shown(browser, "cost_saved_usd").lstrip("$")) == pytest.approx(total["cost_saved_usd"], abs=1e-6)
    tenants = browser.find_element(By.ID, "by-tenant").text
    assert "k-" in tenants and "sk-alice" not in browser.page_source and ADMIN not in browser.page_source
    assert len(browser.find_elements(By.CSS_SELECTOR, "#by-tenant tbody tr")) == len(stats["by_tenant"]) == 2
    assert MODEL in browser.find_element(By.ID, "by-model").text
    budget = stats["budget"]["usd_per_day"]  # the sidecar's budget, in /semcache/stats too
    assert f'{budget["spent"]:,} of {budget["limit"]:,}' in browser.find_element(By.ID, "budgets").text

    rows = browser.find_elements(By.CSS_SELECTOR, "#decisions tr.decision")
    hit = next(r for r in rows if r.find_element(By.CSS_SELECTOR, "td.query").text == paraphrase)
    assert "semantic" in hit.text and "how tall is the eiffel tower" in hit.text
    if os.environ.get("SEMCACHE_SCREENSHOT"):  # benchmarks/results/review_page.png was made this way
        browser.save_screenshot(os.environ["SEMCACHE_SCREENSHOT"])
    hit.find_element(By.CSS_SELECTOR, "button[data-verdict=wrong]").click()
    WebDriverWait(browser, 10).until(lambda d: hit.find_element(By.CSS_SELECTOR, ".verdict").text == "marked wrong")

    assert chat(url, paraphrase)["x-semcache"] == "miss"  # that entry no longer answers that query
    assert chat(url, "how tall is the eiffel tower")["x-semcache-match"] == "exact"  # its own question still hits
    browser.refresh()
    rows = browser.find_elements(By.CSS_SELECTOR, "#decisions tr.decision")
    assert any(r.find_element(By.CSS_SELECTOR, ".verdict").text == "marked wrong" for r in rows)
    path = tmp_path / "review.png"
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000


def test_the_page_and_its_sign_in_refuse_strangers(sidecar):
    url, _ = sidecar
    page = httpx2.get(url + "/semcache/ui")
    assert page.status_code == 401 and 'name="token"' in page.text and "stat-requests" not in page.text
    assert "script-src 'nonce-" in page.headers["content-security-policy"] and page.headers["cache-control"] == "no-store"
    wrong = httpx2.post(url + "/semcache/ui/login", data={"token": "nope"})
    assert wrong.status_code == 401 and "semcache_session" not in wrong.headers.get("set-cookie", "")
    signed = httpx2.post(url + "/semcache/ui/login", data={"token": ADMIN})
    assert signed.status_code == 303 and signed.headers["location"] == "/semcache/ui"
    cookie = signed.cookies["semcache_session"]
    assert httpx2.get(url + "/semcache/ui", cookies={"semcache_session": cookie}).status_code == 200
    forged = cookie.split(".")[0] + "." + "0" * 64
    assert httpx2.get(url + "/semcache/ui", cookies={"semcache_session": forged}).status_code == 401
    expired = "1." + cookie.split(".")[1]
    assert httpx2.get(url + "/semcache/ui", cookies={"semcache_session": expired}).status_code == 401
    # a page on another site cannot use the session: its Origin is refused before any route
    foreign = httpx2.post(url + "/semcache/feedback", json={"id": 1, "correct": False}, cookies={"semcache_session": cookie},
                          headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
