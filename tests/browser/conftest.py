"""Fixtures for the Playwright browser tests: the real server in a subprocess and a Chromium.

After datasette's ``tests/test_playwright.py``: start the server on a free port, poll until it
answers, drive the page. ``playwright.sync_api`` is used directly (no pytest-playwright), with
Debian's ``/usr/bin/chromium`` because ``playwright install`` cannot download a browser here.

The server serves the session's pre-built catalog (``built_data_dir``, from tests/conftest.py).
Set ``SHOPPER_BROWSER_BASE_URL`` to drive an already-running server instead (and
``SHOPPER_BROWSER_DATA_DIR`` to its data dir, made by an earlier run's ``browser_data_dir``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    sync_playwright,
)

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
HEALTH_TIMEOUT = 120.0
DESKTOP = {"width": 1280, "height": 800}


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def wait_for_health(process: subprocess.Popen[bytes], url: str, log_path: Path,
                    timeout: float = HEALTH_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200.

    Returns once it does; raises AssertionError with the server's log if the process exits
    or ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"server exited early with code {process.returncode}\n{_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            last_error = repr(exc)
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {url}: {last_error}\n{_tail(log_path)}")


XSS_TITLE = "<img src=x onerror=alert(1)>"
STORE = "blr-01"


@pytest.fixture(scope="session")
def browser_data_dir(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The live server's data dir: the session's built slices (linked, not copied), a tiny
    extra catalog ``xss`` imported through the real importer whose titles are markup, a stock
    file for store ``blr-01`` (every third product in stock, every third out, the rest
    unknown) and its own SQLite file."""
    import json

    external = os.environ.get("SHOPPER_BROWSER_DATA_DIR")
    if external:  # the data dir of the server at SHOPPER_BROWSER_BASE_URL, made earlier
        return Path(external)
    from assistant.agents import AgentStore
    from assistant.store import open_db
    from catalog.catalog import ensure_catalog

    built_data_dir: Path = request.getfixturevalue("built_data_dir")
    embedder = request.getfixturevalue("embedder")
    data_dir = tmp_path_factory.mktemp("browser_data")
    (data_dir / "catalogs").mkdir()
    for built in (built_data_dir / "catalogs").iterdir():
        if (built / "manifest.json").exists():
            (data_dir / "catalogs" / built.name).symlink_to(built, target_is_directory=True)
    src = tmp_path_factory.mktemp("xss_source")
    (src / "xss.csv").write_text(
        "sku,name,price,colour,kind\n"
        f'1,"{XSS_TITLE} running shoes",999,Black,Shoes\n'
        '2,"<script>alert(2)</script> running shoes",1299,Blue,Shoes\n'
        '3,"Plain running shoes",1499,Black,Shoes\n'
        '4,"<b>Bold</b> t-shirt",499,White,Tshirts\n', encoding="utf-8")
    (src / "xss.mapping.json").write_text(json.dumps({
        "name": "xss", "source": "test", "files": ["xss.csv"], "id": "sku", "title": "name",
        "price": "price", "currency": "INR",
        "attributes": {"colour": {"column": "colour", "prompt": "Which colour?"},
                       "article_type": {"column": "kind", "prompt": "What type?"}}}))
    ensure_catalog(data_dir, "xss", embedder,
                   mapping_path=src / "xss.mapping.json", source=src / "xss.csv",
                   progress=False)
    rows = ["product_id,store_id,quantity"]
    for name in ("fashion", "myntra"):
        products = json.loads((data_dir / "catalogs" / name / "products.json").read_text())
        for i, product in enumerate(products):
            if i % 3 != 2:
                rows.append(f"{product['product_id']},{STORE},{3 if i % 3 == 0 else 0}")
    (data_dir / "stock.csv").write_text("\n".join(rows) + "\n")
    AgentStore(open_db(data_dir / "shopper.db"))  # migrate before the server's workers start
    return data_dir


@pytest.fixture(scope="session")
def live_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``python -m web.cli serve`` on a free port; yield its base URL, then stop it."""
    external = os.environ.get("SHOPPER_BROWSER_BASE_URL")
    if external:
        yield external.rstrip("/")
        return
    data_dir: Path = request.getfixturevalue("browser_data_dir")
    port = find_free_port()
    log_path = tmp_path_factory.mktemp("live_server") / "server.log"
    env = {
        **os.environ,
        "SHOPPER_API_KEY": "test-key",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    # --no-import: serve the slices built_data_dir holds; without it the server would rebuild
    # the full bundled catalogs (their source hash differs from a slice's), which takes minutes.
    command = [sys.executable, "-m", "web.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(data_dir), "--no-import"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(process, f"{base_url}/healthz", log_path)
        # /healthz answered from one worker; the other may still be loading the model, and a
        # page's request routed to it would wait. Start once both say they are ready.
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while log_path.read_text(errors="replace").count("ready: catalogs") < 2 \
                and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # The whole group: killing only the master would leave its workers serving.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """A headless Debian Chromium for the whole session."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Return a factory for pages, each in a fresh context (own sessionStorage).

    Keyword arguments go to ``browser.new_context``. Uncaught script errors, CSP violations
    and any alert()/confirm() dialog fail the test at teardown.
    """
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"console: {message.text}")

    def on_dialog(dialog: Dialog) -> None:
        problems.append(f"dialog: {dialog.type} {dialog.message!r}")
        dialog.dismiss()

    def make(**context_args: Any) -> Page:
        context = browser.new_context(**{"viewport": DESKTOP, **context_args})
        context.set_default_timeout(30_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", on_console)
        page.on("dialog", on_dialog)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not problems, "\n".join(problems)


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A desktop-sized page in a fresh browser context."""
    return new_page()


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    """Return ``save(page, name)``: a full-page screenshot at
    tests/artifacts/screenshots/<name>.png."""

    def save(page: Page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
