"""Model hubs without waiting: cached weights load offline, missing ones fail in seconds, not minutes.

Hugging Face Hub clients retry a failed connection five times with back-off (about a minute per
file) before they give up. A three-second probe decides first whether the hub can be reached; if not,
the load runs in the hub library's offline mode, which serves its cache and fails at once without it.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from transferkit.errors import ModelError

PROBE_TIMEOUT_S = 3.0


@functools.cache
def reachable(url: str) -> bool:
    """Whether a TCP connection to the host of `url` opens within PROBE_TIMEOUT_S (cached per process)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def hf_hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set or the Hugging Face Hub cannot be reached."""
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or not reachable(constants.ENDPOINT)


@contextmanager
def hf_hub_access(spec: str, local_hint: str) -> Iterator[bool]:
    """Runs a hub load in offline mode when the hub cannot be reached; yields whether it is offline.

    A file that is neither cached nor downloadable becomes a ModelError that says how to load the
    weights from disk instead (`local_hint`).
    """
    from huggingface_hub import constants

    offline = hf_hub_offline()
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = offline
    try:
        yield offline
    except OSError as err:  # huggingface_hub's not-found and offline errors are OSErrors
        state = "offline" if offline else "online, but the download failed"
        raise ModelError(
            f"Cannot load the weights of {spec}: they are not in the local cache and the Hugging Face Hub "
            f"is {state} ({type(err).__name__}). {local_hint}"
        ) from err
    finally:
        constants.HF_HUB_OFFLINE = saved
