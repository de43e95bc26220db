"""A full disk and a read-only data dir: a clear 503 for writes, reads go on, no crash.

The real server runs on a data dir that is a small tmpfs (its catalogs are a symlink to a
copy outside it). Filling the tmpfs with a file makes SQLite itself fail with "database or
disk is full"; a read-only bind mount of the same dir is the read-only case. We run as root,
so chmod would not stop a write: these tests need ``mount`` and are skipped without it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import KEY, Server, copy_catalogs

pytestmark = pytest.mark.e2e


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs; skipped where this process may not mount."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no space left; returns it."""
    filler = disk / "filler"
    # Unbuffered: a buffered file would still hold the last partial block at close, and
    # closing would raise ENOSPC again, depending on how much room the disk had left.
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def assert_storage_503(status: int, headers: Message, body: Any, fault: str) -> None:
    assert status == 503, body
    assert headers["Content-Type"] == "application/problem+json"
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == 503
    assert body["storage"] == fault and "nothing was changed" in body["detail"]
    assert int(headers["Retry-After"]) > 0


def _send_until_refused(server: Server, method: str, path: str, body: Any,
                        auth: str | None) -> int:
    """Send one write again and again until the full disk refuses it; returns how many
    were answered before that."""
    for answered in range(500):
        status, headers, reply = server.request(method, path, body, auth)
        if status not in (200, 201):
            assert_storage_503(status, headers, reply, "full")
            return answered
    raise AssertionError(f"{method} {path} was never refused: the disk never filled up")


def test_full_disk_then_read_only_data_dir(tmp_path: Path, built_data_dir: Path,
                                           small_disk: Path,
                                           new_server: Callable[..., Server]) -> None:
    copy_catalogs(built_data_dir, tmp_path / "outside")
    (small_disk / "catalogs").symlink_to(tmp_path / "outside" / "catalogs")
    log = tmp_path / "server.log"
    server = new_server(small_disk, log=log)
    server.start()
    status, turn = server.call("POST", "/api/v1/conversations",
                               {"channel": "web", "shopper_id": "disk-shopper",
                                "text": "blue jeans for men"}, KEY)
    assert status == 201
    cid, token = turn["conversation_id"], turn["token"]
    status, _ = server.call("POST", f"/api/v1/conversations/{cid}/turns",
                            {"action": "more"}, token)
    assert status == 200
    status, before = server.call("GET", f"/api/v1/conversations/{cid}", token=token)
    worker = server.worker_pids()

    filler = fill(small_disk)
    # SQLite's write-ahead log may still have room: once checkpointed, its next writes go
    # over frames it already holds, and a failed commit leaves the blocks it did write for
    # the next one. A write that needs no new block succeeds, as it should, and is kept. So
    # each kind of write is sent until it is refused, and every answer before that is checked
    # to have been kept; the refusal must be the honest 503 that changed nothing.
    writes = [
        ("POST", f"/api/v1/conversations/{cid}/turns", {"action": "more"}, token),
        ("POST", f"/api/v1/conversations/{cid}/turns", {"text": "in black please"}, token),
        ("POST", "/api/v1/conversations", {"channel": "web", "text": "a red dress"}, None),
        ("PUT", "/api/v1/shoppers/disk-shopper/preferences",
         {"attribute": "colour", "value": "Black", "polarity": "avoid"}, KEY),
        ("POST", "/api/v1/shoppers/disk-shopper/events",
         {"type": "search", "query": "green scarf"}, KEY),
    ]
    answered = [_send_until_refused(server, *write) for write in writes]
    turns_answered = answered[0] + answered[1]
    # Reads go on, the turns answered are kept, and the failed ones left nothing behind.
    status, during = server.call("GET", f"/api/v1/conversations/{cid}", token=token)
    assert status == 200 and during["turns"][:len(before["turns"])] == before["turns"]
    assert len(during["turns"]) == len(before["turns"]) + turns_answered
    status, export = server.call("GET", "/api/v1/shoppers/disk-shopper/export", token=KEY)
    assert status == 200
    assert sum(e["query"] == "green scarf" for e in export["tables"]["events"]) == answered[4]
    assert any(p["value"] == "Black" and p["polarity"] == "avoid"
               for p in export["tables"]["preferences"]) == (answered[3] > 0)
    for path in ("/healthz", "/api/v1/search?q=blue+jeans", "/api/v1/products/15970",
                 "/api/v1/shoppers/disk-shopper/profile", "/api/v1/shoppers/disk-shopper/export"):
        status, body = server.call("GET", path, token=KEY)
        assert status == 200, (path, body)
    assert server.worker_pids() == worker, "the worker crashed"
    assert "storage full on POST /api/v1/conversations/" in log.read_text()

    filler.unlink()  # space again: the same server writes again, nothing to restart
    status, turn = server.call("POST", f"/api/v1/conversations/{cid}/turns",
                               {"text": "in black please"}, token)
    assert status == 200, turn
    status, after = server.call("GET", f"/api/v1/conversations/{cid}", token=token)
    assert len(after["turns"]) == len(before["turns"]) + turns_answered + 1
    server.stop()
    with sqlite3.connect(small_disk / "shopper.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()

    # The same data dir, read-only (a bind mount: root cannot write through it either).
    ro = tmp_path / "ro"
    ro.mkdir()
    _mount("--bind", str(small_disk), str(ro))
    try:
        _mount("-o", "remount,bind,ro", str(ro))
        assert not os.access(ro, os.W_OK)
        server = new_server(ro, log=log)
        server.start()  # starts, no crash loop
        status, kept = server.call("GET", f"/api/v1/conversations/{cid}", token=token)
        assert status == 200 and kept["turns"] == after["turns"]
        status, profile = server.call("GET", "/api/v1/shoppers/disk-shopper/profile",
                                      token=KEY)
        assert status == 200
        for method, path, body, auth in writes:
            assert_storage_503(*server.request(method, path, body, auth), "read_only")
        assert "storage read_only on POST" in log.read_text()
        assert "cannot be written" in log.read_text()  # it says why it serves reads only
        server.stop()
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_a_commit_that_fails_on_a_full_disk_leaves_the_connection_usable(
        small_disk: Path) -> None:
    """In WAL mode a full disk fails at COMMIT; the connection (one per server thread) must
    not stay inside the failed transaction, or every later write on it would fail too."""
    from assistant.store import Store, open_db, storage_fault

    store = Store(open_db(small_disk / "t.db"))
    store.add_event("s", "view", product_id="1")
    filler = fill(small_disk)
    with pytest.raises(sqlite3.OperationalError) as failed:
        with store.transaction():
            for i in range(50):
                store.add_event("s", "search", query="x" * 2000 + str(i))
    assert storage_fault(failed.value) == "full"
    assert not store.db.conn.in_transaction
    assert len(store.events("s")) == 1  # nothing half-written
    filler.unlink()
    with store.transaction():
        store.add_event("s", "view", product_id="2")
    assert len(store.events("s")) == 2
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
