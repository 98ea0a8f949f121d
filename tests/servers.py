"""``running_server`` for tests: ``from servers import running_server`` or ``from tests.servers import ...``.

The implementation lives in ``semcache.testing.serving`` (the demo and the benchmarks use it too).
"""

from semcache.testing.serving import running_server

__all__ = ["running_server"]
