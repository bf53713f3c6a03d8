"""The Hatchet client: one per process and namespace, created on first use.

Nothing connects at import time; the client reads HATCHET_CLIENT_* when it is first needed.
"""

from __future__ import annotations

import os
import threading

from hatchet_sdk import Hatchet

_CLIENT_LOCK = threading.Lock()
_CLIENTS: dict[tuple[int, str], Hatchet] = {}


def client_key() -> tuple[int, str]:
    """A forked child needs its own connection; a changed namespace needs its own client."""
    return (os.getpid(), os.environ.get("HATCHET_CLIENT_NAMESPACE", ""))


def hatchet_client() -> Hatchet:
    """One client per process and namespace, created on first use from HATCHET_CLIENT_*."""
    with _CLIENT_LOCK:
        key = client_key()
        client = _CLIENTS.get(key)
        if client is None:
            client = Hatchet()
            _CLIENTS[key] = client
        return client
