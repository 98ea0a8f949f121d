"""The package's layers: imports only point down, and importing semcache changes nothing outside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_contracts_hold():
    """pyproject.toml's [tool.importlinter] contracts: layers top to bottom, no openai below the client."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_import_semcache_does_not_load_the_sdk_or_a_web_server():
    loaded = run_python(
        "import sys, semcache\n"
        "print(sorted(m for m in ('openai', 'httpx2', 'starlette', 'uvicorn', 'torch', 'sentence_transformers') if m in sys.modules))"
    )
    assert loaded == "[]"


def test_faiss_thread_count_of_the_host_is_left_alone():
    """Importing semcache and searching an index restore the calling thread's OpenMP thread count."""
    out = run_python(
        "import faiss, numpy as np\n"
        "faiss.omp_set_num_threads(2)\n"
        "import semcache\n"
        "from semcache.storage.index import FaissIndex\n"
        "before = faiss.omp_get_max_threads()\n"
        "index = FaissIndex(4, approximate_threshold=50)\n"
        "vectors = np.random.default_rng(0).standard_normal((200, 4)).astype('float32')\n"
        "vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)\n"
        "index.add(np.arange(200), vectors)\n"
        "index.search(vectors[0], 3)\n"
        "index.remove([1, 2])\n"
        "print(before, faiss.omp_get_max_threads(), index.approximate)"
    )
    assert out == "2 2 True"
