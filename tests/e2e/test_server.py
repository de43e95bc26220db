"""The real server (`shopper serve`, granian) on a free port: a whole conversation over HTTP,
and a restart in the middle that loses nothing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import KEY, READY, Server, copy_catalogs

pytestmark = pytest.mark.e2e
__all__ = ["KEY", "Server"]  # the helper now lives in tests/e2e/conftest.py


def test_a_whole_conversation_survives_a_restart(server: Server) -> None:
    status, turn = server.call("POST", "/api/v1/conversations",
                               {"channel": "web", "text": "I need running shoes for my husband"})
    assert status == 201
    cid, token = turn["conversation_id"], turn["token"]
    q = turn["question"]
    assert q is not None and q["options"]
    status, turn = server.call("POST", f"/api/v1/conversations/{cid}/turns",
                               {"answer": {"attribute": q["attribute"],
                                           "value": q["options"][0]["value"]}}, token)
    assert status == 200

    server.stop()  # the server goes away between two turns ...
    server.start()  # ... and comes back on the same data dir

    status, conv = server.call("GET", f"/api/v1/conversations/{cid}", token=token)
    assert status == 200 and len(conv["turns"]) == 2
    for _ in range(3):
        if turn["question"] is None:
            break
        q = turn["question"]
        status, turn = server.call("POST", f"/api/v1/conversations/{cid}/turns",
                                   {"answer": {"attribute": q["attribute"], "value": None}},
                                   token)
        assert status == 200
    status, turn = server.call("POST", f"/api/v1/conversations/{cid}/turns",
                               {"action": "more"}, token)
    assert status == 200 and len(turn["picks"]) == 5
    for pick in turn["picks"]:
        assert pick["attributes"]["article_type"] == "Sports Shoes"
        assert pick["attributes"]["gender"] in ("Men", "Unisex")
        assert pick["reasons"]


def test_server_key_and_errors_over_http(server: Server) -> None:
    status, body = server.call("GET", "/api/v1/shoppers/s1/profile")
    assert status == 401 and body["status"] == 401
    status, body = server.call("GET", "/api/v1/shoppers/s1/profile", token=KEY)
    assert status == 200 and body["shopper_id"] == "s1"
    status, body = server.call("GET", "/no/such/page")
    assert status == 404
    status, body = server.call("GET", "/api/v1/no/such/thing")
    assert status == 404 and body["status"] == 404
    status, body = server.call("GET", "/api/v1/openapi.json")
    assert status == 200 and "/api/v1/search" in body["paths"]


def test_a_stop_is_prompt_and_clean(server: Server) -> None:
    """SIGTERM after a turn: the worker finishes and the server exits well within the server's
    20 s kill timeout (a worker that hung on its way out once made every stop, every
    deploy and every restart take 20 s)."""
    status, _ = server.call("POST", "/api/v1/conversations",
                            {"channel": "web", "text": "a black watch"})
    assert status == 201
    started = time.monotonic()
    server.stop()
    took = time.monotonic() - started
    assert server.proc is not None and server.proc.returncode == 0, server.tail()
    assert took < 10, f"the server took {took:.1f} s to stop\n{server.tail()}"


def _cores_of(pid: int) -> set[frozenset[int]]:
    """The cores each thread of a process may run on, one set per distinct mask."""
    out: set[frozenset[int]] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out.add(frozenset(os.sched_getaffinity(int(task.name))))
        except OSError:  # a thread that ended meanwhile
            pass
    return out


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_each_worker_has_a_core_of_its_own(tmp_path: Path, built_data_dir: Path,
                                           new_server: Callable[..., Server]) -> None:
    """A worker runs Python under one lock, about one core's worth; left to the kernel, two
    workers' threads were often put on one core while the other idled. Each takes a core,
    every thread of it, and a worker started in place of a killed one takes the core it
    left; `--no-pin-workers` leaves them to the kernel."""
    data_dir = copy_catalogs(built_data_dir, tmp_path / "data")
    # Cores are claimed machine-wide (in the temporary directory): a server another test
    # left running would hold them, so this one claims its own set.
    (tmp_path / "tmp").mkdir()
    srv = new_server(data_dir, workers=2, env={"TMPDIR": str(tmp_path / "tmp")})
    srv.start()
    held = {}
    for pid in srv.worker_pids():
        (mask,) = _cores_of(pid)
        assert len(mask) == 1, mask
        held[pid] = mask
    assert len(set(held.values())) == 2
    assert srv.proc is not None  # the master is not pinned
    assert _cores_of(srv.proc.pid) == {frozenset(os.sched_getaffinity(0))}

    victim = next(iter(held))
    ready_lines = srv.log.read_bytes().count(READY)
    os.kill(victim, signal.SIGKILL)
    srv.wait_ready(ready_lines + 1)
    (new,) = [p for p in srv.worker_pids() if p not in held]
    assert _cores_of(new) == {held[victim]}
    assert srv.call("GET", "/healthz")[0] == 200
    srv.stop()

    free = new_server(data_dir, workers=2, args=("--no-import", "--no-pin-workers"))
    free.start()
    for pid in free.worker_pids():
        assert _cores_of(pid) == {frozenset(os.sched_getaffinity(0))}
    free.stop()
