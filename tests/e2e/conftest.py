"""The real server (`python -m web.cli serve`, granian) in a subprocess, for tests/e2e/.

``Server`` starts it on a free port over a data dir, talks to it over HTTP, and can stop it
politely, kill one worker or kill the whole process group (master and workers) the way a
crash or an OOM killer would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import find_free_port, wait_for_health

KEY = "e2e-server-key"
ROOT = Path(__file__).resolve().parents[2]
READY = b"ready: catalogs"


def copy_catalogs(built_data_dir: Path, data_dir: Path) -> Path:
    """A data dir holding a copy of the session's built catalogs (and nothing else)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(built_data_dir / "catalogs", data_dir / "catalogs",
                    ignore=shutil.ignore_patterns(".*"))
    return data_dir


class Server:
    """One `shopper serve` over ``data_dir``; its output goes to ``log`` (default
    ``DATA_DIR/server.log``), appended across restarts."""

    def __init__(self, data_dir: Path, *, workers: int = 1, log: Path | None = None,
                 args: Sequence[str] = ("--no-import",), env: dict[str, str] | None = None,
                 ) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.args = list(args)
        self.env = env or {}
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process (in its own process group) without waiting for it."""
        env = {**os.environ, "SHOPPER_API_KEY": KEY, "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "web.cli", "serve", "--host", "127.0.0.1", "--port",
                 str(self.port), "--data-dir", str(self.data_dir), "--workers",
                 str(self.workers), *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                start_new_session=True)
        return self.proc

    def start(self, timeout: float = 120.0) -> None:
        """Start and wait until every worker has loaded the catalogs and the model."""
        seen = self.log.read_bytes().count(READY) if self.log.exists() else 0
        proc = self.launch()
        wait_for_health(proc, self.url + "/healthz", self.log, timeout)
        self.wait_ready(seen + self.workers, timeout)

    def wait_ready(self, count: int, timeout: float = 120.0) -> None:
        """Wait until the log holds ``count`` "ready" lines (one per worker start)."""
        deadline = time.monotonic() + timeout
        while self.log.read_bytes().count(READY) < count:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            assert time.monotonic() < deadline, f"workers not ready\n{self.tail()}"
            time.sleep(0.1)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_all()

    def kill_all(self) -> None:
        """SIGKILL the master and every worker at once (the whole process group)."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        """The server's workers: the master's running child processes (a killed worker the
        master has not reaped yet is a zombie, not a worker)."""
        assert self.proc is not None
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            pids.extend(int(p) for p in (task / "children").read_text().split())
        return [p for p in pids if _state(p) not in ("Z", None)]

    def busy_worker(self, timeout: float = 5.0) -> int:
        """A worker that is running right now (computing a turn), else any worker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [p for p in self.worker_pids() if _state(p) == "R"]
            if running:
                return running[0]
            time.sleep(0.002)
        return self.worker_pids()[0]

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             timeout: float = 30) -> tuple[int, Any]:
        """One request; returns (status, JSON body or text). Raises OSError (e.g.
        ConnectionResetError) when no answer comes back."""
        status, _, data = self.request(method, path, body, token, timeout)
        return status, data

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                timeout: float = 30) -> tuple[int, Message, Any]:
        """Like call, with the response headers too (looked up by name in any case, as
        HTTP means them: the server writes them in lower case)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, resp.headers, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            with exc:
                raw = exc.read()
                is_json = "json" in (exc.headers.get("Content-Type") or "")
                return (exc.code, exc.headers,
                        json.loads(raw) if is_json and raw else raw.decode())


def _state(pid: int) -> str | None:
    """A process's state letter (R, S, Z, ...), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _group_alive(pgid: int) -> bool:
    """Whether a process of this group still runs (zombies waiting to be reaped do not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.fixture
def new_server() -> Iterator[Callable[..., Server]]:
    """``new_server(data_dir, **options)`` makes a Server (not started); whatever a test
    leaves running, also after a failed assertion, is killed at teardown."""
    made: list[Server] = []

    def make(data_dir: Path, **options: Any) -> Server:
        made.append(Server(data_dir, **options))
        return made[-1]

    yield make
    for srv in made:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill_all()


@pytest.fixture
def server(tmp_path: Path, built_data_dir: Path,
           new_server: Callable[..., Server]) -> Iterator[Server]:
    """One worker over a copy of the session's built catalogs."""
    srv = new_server(copy_catalogs(built_data_dir, tmp_path))
    srv.start()
    yield srv
    srv.stop()
