"""A PROTOTYPE for the load benchmark only: `shopper serve` with a different admission rule.

``python -m web.benchmarks.admission serve ...`` runs ``web.cli`` after replacing
``web.api._inflight`` (which counts turns in progress, never more than gunicorn's threads,
so it cannot shed) with a bounded queue: at most ``SHOPPER_PROTO_ACTIVE`` turns run at once
per worker, at most ``SHOPPER_PROTO_QUEUE`` wait for a slot (a turn beyond that is answered
503 + Retry-After at once), and none waits longer than ``SHOPPER_PROTO_WAIT`` seconds.
Run it with more gunicorn threads than active turns (``--threads 64``) so waiting requests
are inside the app, where the wait can be bounded, not in gunicorn's queue, where it
cannot. Nothing in the product uses this module.
"""

from __future__ import annotations

import os
import sys
import threading

from assistant.errors import Unavailable


class BoundedWait:
    """At most ``active`` turns at once; at most ``queue`` waiting (beyond: 503 at once);
    none waiting longer than ``wait_s`` (then: 503)."""

    def __init__(self, active: int, queue: int, wait_s: float) -> None:
        self._slots = threading.BoundedSemaphore(active)
        self._queue = queue
        self._waiting = 0
        self._lock = threading.Lock()
        self._wait_s = wait_s

    def _busy(self) -> Unavailable:
        return Unavailable("the assistant is very busy right now and did not take this "
                           "turn; nothing was lost, please send it again in a moment",
                           retry_after=2)

    def __enter__(self) -> None:
        if self._slots.acquire(blocking=False):
            return
        with self._lock:
            if self._waiting >= self._queue:
                raise self._busy()
            self._waiting += 1
        try:
            got = self._slots.acquire(timeout=self._wait_s)
        finally:
            with self._lock:
                self._waiting -= 1
        if not got:
            raise self._busy()

    def __exit__(self, *exc: object) -> None:
        self._slots.release()


def main() -> int:
    import web.api
    from web.cli import main as cli_main

    web.api._inflight = BoundedWait(  # type: ignore[assignment]
        int(os.environ.get("SHOPPER_PROTO_ACTIVE", "4")),
        int(os.environ.get("SHOPPER_PROTO_QUEUE", "40")),
        float(os.environ.get("SHOPPER_PROTO_WAIT", "3")))
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
