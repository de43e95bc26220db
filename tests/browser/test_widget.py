"""The chat widget on the demo shop page (/demo), driven in Chromium against the real server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, Route, expect

from tests.browser.conftest import XSS_TITLE

pytestmark = pytest.mark.browser

FIRST_MESSAGE = "I need running shoes for my husband"
TURN_TIMEOUT = 30_000
Screenshot = Callable[[Page, str], Path]


def open_demo(page: Page, base_url: str, query: str = "") -> Locator:
    page.goto(f"{base_url}/demo{query}")
    host = page.locator("#personal-shopper-widget[data-ready='true']")
    expect(host).to_be_attached()
    return host


def _turn_post(response: Any) -> bool:
    return response.request.method == "POST" and "/api/v1/conversations" in response.url


def act(page: Page, do: Callable[[], None]) -> dict[str, Any]:
    """Do something that sends one turn; wait until the widget has rendered it."""
    before = page.locator("#ps-log .turn").count()
    with page.expect_response(_turn_post, timeout=TURN_TIMEOUT) as info:
        do()
    assert info.value.ok, f"{info.value.status} {info.value.text()}"
    expect(page.locator("#ps-log .turn")).to_have_count(before + 1, timeout=TURN_TIMEOUT)
    expect(page.locator("#personal-shopper-widget")).to_have_attribute("data-busy", "false")
    data: dict[str, Any] = info.value.json()
    return data


def say(page: Page, text: str) -> dict[str, Any]:
    box = page.get_by_label("Message to the assistant")

    def do() -> None:
        box.fill(text)
        box.press("Enter")

    return act(page, do)


def current(page: Page) -> Locator:
    return page.locator("#ps-log .turn.is-current")


def reach_picks(page: Page, turn: dict[str, Any], taps: int = 2) -> dict[str, Any]:
    for step in range(6):
        if turn["picks"] and (step >= taps or not turn["question"]):
            return turn
        chips = current(page).locator("button.chip:not(.chip--skip)")
        turn = act(page, chips.first.click) if chips.count() else say(page, "just show me")
    assert turn["picks"], turn
    return turn


def shadow_focus(page: Page) -> str:
    focused: str = page.evaluate(
        "() => { const h = document.getElementById('personal-shopper-widget');"
        " const a = h.shadowRoot.activeElement; return a ? (a.id || a.className) : ''; }")
    return focused


def test_widget_conversation_keyboard_and_reload(
    page: Page, live_server: str, screenshot: Screenshot
) -> None:
    response = page.goto(f"{live_server}/demo")
    assert response is not None and "script-src 'self'" in response.headers[
        "content-security-policy"]
    assert page.locator("script:not([src])").count() == 0
    expect(page.locator("#personal-shopper-widget[data-ready='true']")).to_be_attached()
    launcher = page.get_by_role("button", name="Ask our shopper")
    expect(launcher).to_have_attribute("aria-expanded", "false")

    # Keyboard only: Tab to the launcher, Enter opens the panel with focus in the message box.
    launcher.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog", name="Ask our shopper")).to_be_visible()
    expect(page.locator("#ps-log[aria-live='polite']")).to_have_count(1)
    assert shadow_focus(page) == "ps-message"
    expect(page.locator("#ps-log .entry--welcome")).to_be_visible()

    first = say(page, FIRST_MESSAGE)
    expect(page.locator("#ps-log .entry--shopper").first).to_have_text(FIRST_MESSAGE)
    if first["question"] and first["question"]["options"]:
        option = first["question"]["options"][0]
        expect(current(page).locator("button.chip").first).to_have_text(
            f"{option['label']} \u00b7 {option['count']}")
    turn = reach_picks(page, first)
    cards = current(page).locator(".pick")
    expect(cards).to_have_count(len(turn["picks"]))
    for i, pick in enumerate(turn["picks"]):
        card = cards.nth(i)
        expect(card.locator(".pick-title")).to_have_text(pick["title"])
        assert card.locator(".pick-reasons li").count() >= 1
        for name in ("Like", "Not interested", "Already own"):
            expect(card.get_by_role("button", name=name)).to_be_visible()
        if pick["price"] is not None:
            expect(card.locator(".pick-price")).not_to_be_empty()
    screenshot(page, "widget-picks")

    sent: list[Any] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.method == "POST" else None)
    like = cards.first.get_by_role("button", name="Not interested")
    act(page, like.click)
    assert sent[-1]["feedback"]["kind"] == "not_interested"
    more = act(page, current(page).get_by_role("button", name="More").click)
    expect(current(page).locator(".pick")).to_have_count(len(more["picks"]))

    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    assert shadow_focus(page) == "ps-launcher"

    messages = page.locator("#ps-log .turn > .bubble").all_text_contents()
    page.reload()
    expect(page.locator("#personal-shopper-widget[data-ready='true']")).to_be_attached()
    page.get_by_role("button", name="Ask our shopper").click()
    expect(page.locator("#ps-log .turn > .bubble")).to_have_text(messages)
    expect(current(page).get_by_role("button", name="Cheaper")).to_be_visible()
    created: list[str] = []
    page.on("request", lambda r: created.append(r.url)
            if r.method == "POST" and r.url.endswith("/api/v1/conversations") else None)
    act(page, current(page).get_by_role("button", name="Cheaper").click)
    assert created == [], "a page load must continue the conversation"
    screenshot(page, "widget-reloaded")


def test_widget_on_a_phone_errors_and_markup(
    new_page: Callable[..., Page], live_server: str, screenshot: Screenshot
) -> None:
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    open_demo(page, live_server, "?catalog=xss&timeout_ms=1500")
    page.get_by_role("button", name="Ask our shopper").click()
    panel = page.get_by_role("dialog", name="Ask our shopper")
    expect(panel).to_be_in_viewport()
    box = panel.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    message = page.get_by_label("Message to the assistant")
    expect(message).to_be_in_viewport()
    create = "**/api/v1/conversations"

    def refuse(status: int, retry: str) -> Callable[[Route], None]:
        def handler(route: Route) -> None:
            route.fulfill(status=status, headers={"Retry-After": retry},
                          content_type="application/problem+json",
                          body=json.dumps({"type": "about:blank", "title": "Busy",
                                           "status": status, "detail": "overloaded"}))
        return handler

    errors = page.locator("#ps-log .entry--error")
    page.route(create, refuse(503, "5"))
    message.fill("running shoes")
    message.press("Enter")
    expect(errors.last).to_have_text(
        "The assistant is busy right now \u2014 please try again in a moment.")
    expect(message).to_have_value("running shoes")
    page.unroute(create)
    page.route(create, refuse(429, "60"))
    message.press("Enter")
    expect(errors.last).to_have_text(
        "Too many requests just now \u2014 please try again in 1 minute.")
    page.unroute(create)
    page.route(create, lambda route: None)  # the server never answers: the widget gives up
    message.press("Enter")
    expect(errors.last).to_have_text("The assistant took too long to answer. Please try again.")
    expect(errors.last).to_have_attribute("role", "alert")
    page.unroute(create)

    attack = f"{XSS_TITLE} running shoes"
    turn = say(page, attack)
    expect(page.locator("#ps-log .entry--shopper .bubble").last).to_have_text(attack)
    turn = reach_picks(page, turn, taps=0)
    titles = [p["title"] for p in turn["picks"]]
    assert any(XSS_TITLE in t for t in titles), titles
    expect(current(page).locator(".pick-title")).to_have_text(titles)
    assert page.locator("img, script:not([src]), b").count() == 0
    expect(panel).to_be_in_viewport()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    screenshot(page, "widget-phone-markup-as-text")


def test_signed_in_shopper_gets_a_minted_conversation(
    page: Page, live_server: str
) -> None:
    """The shop's backend creates the conversation with the server key and puts its id and
    token into the script tag (README: Embedding the widget)."""
    created = page.request.post(
        f"{live_server}/api/v1/conversations",
        data={"channel": "web", "shopper_id": "widget-shopper", "text": "a black watch"},
        headers={"Authorization": "Bearer test-key"})
    assert created.status == 201, created.text()
    conv = created.json()
    html = (f'<!doctype html><title>Shop</title><p>Signed in.</p>'
            f'<script src="/static/widget.js" defer data-conversation-id="'
            f'{conv["conversation_id"]}" data-token="{conv["token"]}"></script>')
    page.route(f"{live_server}/account", lambda route: route.fulfill(
        status=200, content_type="text/html", body=html,
        headers={"Content-Security-Policy": "script-src 'self'"}))
    page.goto(f"{live_server}/account")
    expect(page.locator("#personal-shopper-widget[data-ready='true']")).to_be_attached()
    page.get_by_role("button", name="Ask our shopper").click()
    expect(page.locator("#ps-log .entry--shopper").first).to_have_text("a black watch")
    expect(page.locator("#ps-log .turn > .bubble").first).to_have_text(conv["message"])
