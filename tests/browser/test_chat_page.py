"""The shopper's chat page at ``/``, driven in Chromium against the real server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

pytestmark = pytest.mark.browser

FIRST_MESSAGE = "I need running shoes for my husband"
BUSY = "The assistant is busy right now \u2014 please try again in a moment."
TURN_TIMEOUT = 30_000

Screenshot = Callable[[Page, str], Path]


# ---------- helpers ----------


def open_chat(page: Page, base_url: str) -> None:
    """Load the page and wait until its script has started (and restored any conversation)."""
    page.goto(f"{base_url}/")
    page.wait_for_selector("html[data-chat-ready='true']", state="attached")


def turn_count(page: Page) -> int:
    return page.locator("#log .turn").count()


def _is_turn_post(response: Any) -> bool:
    return response.request.method == "POST" and "/api/v1/conversations" in response.url


def act(page: Page, do: Callable[[], None]) -> dict[str, Any]:
    """Do something that sends one turn; wait for the page to render it. Returns the API's JSON."""
    before = turn_count(page)
    with page.expect_response(_is_turn_post, timeout=TURN_TIMEOUT) as info:
        do()
    assert info.value.ok, f"{info.value.status} {info.value.text()}"
    page.wait_for_function(
        "n => document.querySelectorAll('#log .turn').length > n"
        " && document.getElementById('chat').getAttribute('aria-busy') === 'false'",
        arg=before,
        timeout=TURN_TIMEOUT,
    )
    data: dict[str, Any] = info.value.json()
    return data


def send_text(page: Page, text: str) -> dict[str, Any]:
    box = page.get_by_label("Message to the assistant")

    def do() -> None:
        box.fill(text)
        box.press("Enter")

    return act(page, do)


def current_turn(page: Page) -> Any:
    return page.locator("#log .turn.is-current")


def reach_picks(page: Page, turn: dict[str, Any] | None = None, taps: int = 2,
                max_steps: int = 6) -> dict[str, Any]:
    """Answer up to ``taps`` questions by tapping their first option, then go on (tapping,
    or typing when no chips are offered) until picks are shown.

    Starts from ``turn`` (the latest Turn), or sends FIRST_MESSAGE when it is None.
    Returns the Turn that brought the picks.
    """
    if turn is None:
        turn = send_text(page, FIRST_MESSAGE)
    for step in range(max_steps):
        if turn["picks"] and (step >= taps or not turn["question"]):
            return turn
        chips = current_turn(page).locator("button.chip:not(.chip--skip)")
        if chips.count():
            turn = act(page, chips.first.click)
        else:
            turn = send_text(page, "anything is fine")
    assert turn["picks"], f"no picks after {max_steps} steps: {turn}"
    return turn


def assert_no_horizontal_overflow(page: Page, width: int) -> None:
    """Nothing is wider than ``width``; and the page itself never scrolls (only the log does)."""
    widths = page.evaluate(
        """() => ({
            doc: document.documentElement.scrollWidth,
            docHeight: document.documentElement.scrollHeight,
            viewportHeight: window.innerHeight,
            chat: document.getElementById('chat').scrollWidth,
            chatClient: document.getElementById('chat').clientWidth,
            right: Math.max(...[...document.querySelectorAll('button, input, .pick, .bubble')]
                .map(e => e.getBoundingClientRect().right)),
        })"""
    )
    assert widths["doc"] <= width, widths
    assert widths["chat"] <= widths["chatClient"], widths
    assert widths["right"] <= width, widths
    assert widths["docHeight"] <= widths["viewportHeight"], widths


# ---------- tests ----------


def test_page_is_static_and_accessible(page: Page, live_server: str) -> None:
    response = page.goto(f"{live_server}/")
    assert response is not None and response.ok
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("[onclick], [onsubmit], [onload], [onerror]").count() == 0
    expect(page.locator("[aria-live='polite']")).to_have_count(1)
    expect(page.get_by_label("Message to the assistant")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_questions_lead_to_picks_with_reasons(
    page: Page, live_server: str, screenshot: Screenshot
) -> None:
    open_chat(page, live_server)
    first = send_text(page, FIRST_MESSAGE)
    expect(page.locator("#log .entry--shopper").first).to_have_text(FIRST_MESSAGE)
    expect(current_turn(page).locator(".bubble").first).to_have_text(first["message"])
    assert page.evaluate("document.activeElement.id") == "message"
    assert page.get_by_label("Message to the assistant").input_value() == ""

    if first["question"]:
        screenshot(page, "chat-question")
        options = first["question"]["options"]
        chips = current_turn(page).locator("button.chip")
        expect(chips).to_have_count(len(options) + 1)
        if options:
            option = options[0]
            expect(chips.first).to_have_text(f"{option['label']} \u00b7 {option['count']}")
        expect(chips.last).to_have_text("No preference")

    turn = reach_picks(page, first)
    cards = current_turn(page).locator(".pick")
    expect(cards).to_have_count(len(turn["picks"]))
    for i, pick in enumerate(turn["picks"]):
        card = cards.nth(i)
        expect(card.locator(".pick-title")).to_have_text(pick["title"])
        assert card.locator(".pick-reasons li").count() >= 1
        expect(card.get_by_role("button", name="Like")).to_be_visible()
        expect(card.get_by_role("button", name="Not interested")).to_be_visible()
        expect(card.get_by_role("button", name="Already own")).to_be_visible()
        if pick["price"] is not None:
            expect(card.locator(".pick-price")).not_to_be_empty()
    assert page.evaluate("document.activeElement.id") == "message"
    screenshot(page, "chat-picks")

    more = act(page, current_turn(page).get_by_role("button", name="More").click)
    expect(current_turn(page).locator(".bubble").first).to_have_text(more["message"])
    expect(current_turn(page).locator(".pick")).to_have_count(len(more["picks"]))
    screenshot(page, "chat-more")


def test_feedback_marks_the_button(page: Page, live_server: str) -> None:
    open_chat(page, live_server)
    reach_picks(page)
    card = page.locator(f"#{current_turn(page).get_attribute('id')} .pick").first
    like = card.get_by_role("button", name="Like")
    sent: list[Any] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.method == "POST" else None)
    act(page, like.click)
    expect(like).to_have_attribute("aria-pressed", "true")
    assert sent[-1] == {
        "feedback": {"product_id": card.get_attribute("data-product-id"), "kind": "like"}
    }


def test_reload_keeps_the_conversation(
    page: Page, live_server: str, screenshot: Screenshot
) -> None:
    open_chat(page, live_server)
    reach_picks(page)
    messages = page.locator("#log .turn > .bubble").all_text_contents()
    titles = current_turn(page).locator(".pick-title").all_text_contents()
    shopper_lines = page.locator("#log .entry--shopper").all_text_contents()
    saved = page.evaluate("sessionStorage.getItem('personal-shopper:conversation')")
    assert saved and json.loads(saved)["id"]

    page.reload()
    page.wait_for_selector("html[data-chat-ready='true']", state="attached")
    expect(page.locator("#log .turn > .bubble")).to_have_text(messages)
    expect(current_turn(page).locator(".pick-title")).to_have_text(titles)
    expect(page.locator("#log .entry--shopper").first).to_have_text(shopper_lines[0])
    expect(current_turn(page).get_by_role("button", name="More")).to_be_visible()
    screenshot(page, "chat-reloaded")

    created: list[str] = []
    page.on("request", lambda r: created.append(r.url)
            if r.method == "POST" and r.url.endswith("/api/v1/conversations") else None)
    send_text(page, "something cheaper please")
    assert created == [], "a reload must continue the conversation, not start a new one"
    assert page.evaluate("sessionStorage.getItem('personal-shopper:conversation')") == saved


def test_markup_is_shown_as_text(page: Page, live_server: str, screenshot: Screenshot) -> None:
    attack = "<img src=x onerror=alert(1)>"
    open_chat(page, live_server)
    send_text(page, attack)
    expect(page.locator("#log .entry--shopper .bubble")).to_have_text(attack)
    assert page.locator("img").count() == 0
    send_text(page, "<b>bold</b> running shoes")
    assert page.locator("#log b, #log img, #log script").count() == 0
    screenshot(page, "chat-markup-as-text")


def test_phone_width(new_page: Callable[..., Page], live_server: str,
                     screenshot: Screenshot) -> None:
    page = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                    device_scale_factor=2)
    open_chat(page, live_server)
    box = page.get_by_label("Message to the assistant")
    expect(box).to_be_in_viewport()
    expect(page.get_by_role("button", name="Send")).to_be_in_viewport()
    assert_no_horizontal_overflow(page, 390)

    first = send_text(page, FIRST_MESSAGE)
    expect(box).to_be_in_viewport()
    if first["question"]:
        chips = current_turn(page).locator("button.chip")
        expect(chips.first).to_be_visible()
        expect(chips.last).to_be_in_viewport()
    assert_no_horizontal_overflow(page, 390)
    screenshot(page, "chat-phone-question")

    reach_picks(page, first)
    expect(current_turn(page).locator(".pick").first).to_be_visible()
    expect(box).to_be_in_viewport()
    assert_no_horizontal_overflow(page, 390)
    screenshot(page, "chat-phone-picks")


def test_errors_are_shown_and_the_text_kept(
    page: Page, live_server: str, screenshot: Screenshot
) -> None:
    open_chat(page, live_server)
    box = page.get_by_label("Message to the assistant")
    create = "**/api/v1/conversations"

    def busy(route: Route) -> None:
        route.fulfill(status=503, headers={"Retry-After": "5"},
                      content_type="application/problem+json",
                      body=json.dumps({"type": "about:blank", "title": "Service Unavailable",
                                       "status": 503, "detail": "overloaded"}))

    def invalid(route: Route) -> None:
        route.fulfill(status=422, content_type="application/problem+json",
                      body=json.dumps({"type": "about:blank", "title": "Unprocessable",
                                       "status": 422, "detail": "That message is too long."}))

    page.route(create, busy)
    box.fill(FIRST_MESSAGE)
    box.press("Enter")
    expect(page.locator("#log .entry--error").last).to_have_text(BUSY)
    expect(box).to_have_value(FIRST_MESSAGE)
    expect(page.locator("#log .entry--shopper")).to_have_count(0)
    page.unroute(create, busy)

    page.route(create, invalid)
    box.press("Enter")
    expect(page.locator("#log .entry--error").last).to_have_text("That message is too long.")
    expect(box).to_have_value(FIRST_MESSAGE)
    page.unroute(create, invalid)

    page.route(create, lambda route: route.abort())
    box.press("Enter")
    expect(page.locator("#log .entry--error").last).to_contain_text("couldn't reach")
    expect(box).to_have_value(FIRST_MESSAGE)
    assert page.evaluate("document.activeElement.id") == "message"
    screenshot(page, "chat-errors")
    page.unroute(create)

    send_text(page, FIRST_MESSAGE)
    expect(page.locator("#log .entry--shopper")).to_have_count(1)
    expect(box).to_have_value("")


def test_a_finished_conversation_starts_afresh(page: Page, live_server: str) -> None:
    open_chat(page, live_server)
    send_text(page, FIRST_MESSAGE)
    saved = json.loads(page.evaluate("sessionStorage.getItem('personal-shopper:conversation')"))
    done = page.request.post(
        f"{live_server}/api/v1/conversations/{saved['id']}/turns",
        data={"action": "done"}, headers={"Authorization": f"Bearer {saved['token']}"},
    )
    assert done.ok, done.text()

    box = page.get_by_label("Message to the assistant")
    box.fill("a black t-shirt")
    with page.expect_response(lambda r: r.request.method == "POST"
                              and r.url.endswith("/api/v1/conversations")) as created:
        box.press("Enter")
    assert created.value.status == 201, created.value.text()
    turn = created.value.json()
    expect(page.locator("#log .turn.is-current > .bubble")).to_have_text(turn["message"])
    expect(page.locator("#log .entry--notice")).to_have_count(1)
    expect(page.locator("#log .entry--error")).to_have_count(0)
    again = json.loads(page.evaluate("sessionStorage.getItem('personal-shopper:conversation')"))
    assert again["id"] == turn["conversation_id"] != saved["id"]
