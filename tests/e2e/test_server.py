"""The real server (`shopper serve`, granian) on a free port: a whole conversation over HTTP,
and a restart in the middle that loses nothing."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import KEY, Server

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
