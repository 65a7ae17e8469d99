"""Who holds a lease on shared work (outbox rows, a chat's updates): one name per running process.

A lease runs out after a while, so another process takes over the work of one that died. On the same
machine there is no need to wait that long: a holder whose process is gone is known to be gone.
"""

from __future__ import annotations

import os
import secrets
import socket


def new_owner() -> str:
    """This process's name as a lease holder: host, process id and a random tag (process ids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def gone(owner: str | None) -> bool:
    """Whether `owner` is a process of this machine that no longer runs (killed, crashed, stopped)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's: its lease has to run out
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another account's process with that id: alive
        return False
    return False
