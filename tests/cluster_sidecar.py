"""One sidecar replica for the cluster tests and benchmark, as its own process, with the fake embedder.

    python tests/cluster_sidecar.py          # settings from SEMCACHE_* (port, store, policy, ...)

It is ``semcache serve`` (``server.serve``: ``create_app`` under uvicorn with the sidecar's protocol) with ``conftest.WordEmbedder`` instead of
the packaged model, so a replica starts in a second or two: the tests are about what replicas
share, not about the model. Pass the match policy as a policy file (``SEMCACHE_POLICY``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import WordEmbedder  # noqa: E402


def main() -> None:
    from semcache.config import Settings
    from semcache.errors import SemcacheError
    from semcache.server import create_app, serve

    settings = Settings.load(environ=os.environ)
    try:
        app = create_app(settings, environ=os.environ, embedder=WordEmbedder())
        serve(settings, environ=os.environ, log_level=os.environ.get("SIDECAR_LOG_LEVEL", "warning"), app=app)
    except SemcacheError as exc:  # as `semcache serve` reports it
        print(f"semcache: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
