"""Child processes on loopback for the demos, benchmarks and tests: a free port, a clean stop."""

from __future__ import annotations

import signal
import socket
import subprocess

__all__ = ["free_port", "stop_process"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the child binds it itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop ``process`` as an operator would: SIGTERM (it flushes and closes), SIGKILL after ``timeout`` s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
