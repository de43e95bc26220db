"""Crashes in the middle of turns lose nothing that was answered.

The real server (two granian workers) on a copy of the session's catalogs and its own SQLite
file. Six shoppers talk to it at once from threads (tests/e2e/traffic.py): typed words, taps,
skips, "more", feedback, and for signed-in shoppers stated preferences (PUT) and events (POST)
with the server key. While turns are in flight one worker is SIGKILLed and the talk goes on;
then the master and every worker are SIGKILLed at once, again mid-turn, and the server is
started again on the same data dir. Then: every turn answered 200 is in its transcript, every
conversation continues from where it stood, every answered preference and event is kept,
and SQLite's integrity check passes. Nothing is faked.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, copy_catalogs
from tests.e2e.traffic import Traffic, check_nothing_answered_was_lost

pytestmark = pytest.mark.e2e


def test_killing_a_worker_then_the_whole_server_mid_turn_loses_nothing_answered(
        tmp_path: Path, built_data_dir: Path, new_server: Callable[..., Server]) -> None:
    data_dir = copy_catalogs(built_data_dir, tmp_path / "data")
    # Six shoppers on one address start conversations faster than one address may
    # (60 a minute): lift that limit, which is not what this test is about.
    server = new_server(data_dir, workers=2, log=tmp_path / "server.log",
                        args=("--no-import", "--anon-conversations-per-minute", "100000"))
    server.start()
    traffic = Traffic(server)
    for t in traffic.threads:
        t.start()
    try:
        # Fault 1: a worker dies while it computes a turn; the other serves on, granian
        # starts a new one.
        traffic.wait(answered=30, inflight=3)
        victim = server.busy_worker()
        cut_before = sum(s.cut for s in traffic.shoppers)
        inflight = [traffic.inflight]
        os.kill(victim, signal.SIGKILL)
        traffic.wait(answered=traffic.answered + 20, inflight=0, timeout=60)
        deadline = time.monotonic() + 15
        while victim in server.worker_pids():  # it may take a moment to finish dying
            assert time.monotonic() < deadline, f"worker {victim} survived SIGKILL"
            time.sleep(0.05)
        cut_by_worker = sum(s.cut for s in traffic.shoppers) - cut_before
        # Fault 2: the master and every worker die at once, turns in flight.
        traffic.wait(answered=traffic.answered + 10, inflight=3)
        inflight.append(traffic.inflight)
        server.kill_all()
    finally:
        traffic.stop.set()
        for t in traffic.threads:
            t.join(timeout=30)
    assert not traffic.errors, traffic.errors
    cut = sum(s.cut for s in traffic.shoppers)
    convs = [c for s in traffic.shoppers for c in s.convs]
    answered_turns = sum(len(c.answered) for c in convs)
    print(f"\nfaults: 1 worker SIGKILL + 1 whole-group SIGKILL with {inflight} requests in "
          f"flight; {len(convs)} conversations, {answered_turns} turns answered, {cut} "
          f"requests without an answer ({cut_by_worker} after the worker kill)")

    server.start()  # the same data dir: SQLite recovers its write-ahead log
    try:
        check_nothing_answered_was_lost(server, traffic)
    finally:
        server.stop()
    with sqlite3.connect(data_dir / "shopper.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()
