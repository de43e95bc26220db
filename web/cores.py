"""One core for each worker of `shopper serve`.

A worker runs Python under one interpreter lock, so it never uses much more than one core;
left to the kernel, the two workers' threads moved between the cores (220 migrations a
second under load) and for stretches shared one while the other served the load generator
or idled. Pinned, each worker has a core of its own: under 64 shoppers at 500 turns/s on
this 2-core machine, three interleaved 60 s pairs gave a p99 of 26-33 ms against 165-395
ms, at 2.2-2.5 ms of server CPU a request against 2.8-3.7 (docs/performance.md,
"3 December, night").

Workers claim cores with a lock file per core (``personal-shopper-cores-UID/core-N.lock``
in the temporary directory, one set per machine and user, so two servers on one machine
share them out too), held for the life of the worker: the kernel frees a dead worker's
lock, so the worker started in its place takes the same core. A lone worker is not pinned
(it has no other worker to crowd, and its turns' model and SQLite calls, made without the
lock, may run on another core); with more workers than cores, or when every core is held
by another server's workers, a worker is left to the kernel.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path

__all__ = ["claim_core"]

log = logging.getLogger(__name__)

_held: list[int] = []  # the lock's descriptor, kept open for the life of the process


def _lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"personal-shopper-cores-{os.getuid()}"


def claim_core(workers: int) -> int | None:
    """Pin this process (every thread it has and will start) to a core no other worker
    holds; the core, or None when it stays unpinned."""
    cores = sorted(os.sched_getaffinity(0))
    if not 2 <= workers <= len(cores):
        return None
    folder = _lock_dir()
    for core in cores:
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(folder / f"core-{core}.lock",
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            log.warning("cannot claim a core in %s (%s): left to the kernel", folder, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held.append(fd)
        _pin({core})
        log.info("pinned to core %d", core)
        return core
    log.info("every core is held by another worker: left to the kernel")
    return None


def _pin(cpus: set[int]) -> None:
    """Every thread of this process (threads started later inherit from their starter)."""
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except OSError:  # a thread that ended meanwhile
            pass

