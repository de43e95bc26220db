"""The in-store kiosk (/kiosk), driven by touch in Chromium against the real server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import STORE

pytestmark = pytest.mark.browser

TURN_TIMEOUT = 30_000
SERVER = {"Authorization": "Bearer test-key"}
Screenshot = Callable[[Page, str], Path]
IDLE, STILL_THERE = 4, 2


def _post(response: Any) -> bool:
    return response.request.method in ("POST", "DELETE") and "/api/v1/" in response.url


def act(page: Page, do: Callable[[], None]) -> dict[str, Any]:
    """Tap something that calls the API once; wait until the kiosk is idle again."""
    with page.expect_response(_post, timeout=TURN_TIMEOUT) as info:
        do()
    assert info.value.ok, f"{info.value.status} {info.value.text()}"
    expect(page.locator("#kiosk")).to_have_attribute("data-busy", "false")
    data: dict[str, Any] = info.value.json()
    return data


def tap_keys(page: Page, text: str) -> None:
    """Type on the kiosk's on-screen keyboard."""
    keyboard = page.locator(".osk")
    for ch in text:
        keyboard.get_by_role("button", name=ch, exact=True).tap()


def test_kiosk_touch_conversation_stock_link_qr_and_idle_wipe(
    new_page: Callable[..., Page], live_server: str, screenshot: Screenshot
) -> None:
    page = new_page(viewport={"width": 1080, "height": 1920}, has_touch=True)
    page.goto(f"{live_server}/kiosk?store_id={STORE}&idle={IDLE}&still_there={STILL_THERE}")
    page.wait_for_selector("html[data-kiosk-ready='true']", state="attached")
    assert page.locator("script:not([src])").count() == 0
    starters = page.locator(".kiosk-starters button")
    for i in range(starters.count()):
        box = starters.nth(i).bounding_box()
        assert box is not None and box["height"] >= 64 and box["width"] >= 64
    screenshot(page, "kiosk-start")

    # No keyboard: type on the on-screen keyboard.
    page.get_by_role("button", name="Type it\u2026").tap()
    tap_keys(page, "shoes")
    expect(page.get_by_role("textbox", name="What you are looking for")).to_have_value("shoes")
    turn = act(page, page.locator(".osk-key--submit").tap)
    conversation_id, token = turn["conversation_id"], turn["token"]
    for _ in range(4):
        if turn["picks"] and not turn["question"]:
            break
        option = page.locator("#kiosk-main button.chip:not(.chip--skip)")
        if turn["question"] and option.count():
            box = option.first.bounding_box()
            assert box is not None and box["height"] >= 64
            turn = act(page, option.first.tap)
        else:
            turn = act(page, page.get_by_role("button", name="More").tap)
    assert turn["picks"], turn
    cards = page.locator(".kiosk-picks .pick")
    expect(cards).to_have_count(len(turn["picks"]))
    labels = {True: "In stock here", False: "Not in this store: ask staff to order it",
              None: "Ask staff"}
    for i, pick in enumerate(turn["picks"]):
        assert "in_store" in pick
        expect(cards.nth(i).locator(".pick-stock")).to_have_text(labels[pick["in_store"]])
        assert cards.nth(i).locator(".pick-reasons li").count() >= 1
    screenshot(page, "kiosk-picks")

    # Link a profile with a code from the shop's profile page, then take the picks along.
    made = page.request.post(f"{live_server}/api/v1/shoppers/kiosk-shopper/link-code",
                             headers=SERVER)
    assert made.status == 201, made.text()
    page.get_by_role("button", name="Link my profile").tap()
    tap_keys(page, made.json()["code"])
    act(page, page.get_by_role("button", name="Link", exact=True).tap)
    expect(page.locator("#kiosk-message")).to_contain_text("Your profile is linked")
    expect(page.get_by_role("button", name="Unlink my profile")).to_be_visible()
    shared = act(page, page.get_by_role("button", name="Take these with me").tap)
    qr = page.get_by_role("img", name="QR code with a link to these picks")
    expect(qr).to_be_visible()
    page.wait_for_function("() => document.querySelector('.kiosk-qr').naturalWidth > 0")
    assert shared["product_ids"] == [p["product_id"] for p in turn["picks"]]
    opened = page.request.get(shared["url"])
    assert opened.ok and all(f'data-product-id="{i}"' in opened.text()
                             for i in shared["product_ids"])
    assert "kiosk-shopper" not in opened.text()
    screenshot(page, "kiosk-take-along")
    page.get_by_role("button", name="Close").tap()

    # Walk away: it asks, then forgets everything and unlinks the profile.
    expect(page.get_by_role("alertdialog", name="Still there?")).to_be_visible(
        timeout=(IDLE + 3) * 1000)
    screenshot(page, "kiosk-still-there")
    expect(page.locator("#kiosk")).to_have_attribute("data-wiped", "1",
                                                     timeout=(STILL_THERE + 3) * 1000)
    expect(page.get_by_role("alertdialog")).to_be_hidden()
    expect(page.locator(".kiosk-starters button").first).to_be_visible()
    expect(page.locator(".pick")).to_have_count(0)
    expect(page.get_by_role("button", name="Link my profile")).to_be_visible()
    body = page.locator("body").inner_text()
    assert all(p["title"] not in body for p in turn["picks"])
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0
    # Nothing that names the conversation or the shopper is left for the next person: not in
    # storage, cookies, IndexedDB, caches, the page's markup or its address.
    left = page.evaluate("""async () => ({
        text: JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])
              + document.cookie + document.documentElement.outerHTML + location.href,
        idb: indexedDB.databases ? (await indexedDB.databases()).map(d => d.name) : [],
        caches: self.caches ? await caches.keys() : []})""")
    for secret in (conversation_id, token, "kiosk-shopper", made.json()["code"]):
        assert secret not in left["text"]
    assert left["idb"] == [] and left["caches"] == []
    assert page.context.cookies() == []
    screenshot(page, "kiosk-wiped")

    def finished() -> bool:
        r = page.request.get(f"{live_server}/api/v1/conversations/{conversation_id}",
                             headers=SERVER)
        data = r.json()
        return bool(data["state"] == "done" and data["shopper_id"] is None)

    page.wait_for_timeout(300)
    for _ in range(20):
        if finished():
            break
        page.wait_for_timeout(250)
    assert finished(), "the wipe must unlink the profile and end the conversation"
