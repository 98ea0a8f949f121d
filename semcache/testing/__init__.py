"""Test tooling for semcache and for users' own tests: the mock OpenAI upstream and a loopback server.

``running_server(app)`` serves an ASGI app on a free loopback port; ``create_mock_app`` is the
bundled OpenAI-compatible mock (rate limits, faults, streaming).
"""

from .mock import create_app as create_mock_app
from .serving import running_server

__all__ = ["create_mock_app", "running_server"]
