"""Who runs a trial, and whether that process is still alive.

Every driver process has an identity ``host:pid:start`` (``start`` = the process's start
time in clock ticks on Linux, so a recycled pid is not mistaken for the old process).
A running trial records its driver's identity and a heartbeat time. A trial is
*abandoned* when its driver is known to be dead: on the same host, the process no longer
exists (checked at once, no waiting); on another host, its heartbeat is older than
``stale_after_s``.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

HEARTBEAT_S = 10.0       # how often a driver refreshes its running trials' heartbeats
STALE_AFTER_S = 60.0     # a remote driver silent this long is taken for dead


def _start_ticks(pid: int) -> str:
    """The process's start time (field 22 of /proc/PID/stat), or '' where /proc is unavailable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_identity() -> str:
    """This process's identity as recorded in the trials it runs."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def process_alive(identity: str) -> bool | None:
    """True/False for a process on this host; None when it runs elsewhere (unknowable here)."""
    parts = identity.rsplit(":", 2)
    if len(parts) != 3:
        return False  # not an identity we wrote: treat as dead
    host, pid_text, ticks = parts
    if host != socket.gethostname():
        return None
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not ticks or _start_ticks(pid) == ticks


def is_abandoned(row: Any, now: float | None = None, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether a running trial row (with ``owner`` and ``heartbeat_at``) has lost its driver."""
    if row.owner is None:
        return True  # written before owners were recorded: its driver is gone
    alive = process_alive(row.owner)
    if alive is not None:
        return not alive
    now = time.time() if now is None else now
    return row.heartbeat_at is None or now - row.heartbeat_at > stale_after_s


class Heartbeat:
    """A daemon thread calling ``beat(numbers())`` every ``interval_s`` seconds until stopped."""

    def __init__(self, beat: Callable[[list[int]], None], numbers: Callable[[], Iterable[int]],
                 interval_s: float = HEARTBEAT_S) -> None:
        self._beat, self._numbers, self.interval_s = beat, numbers, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="archscout-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._beat(list(self._numbers()))
            except Exception:  # noqa: BLE001 - a missed beat is retried next interval
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
