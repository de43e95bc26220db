"""Storage errors become a clear 503 and leave nothing half-written (in-process app, real
SQLite file). tests/e2e/test_storage.py does the same with a real full disk and a read-only
mount; these run everywhere, also where mounting is not allowed.

SQLite raises its own genuine errors here: ``PRAGMA max_page_count`` caps the file at its
current size, so the next page it needs fails with SQLITE_FULL ("database or disk is full"),
and ``PRAGMA query_only`` makes every write fail with SQLITE_READONLY.
"""

from __future__ import annotations

import gc
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from assistant.store import WalCheckpointer, open_db, storage_fault
from tests.conftest import SERVER


@pytest.mark.parametrize("pragma,fault", [
    ("max_page_count = {pages}", "full"),
    ("query_only = ON", "read_only"),
])
def test_a_failed_write_is_a_503_with_nothing_half_written(
        client, services, caplog: pytest.LogCaptureFixture, pragma: str, fault: str) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/conversations", json={"channel": "web", "shopper_id": "s-full",
                                                   "text": "blue jeans for men"},
                    headers=SERVER)
    cid, token = r.get_json()["conversation_id"], r.get_json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    before = client.get(f"/api/v1/conversations/{cid}", headers=auth).get_json()
    db = services.db()  # the connection this thread's requests use
    db.execute("VACUUM")  # no free pages and full pages: any new row needs a new page
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA {pragma.format(pages=pages)}")

    long_text = "in black please " + "with a long story about my week " * 60
    writes = [
        ("post", f"/api/v1/conversations/{cid}/turns", {"text": long_text}, auth),
        ("post", "/api/v1/conversations", {"channel": "web", "text": long_text}, {}),
    ]
    if fault == "read_only":  # a small row may still fit in a page the file already has
        writes.append(("put", "/api/v1/shoppers/s-full/preferences",
                       {"attribute": "colour", "value": "Black", "polarity": "avoid"}, SERVER))
    for method, path, body, headers in writes:
        with caplog.at_level(logging.ERROR, logger="shopper.api"):
            r = getattr(client, method)(path, json=body, headers=headers)
        assert r.status_code == 503, r.get_json()
        assert r.mimetype == "application/problem+json"
        problem = r.get_json()
        assert problem["status"] == 503 and problem["storage"] == fault
        assert problem["title"] and "nothing was changed" in problem["detail"]
        assert int(r.headers["Retry-After"]) > 0
        assert f"storage {fault} on {method.upper()} {path}" in caplog.text
        assert long_text not in caplog.text  # an id and a path, never what was typed
    # Reads go on; the failed turn left no trace.
    assert client.get(f"/api/v1/conversations/{cid}", headers=auth).get_json() == before
    assert client.get("/api/v1/shoppers/s-full/profile", headers=SERVER).status_code == 200
    assert db.conn.in_transaction is False

    db.execute("PRAGMA max_page_count = 1073741823")
    db.execute("PRAGMA query_only = OFF")
    r = client.post(f"/api/v1/conversations/{cid}/turns", json={"text": "in black please"},
                    headers=auth)
    assert r.status_code == 200  # the same connection writes again
    after = client.get(f"/api/v1/conversations/{cid}", headers=auth).get_json()
    assert len(after["turns"]) == len(before["turns"]) + 1
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_constraint_error_is_a_bug_not_a_storage_fault(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = open_db(tmp_path / "t.db")
    db["link_codes"].insert({"code": "A", "shopper_id": "s", "expires_at": "x"})
    with pytest.raises(sqlite3.IntegrityError) as info:
        db["link_codes"].insert({"code": "A", "shopper_id": "s", "expires_at": "x"})
    assert storage_fault(info.value) is None
    assert storage_fault(OSError(28, "No space left on device")) == "full"
    assert storage_fault(OSError(30, "Read-only file system")) == "read_only"


def test_two_workers_answering_one_conversation_at_once_keep_one_answer(
        client, services) -> None:  # type: ignore[no-untyped-def]
    # Two workers (two connections) read the conversation at the same version and both
    # answer; the second to save is refused (409 to its shopper: "send it again") and
    # leaves no trace, so the transcript never holds two turns with one number.
    from assistant.errors import Conflict
    from assistant.store import Store

    r = client.post("/api/v1/conversations", json={"channel": "web", "text": "a watch"},
                    headers=SERVER)
    cid = r.get_json()["conversation_id"]
    first, second = Store(open_db(services.db_path)), Store(open_db(services.db_path))
    a, b = first.load_conversation(cid), second.load_conversation(cid)
    for conv in (a, b):
        conv.version += 1
    first.save_turn(a, a.version - 1, 1, {"text": "in gold"}, {"message": "first"})
    with pytest.raises(Conflict):
        second.save_turn(b, b.version - 1, 1, {"text": "in steel"}, {"message": "second"})
    turns = first.turns(cid)
    assert [t["seq"] for t in turns] == [0, 1] and turns[1]["message"] == "first"
    assert first.load_conversation(cid).version == a.version


def test_the_write_ahead_log_is_copied_back_by_its_own_thread_not_by_turns(
        client, services) -> None:  # type: ignore[no-untyped-def]
    """The server's turns commit to the write-ahead log and never copy it back into the
    database themselves (that copy and its fsyncs made about one turn in 160 wait 2-14 ms);
    a thread of the server's does it, and nothing a turn wrote is missing from the database
    file afterwards."""
    services.checkpointer = WalCheckpointer(services.db_path, interval=0.05).start()
    try:
        r = client.post("/api/v1/conversations", json={"channel": "web", "text": "a watch"},
                        headers=SERVER)
        cid = r.get_json()["conversation_id"]
        for i in range(30):
            r = client.post(f"/api/v1/conversations/{cid}/turns", headers=SERVER,
                            json={"action": "more"} if i % 2 else {"text": "in black"})
            assert r.status_code == 200
        assert services.db().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        seen, deadline = services.checkpointer.checkpoints, time.monotonic() + 10
        while services.checkpointer.checkpoints < seen + 2:  # one after the last write
            assert time.monotonic() < deadline, "no checkpoint in 10 s"
            time.sleep(0.02)
    finally:
        services.checkpointer.stop()
    with sqlite3.connect(services.db_path) as db:
        busy, logged, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert (busy, copied) == (0, logged) and logged > 0  # all of the log was copied
    db.close()
    # The database file alone (the log set aside) holds every turn.
    only_db = services.db_path.with_name("copy.db")
    only_db.write_bytes(services.db_path.read_bytes())
    with sqlite3.connect(only_db) as db:
        turns = db.execute("SELECT count(*) FROM turns WHERE conversation_id = ?",
                           (cid,)).fetchone()[0]
    db.close()
    assert turns == 31


def _open_db_files(path: Path) -> int:
    """How many of this process's file descriptors point at ``path`` (or its -wal)."""
    fd_dir = Path("/proc/self/fd")
    count = 0
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        count += target in (str(path), f"{path}-wal")
    return count


def test_a_request_thread_that_ends_closes_its_database_files(client, services) -> None:  # type: ignore[no-untyped-def]
    """granian retires idle request threads and starts new ones for the next rush; each
    thread's connection must be closed when the thread ends, not left open until the
    garbage collector happens to run (a server given two bursts 40 s apart held 298 open
    descriptors of shopper.db)."""
    client.get("/healthz")
    services.db()
    before = _open_db_files(services.db_path)

    def turn() -> None:  # what a request thread does: open a conversation, so write
        r = client.post("/api/v1/conversations", json={"channel": "web", "text": "red dress"})
        assert r.status_code == 201

    def settled() -> int:  # a thread's locals go a moment after join() returns
        deadline = time.monotonic() + 2
        while (n := _open_db_files(services.db_path)) > before + 4 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        return n

    gc.disable()  # not the collector's doing
    try:
        for _ in range(4):
            threads = [threading.Thread(target=turn) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # SQLite keeps the descriptor of a closed connection's file open while another
            # connection of the process holds a lock on that file (closing it would drop
            # the lock) and gives it to the next connection it opens: one or two may wait,
            # but they do not add up with each rush as 8 threads' 16 did.
            assert settled() <= before + 4
    finally:
        gc.enable()
