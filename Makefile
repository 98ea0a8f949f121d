# The two commands of the quick start: `make demo` and `make test` (and `make demo-cluster`: replicas on Redis;
# `make docs`: the documentation site in site/).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-cluster test bench docs clean redis-server chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: it takes the CPU wheel; a bare torch pulls several GB of CUDA.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,docs,multilingual]'
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/semcache demo

# Two sidecar replicas on one Redis (a redis-server the demo starts itself) and the mock upstream.
demo-cluster: $(STAMP) redis-server
	HF_HUB_OFFLINE=1 $(BIN)/python -m semcache.tools.cluster_demo

test: $(STAMP) redis-server chromium
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# The Redis tests start their own redis-server on a free loopback port; install Debian's
# package when it is missing (CI runs as root on Debian), else say what to install.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || test -x /usr/bin/redis-server || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server (Debian's package) for the Redis tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; \
	  else \
	    echo "the Redis tests need redis-server: run 'sudo apt-get install redis-server' (Debian/Ubuntu)" \
	         "or 'brew install redis' (macOS), then 'make test' again" >&2; exit 1; \
	  fi; }

# The documentation site (MkDocs), built strictly: a broken link or a page missing from the nav fails.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# The review page's test drives a headless Chromium through Selenium: Debian's chromium and
# chromium-driver (Selenium's own driver download is never used), installed like redis-server.
chromium:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver (Debian's packages) for the review page's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	  else \
	    echo "the browser test needs Chromium and its driver: run 'sudo apt-get install chromium chromium-driver' (Debian/Ubuntu)" \
	         "or 'brew install --cask chromium chromedriver' (macOS), then 'make test' again" >&2; exit 1; \
	  fi; }

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis site
