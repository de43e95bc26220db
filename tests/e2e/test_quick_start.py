"""The README's first Quick start command, `scripts/serve`, sets up and serves (here on the
test slices, with --no-import, so it does not embed the full catalogs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.browser.conftest import find_free_port, wait_for_health
from tests.e2e.conftest import ROOT, copy_catalogs

pytestmark = pytest.mark.e2e


def test_scripts_serve_sets_up_and_serves(tmp_path: Path, built_data_dir: Path) -> None:
    data_dir = copy_catalogs(built_data_dir, tmp_path / "data")
    port = find_free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["scripts/serve", "--data-dir", str(data_dir), "--no-import", "--workers", "1"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PORT": str(port), "SHOPPER_API_KEY": "quick-start-key"})
    try:
        wait_for_health(proc, f"http://127.0.0.1:{port}/healthz", log)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/conversations", method="POST",
            data=json.dumps({"channel": "web",
                             "text": "I need running shoes for my husband"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            turn = json.load(resp)
        assert resp.status == 201 and turn["picks"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
