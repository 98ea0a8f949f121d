"""Take the screenshot of the review page in benchmarks/results/review_page.png.

A real sidecar (the packaged model, the default policy, a $1/day budget) in front of the bundled mock
upstream, two callers asking questions, their repeats and paraphrases in a few rounds (a history
sample after each), then headless Chromium signs in to /semcache/ui and saves the page.

    HF_HUB_OFFLINE=1 python -m benchmarks.review_page_screenshot [--out benchmarks/results/review_page.png]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import openai
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from semcache.config import Settings
from semcache.server import create_app
from semcache.testing.mock import create_app as create_mock
from semcache.testing.serving import running_server

ADMIN = "screenshot-admin"
ROUNDS = [
    ["What is the capital of France?", "Who wrote Pride and Prejudice?", "How do I reverse a list in Python?"],
    ["What is the capital of France?", "what is the capital of france", "Convert 10 miles to kilometers"],
    ["Who wrote Pride and Prejudice?", "who wrote pride and prejudice", "Convert 12 miles to kilometers"],
    ["How can I reverse a list in Python?", "What is the boiling point of water?", "How do I reverse a list in Python?"],
    ["What is the boiling point of water at sea level?", "How many days are in a leap year?", "How many days are in a year?"],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/review_page.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, running_server(create_mock()) as mock:
        settings = Settings(cache_dir=directory, upstream_base_url=mock + "/v1", budget_usd_per_day=1.0)
        app = create_app(settings, environ={"SEMCACHE_ADMIN_TOKEN": ADMIN})
        with running_server(app) as url:
            sidecar = app.state.sidecar
            clients = [openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0) for key in ("sk-alice", "sk-bob")]
            sidecar.history.sample()
            for round_number, questions in enumerate(ROUNDS):
                for i, question in enumerate(questions):
                    clients[1 if round_number == 0 and i == 2 else 0].chat.completions.create(  # bob asks a few
                        model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
                sidecar.history.sample()
                time.sleep(1)  # one sample a second here (the sidecar takes one a minute)
            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--window-size=1400,2050", f"--user-data-dir={directory}/chromium"):
                options.add_argument(flag)
            driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"))
            try:
                driver.get(url + "/semcache/ui")
                driver.find_element(By.ID, "token").send_keys(ADMIN)
                driver.find_element(By.ID, "sign-in").click()
                WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "stat-requests"))
                driver.save_screenshot(args.out)
            finally:
                driver.quit()
                for client in clients:
                    client.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
