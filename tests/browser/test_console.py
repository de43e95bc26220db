"""The agent console (/console) in Chromium against the real server: log-in and log-out, a
caller's profile, a phone conversation to picks, the audit log, and a hand-off from the
widget continued by an agent."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ROOT

pytestmark = pytest.mark.browser

TURN_TIMEOUT = 30_000
SERVER = {"Authorization": "Bearer test-key"}
PASSWORD = "agent password 1"
Screenshot = Callable[[Page, str], Path]


def shopper(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `shopper` command as the README shows it."""
    return subprocess.run([sys.executable, "-m", "web.cli", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def agent(browser_data_dir: Path) -> str:
    done = shopper("agents", "add", "alice", "--password-stdin", "--data-dir",
                   str(browser_data_dir), stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    return "alice"


def log_in(page: Page, base_url: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/console")
    expect(page).to_have_url(f"{base_url}/console/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def _api(response: Any) -> bool:
    return response.request.method in ("POST", "PUT") and "/api/v1/" in response.url


def act(page: Page, do: Callable[[], None]) -> dict[str, Any]:
    with page.expect_response(_api, timeout=TURN_TIMEOUT) as info:
        do()
    assert info.value.ok, f"{info.value.status} {info.value.text()}"
    expect(page.locator("#console")).to_have_attribute("data-busy", "false")
    data: dict[str, Any] = info.value.json()
    return data


def caller_says(page: Page, text: str) -> dict[str, Any]:
    box = page.get_by_label("What the caller says")

    def do() -> None:
        box.fill(text)
        box.press("Enter")

    return act(page, do)


def test_console_login_profile_call_audit_and_logout(
    page: Page, live_server: str, agent: str, browser_data_dir: Path, screenshot: Screenshot
) -> None:
    base = f"{live_server}/api/v1"
    found = page.request.get(f"{base}/search?q=black+watch&k=1").json()["picks"][0]
    assert page.request.put(f"{base}/shoppers/caller-1/preferences", headers=SERVER,
                            data={"attribute": "colour", "value": "Black",
                                  "polarity": "avoid"}).ok
    assert page.request.post(f"{base}/shoppers/caller-1/events", headers=SERVER,
                             data={"type": "purchase", "product_id": found["product_id"]}).ok
    assert page.request.put(f"{base}/shoppers/caller-1/contact", headers=SERVER,
                            data={"email": "caller.one@example.com"}).ok

    log_in(page, live_server, agent, "wrong password")
    expect(page.get_by_role("alert")).to_have_text("That name and password do not match.")
    page.get_by_label("Name").fill(agent)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server}/console")
    expect(page.locator("#agent-name")).to_have_text(agent)
    assert page.locator("script:not([src])").count() == 0

    # The caller gives the e-mail the shop knows them by.
    page.get_by_label("Shopper id or e-mail").fill("Caller.One@example.com")
    page.get_by_role("button", name="Look up").click()
    expect(page.locator("#stated li")).to_contain_text(["colour: Black (avoids)"])
    expect(page.locator("#purchases li").first).to_contain_text(found["title"])
    expect(page.locator("#inferred li").first).to_be_visible()

    # A preference needs the caller's own words: the form will not send without them.
    page.get_by_label("Attribute").fill("colour")
    page.get_by_label("Value").fill("Navy Blue")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "PUT" else None)
    page.get_by_role("button", name="Save preference").click()
    page.wait_for_timeout(200)
    assert sent == []
    page.get_by_label("The caller's own words").fill("I always wear navy")
    act(page, page.get_by_role("button", name="Save preference").click)
    expect(page.locator("#stated li", has_text="Navy Blue")).to_contain_text(
        "I always wear navy")

    act(page, page.get_by_role("button", name="Start a phone conversation for this shopper").click)
    turn = caller_says(page, "I need running shoes for my husband")
    expect(page.locator(".console-say")).to_have_text(turn["message"])
    if turn["question"] and turn["question"]["options"]:
        expect(page.locator("#script .chip").first).to_contain_text(
            turn["question"]["options"][0]["label"])
        turn = act(page, page.locator("#script .chip:not(.chip--skip)").first.click)
    if not turn["picks"] or turn["question"]:
        turn = caller_says(page, "just show me some")
    assert turn["picks"], turn
    cards = page.locator("#picks .pick")
    expect(cards).to_have_count(len(turn["picks"]))
    assert cards.first.locator(".pick-reasons li").count() >= 1
    expect(page.locator("#transcript .entry--shopper").first).to_have_text(
        "Caller: I need running shoes for my husband")
    screenshot(page, "console-call")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server}/console/login?bye=1")
    expect(page.get_by_role("status")).to_have_text("You are logged out.")
    page.goto(f"{live_server}/console")
    expect(page).to_have_url(f"{live_server}/console/login")
    assert page.request.get(f"{base}/shoppers/caller-1/profile").status == 401

    audit = shopper("audit", "--data-dir", str(browser_data_dir), "--shopper", "caller-1")
    assert audit.returncode == 0, audit.stderr
    for action in ("profile.view", "events.view", "preference.set", "conversation.start",
                   "conversation.turn"):
        assert action in audit.stdout, audit.stdout
    assert "I always wear navy" in audit.stdout
    everything = shopper("audit", "--data-dir", str(browser_data_dir), "--agent", agent)
    assert " login " in everything.stdout and " logout " in everything.stdout
    assert "login.failed" in everything.stdout


def test_handoff_from_the_widget_to_the_console(
    new_page: Callable[..., Page], live_server: str, agent: str, screenshot: Screenshot
) -> None:
    shop = new_page()
    shop.goto(f"{live_server}/demo")
    expect(shop.locator("#personal-shopper-widget[data-ready='true']")).to_be_attached()
    shop.get_by_role("button", name="Ask our shopper").click()
    box = shop.get_by_label("Message to the assistant")
    with shop.expect_response(lambda r: r.request.method == "POST"):
        box.fill("a navy kurta for my wife")
        box.press("Enter")
    expect(shop.locator("#ps-log .turn")).to_have_count(1)
    with shop.expect_response(lambda r: r.url.endswith("/handoff")) as info:
        shop.get_by_role("button", name="Talk to a person").click()
    code = info.value.json()["handoff_code"]
    expect(shop.locator(".ps-code")).to_have_text(code)
    screenshot(shop, "widget-handoff")

    console = new_page()
    log_in(console, live_server, agent)
    expect(console).to_have_url(f"{live_server}/console")
    console.get_by_label("Hand-off code").fill(f"{code[:3]} {code[3:]}")
    act(console, console.get_by_role("button", name="Continue their conversation").click)
    transcript = console.locator("#transcript")
    expect(transcript.locator(".entry--shopper").first).to_have_text(
        "Caller: a navy kurta for my wife")
    expect(transcript.locator(".entry--shopper").last).to_have_text("Caller: Talk to a person")
    turn = caller_says(console, "just show me some")
    if not turn["picks"]:
        turn = caller_says(console, "anything is fine, show me")
    assert turn["picks"], turn
    expect(console.locator("#picks .pick")).to_have_count(len(turn["picks"]))
    screenshot(console, "console-handoff")
