"""A web app of transferkit (`serve`, `label`) as a real process, for tests and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    command: list[str], ready_url: str, log: Path, timeout_s: float = 90, **popen: Any
) -> subprocess.Popen[bytes]:
    """Starts `command`, its output going to `log` (a file, not a pipe: a full pipe would stall the
    server), and returns once `ready_url` answers 200.

    Raises:
        RuntimeError: the process exited, or did not answer within `timeout_s`; with its log.
    """
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, **popen)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as answer:
                if answer.status == 200:
                    return process
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"{ready_url} did not answer within {timeout_s:g} s:\n{log.read_text()}")
