"""The real server (`shopper serve`, gunicorn) on a free port: a whole conversation over HTTP,
and a restart in the middle that loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import find_free_port, wait_for_health

pytestmark = pytest.mark.e2e
KEY = "e2e-server-key"


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "SHOPPER_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "web.cli", "serve", "--host", "127.0.0.1", "--port",
                 str(self.port), "--data-dir", str(self.data_dir), "--no-import",
                 "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=Path(__file__).resolve().parents[2])
        wait_for_health(self.proc, self.url + "/healthz", self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def call(self, method: str, path: str, body: Any = None,
             token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            with exc:
                raw = exc.read()
                is_json = "json" in (exc.headers.get("Content-Type") or "")
                return exc.code, json.loads(raw) if is_json and raw else raw.decode()


@pytest.fixture
def server(tmp_path: Path, built_data_dir: Path) -> Iterator[Server]:
    shutil.copytree(built_data_dir / "catalogs", tmp_path / "catalogs")
    srv = Server(tmp_path)
    srv.start()
    yield srv
    srv.stop()


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
