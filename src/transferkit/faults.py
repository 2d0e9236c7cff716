"""Named points where tests kill the process for real (SIGKILL), to prove that runs resume exactly.

Set ``TRANSFERKIT_KILL_AT`` to a point's name, e.g. ``step:7`` or ``checkpoint-write``; unset, each
point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

KILL_AT = "TRANSFERKIT_KILL_AT"


def kill_point(name: str) -> None:
    if os.environ.get(KILL_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)
