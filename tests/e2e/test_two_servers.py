"""Two servers on one data dir share it safely.

Two real `shopper serve` processes start at the same moment on one fresh data dir (both
create and migrate the same new SQLite file), then six shoppers talk to them from threads,
their requests going to the two servers in turn: a conversation's turns are answered by both
processes, and signed-in shoppers' preferences and events are written by both. SQLite in WAL
mode serialises writers across processes (each write is one short ``BEGIN IMMEDIATE``
transaction, and a turn saves only if the conversation's version is the one it read).
Afterwards nothing answered is lost and the file passes its integrity check.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.browser.conftest import wait_for_health
from tests.e2e.conftest import Server, copy_catalogs
from tests.e2e.traffic import Traffic, check_nothing_answered_was_lost

pytestmark = pytest.mark.e2e


def test_two_servers_on_one_data_dir_lose_nothing(
        tmp_path: Path, built_data_dir: Path, new_server: Callable[..., Server]) -> None:
    data_dir = copy_catalogs(built_data_dir, tmp_path / "data")
    servers = [new_server(data_dir, log=tmp_path / f"server{i}.log") for i in (1, 2)]
    for server in servers:
        server.launch()  # both at once: both open and migrate the new database
    for server in servers:
        assert server.proc is not None
        wait_for_health(server.proc, server.url + "/healthz", server.log)
        server.wait_ready(1)
    try:
        traffic = Traffic(*servers)
        for t in traffic.threads:
            t.start()
        try:
            traffic.wait(answered=120, inflight=0, timeout=90)
        finally:
            traffic.stop.set()
            for t in traffic.threads:
                t.join(timeout=30)
        assert not traffic.errors, traffic.errors
        assert sum(s.cut for s in traffic.shoppers) == 0
        for server in servers:
            log = server.log.read_text()
            assert "ERROR" not in log and "Traceback" not in log, server.tail()
        check_nothing_answered_was_lost(servers[1], traffic)
    finally:
        for server in servers:
            server.stop()
    with sqlite3.connect(data_dir / "shopper.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()
