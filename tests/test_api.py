"""The API of ../shared/API.md through the Flask test client, on real SQLite and the real model."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from typing import Any

import pytest

from tests.conftest import API_KEY, SERVER, Chat
from web import Services, create_app


def answer_truthfully(chat: Any, target: dict[str, str], turns: int = 4) -> None:
    for _ in range(turns):
        q = chat.turn["question"]
        if q is None:
            return
        chat.tap(q["attribute"], target.get(q["attribute"]))


def test_running_shoes_for_my_husband(chat: Any) -> None:
    c = chat("I need running shoes for my husband")
    assert c.turn["state"] == "asking"
    q = c.turn["question"]
    assert q["options"] and all(o["count"] > 0 for o in q["options"])
    assert [o["count"] for o in q["options"]] == sorted((o["count"] for o in q["options"]),
                                                        reverse=True)
    answer_truthfully(c, {"colour": q["options"][0]["value"], "usage": "Sports"})
    assert c.turn["state"] == "recommending"
    assert len(c.picks) == 5
    for p in c.picks:
        assert p["attributes"]["article_type"] == "Sports Shoes"
        assert p["attributes"]["gender"] in ("Men", "Unisex")
        assert p["reasons"] and all(isinstance(r, str) and r for r in p["reasons"])


def test_answers_are_never_asked_twice_and_turns_are_kept(chat: Any, client: Any) -> None:
    c = chat("a t-shirt")
    asked = []
    for _ in range(4):
        q = c.turn["question"]
        if not q:
            break
        assert q["attribute"] not in asked
        asked.append(q["attribute"])
        c.tap(q["attribute"], q["options"][0]["value"])
    r = client.get(f"/api/v1/conversations/{c.id}", headers=c.headers)
    body = r.get_json()
    assert body["conversation_id"] == c.id and body["channel"] == "web"
    assert len(body["turns"]) == len(asked) + 1


def test_a_shopper_who_keeps_talking_does_not_make_each_turn_dearer(chat: Any,
                                                                     services: Any) -> None:
    """Every turn reads and writes the conversation's state. It once kept every message, so a
    shopper (or a script) who kept talking made each turn read, search and write more; it
    keeps the last dozen, and the conversation still follows what was said last."""
    c = chat("a watch for men")
    filler = ("something I could wear every day, to the office and at weekends, light and "
              "easy to look after, ") * 3
    sizes = []
    for i in range(30):
        c.say(f"{filler[:280]} {i:02d}")
        with closing(sqlite3.connect(services.db_path)) as db:
            (raw,) = db.execute("SELECT ctx FROM conversations WHERE conversation_id = ?",
                                (c.id,)).fetchone()
        ctx = json.loads(raw)
        for grows_to_a_bound in ("shown", "last_picks"):  # product ids, capped on their own
            ctx.pop(grows_to_a_bound, None)
        sizes.append(len(json.dumps(ctx)))
    assert max(sizes[15:]) - min(sizes[15:]) < 200, sizes
    c.say("I want Nike sports shoes")
    assert c.picks[0]["title"].lower().startswith("nike")
    assert all(p["attributes"]["article_type"] == "Sports Shoes" for p in c.picks)


def test_refusal_up_front_is_respected(chat: Any) -> None:
    c = chat("a t-shirt, but not black")
    for _ in range(3):
        assert all(p["attributes"].get("colour") != "Black" for p in c.picks)
        q = c.turn["question"]
        if q is None:
            break
        assert "Black" not in [o["value"] for o in q["options"] if q["attribute"] == "colour"]
        c.send(text="not sure, show me more")
    assert c.picks and all(p["attributes"].get("colour") != "Black" for p in c.picks)


def test_budget_and_cheaper_on_the_priced_catalog(chat: Any) -> None:
    c = chat("jeans for women under 1500", catalog="myntra")
    c.send(action="more")
    assert c.picks and all(p["price"] <= 1500 and p["currency"] == "INR" for p in c.picks)
    cheapest = min(p["price"] for p in c.picks)
    c.send(action="cheaper")
    if c.picks:
        assert all(p["price"] < cheapest for p in c.picks)
    else:
        assert "nothing cheaper" in c.turn["message"]


def test_a_budget_on_a_catalog_without_prices_says_so_and_still_shows_picks(
        chat: Any) -> None:
    # The bundled fashion catalog lists no prices: a budget cannot rule everything out.
    c = chat("running shoes for my husband")
    c.send(text="in black, under 3000")
    if c.turn["question"] is not None:
        c.send(action="more")
    assert c.picks and all(p["price"] is None for p in c.picks)
    assert all(p["attributes"]["colour"] == "Black" for p in c.picks)
    assert "no prices" in c.turn["message"] and "budget" in c.turn["message"]


def test_more_never_repeats(chat: Any) -> None:
    c = chat("a watch for men")
    seen = {p["product_id"] for p in c.picks}
    c.send(action="more")
    assert c.picks and not seen & {p["product_id"] for p in c.picks}


def test_feedback_removes_a_pick_at_once(chat: Any) -> None:
    c = chat("a watch for men")
    c.send(action="more")
    gone = c.picks[0]["product_id"]
    c.send(feedback={"product_id": gone, "kind": "not_interested"})
    c.send(action="start_over")
    assert c.turn["state"] == "greeting" and c.picks == []


def test_start_over_and_done(chat: Any) -> None:
    c = chat("sneakers")
    c.send(action="done")
    assert c.turn["state"] == "done"
    r = c.client.post(f"/api/v1/conversations/{c.id}/turns", json={"text": "more"},
                      headers=c.headers)
    assert r.status_code == 409 and r.mimetype == "application/problem+json"
    c.send(action="start_over")
    assert c.turn["state"] == "greeting"


def test_greeting_without_text(chat: Any) -> None:
    c = chat()
    assert c.turn["state"] == "greeting" and c.turn["picks"] == [] and c.turn["message"]


def test_words_it_does_not_understand_are_not_passed_off_as_answers(chat: Any) -> None:
    """German, a greeting or keyboard mashing: nothing is recognised and no product is close,
    so the picks are guesses and the message says so and says what helps."""
    for text in ("rote Schuhe für Damen", "hello", "asdfgh qwerty"):
        c = chat(text)
        assert c.picks, text
        assert c.turn["message"].startswith("I'm not sure I understood"), (text, c.turn)
        assert "the kind of thing you want" in c.turn["message"]
        c.tap("colour", "Red")  # then a tap: understood, no more doubt
        assert not c.turn["message"].startswith("I'm not sure"), c.turn["message"]
    for text in ("a blue t-shirt for men", "something for a beach holiday", "lounge wear"):
        c = chat(text)
        assert not c.turn["message"].startswith("I'm not sure"), (text, c.turn["message"])


def test_stated_answers_become_the_shoppers_preferences(chat: Any, client: Any) -> None:
    c = chat("a t-shirt, not black", shopper_id="s-1")
    c.say("navy blue")
    prof = client.get("/api/v1/shoppers/s-1/profile", headers=SERVER).get_json()
    stated = {(p["attribute"], p["value"], p["polarity"]) for p in prof["stated"]}
    assert ("colour", "Black", "avoid") in stated
    assert ("colour", "Navy Blue", "want") in stated
    assert all(p["source"] == "stated" and "you said" in p["evidence"] for p in prof["stated"])


def test_shopping_for_someone_else_is_not_my_taste(chat: Any, client: Any) -> None:
    c = chat("a watch for my husband", shopper_id="s-2")
    c.say("black")
    prof = client.get("/api/v1/shoppers/s-2/profile", headers=SERVER).get_json()
    assert prof["stated"] == []


def test_profile_put_delete_export_forget(client: Any) -> None:
    url = "/api/v1/shoppers/s-3"
    r = client.put(f"{url}/preferences", json={"attribute": "colour", "value": "black",
                                               "polarity": "avoid"}, headers=SERVER)
    assert r.status_code == 200
    assert r.get_json()["stated"][0]["value"] == "Black"
    assert client.post(f"{url}/events", json={"type": "purchase", "product_id":
                                              client.get("/api/v1/search?q=watch&k=1")
                                              .get_json()["picks"][0]["product_id"]},
                       headers=SERVER).status_code == 201
    export = client.get(f"{url}/export", headers=SERVER).get_json()
    assert export["tables"]["preferences"] and export["tables"]["events"]
    r = client.delete(f"{url}/preferences", json={"attribute": "colour", "value": "Black"},
                      headers=SERVER)
    assert r.get_json()["stated"] == []
    assert client.delete(url, headers=SERVER).status_code == 204
    export = client.get(f"{url}/export", headers=SERVER).get_json()
    assert all(rows == [] for rows in export["tables"].values())


def test_search_and_product(client: Any, fashion: Any) -> None:
    picks = client.get("/api/v1/search?q=blue+t-shirts&k=5").get_json()["picks"]
    assert len(picks) == 5 and all(p["attributes"]["article_type"] == "Tshirts" for p in picks)
    pid = picks[0]["product_id"]
    product = client.get(f"/api/v1/products/{pid}").get_json()
    assert product["product_id"] == pid and product["attributes"]
    r = client.get("/api/v1/products/no-such-thing")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"


@pytest.mark.parametrize("headers,status", [({}, 401),
                                            ({"Authorization": "Bearer wrong"}, 403)])
def test_shopper_data_needs_the_server_key(client: Any, headers: dict[str, str],
                                           status: int) -> None:
    for method, path in [("get", "/api/v1/shoppers/s/profile"),
                         ("get", "/api/v1/shoppers/s/export"),
                         ("delete", "/api/v1/shoppers/s")]:
        r = getattr(client, method)(path, headers=headers)
        assert r.status_code == status and r.get_json()["status"] == status


def test_a_token_opens_only_its_conversation(chat: Any, client: Any) -> None:
    a, b = chat("sneakers"), chat("a watch")
    r = client.post(f"/api/v1/conversations/{a.id}/turns", json={"text": "red"},
                    headers=b.headers)
    assert r.status_code == 403
    r = client.get(f"/api/v1/conversations/{a.id}")
    assert r.status_code == 401
    r = client.post("/api/v1/conversations", json={"shopper_id": "x"},
                    headers={"Authorization": f"Bearer {a.turn['token']}"})
    assert r.status_code == 403


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400), (b"[1,2]", 400), (b"", 400),
    (b'{"text": 5}', 422), (b'{"text": ""}', 422), (b'{"text": "a", "action": "more"}', 422),
    (b'{"action": "dance"}', 422), (b'{"answer": {"attribute": "planet", "value": "x"}}', 422),
    (b'{"answer": {"attribute": "colour", "value": "Plaid"}}', 422),
    (b'{"feedback": {"product_id": "nope", "kind": "like"}}', 404),
])
def test_bad_turns_get_a_problem_and_change_nothing(chat: Any, client: Any, body: bytes,
                                                     status: int) -> None:
    c = chat("sneakers")
    before = client.get(f"/api/v1/conversations/{c.id}", headers=c.headers).get_json()
    r = client.post(f"/api/v1/conversations/{c.id}/turns", data=body,
                    content_type="application/json", headers=c.headers)
    assert r.status_code == status
    assert r.mimetype == "application/problem+json"
    assert set(r.get_json()) >= {"type", "title", "status", "detail"}
    after = client.get(f"/api/v1/conversations/{c.id}", headers=c.headers).get_json()
    assert after == before


def test_huge_body_unknown_ids_and_methods(client: Any) -> None:
    r = client.post("/api/v1/conversations", data=b'{"text": "' + b"a" * 100_000 + b'"}',
                    content_type="application/json")
    assert r.status_code == 413 and r.mimetype == "application/problem+json"
    r = client.post("/api/v1/conversations/c_00000000000000000000/turns", json={"text": "x"})
    assert r.status_code == 404
    r = client.get("/api/v1/conversations/../../etc/passwd")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    r = client.delete("/api/v1/conversations")
    assert r.status_code == 405 and r.mimetype == "application/problem+json"


def test_openapi_and_health(client: Any) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/v1/conversations", "/api/v1/conversations/{conversation_id}/turns",
                 "/api/v1/shoppers/{shopper_id}/profile", "/api/v1/search"):
        assert path in doc["paths"]
    assert client.get("/healthz").get_json()["status"] == "ok"


def test_waiting_turns_are_served_in_the_order_they_came() -> None:
    """A turn that waits for a slot is not overtaken: not by later waiters, and not by a
    turn that arrives just as a slot frees (threading.Semaphore let those barge in, and a
    waiter could go to the back of the line again and again)."""
    import threading
    import time

    from assistant.errors import Unavailable
    from web.api import _Admission

    adm = _Admission(active=1, queue=7, wait_s=10.0)
    served: list[str] = []

    def turn(name: str) -> None:
        with adm:
            served.append(name)
            time.sleep(0.005)

    def queued(n: int) -> None:
        deadline = time.monotonic() + 10
        while len(adm._waiters) < n:  # noqa: SLF001 (the line itself is what is tested)
            assert time.monotonic() < deadline
            time.sleep(0.001)

    adm.__enter__()  # a turn is computing
    threads = []
    for i in range(6):
        threads.append(threading.Thread(target=turn, args=(f"w{i}",)))
        threads[-1].start()
        queued(i + 1)
    adm.__exit__()  # the slot frees, and at once (same thread) another turn comes
    turn("late")
    for t in threads:
        t.join(10)
    assert served == ["w0", "w1", "w2", "w3", "w4", "w5", "late"]

    # Past the queue's bound, or past the wait, a turn is refused, and its place is freed.
    adm = _Admission(active=1, queue=1, wait_s=0.05)
    adm.__enter__()
    waiter = threading.Thread(target=lambda: pytest.raises(Unavailable, adm.__enter__))
    waiter.start()
    queued(1)
    with pytest.raises(Unavailable):
        adm.__enter__()  # the one place in the queue is taken
    waiter.join(10)
    assert not adm._waiters  # noqa: SLF001
    adm.__exit__()
    with adm:  # the slot is free again
        pass


def _burst(app, n: int = 12) -> list[tuple[Chat, Any]]:  # type: ignore[no-untyped-def]
    """n conversations, then one turn of each sent at the same moment from n threads: each
    conversation with its answer."""
    import threading

    chats = [Chat(app.test_client(), "running shoes") for _ in range(n)]
    results: list[tuple[Chat, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def send(c: Chat) -> None:
        start.wait()
        r = c.client.post(f"/api/v1/conversations/{c.id}/turns",
                          json={"text": "in blue for women"}, headers=c.headers)
        with lock:
            results.append((c, r))

    threads = [threading.Thread(target=send, args=(c,)) for c in chats]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _kept_turns(c: Chat) -> int:
    return len(c.client.get(f"/api/v1/conversations/{c.id}", headers=c.headers)
               .get_json()["turns"])


def test_a_rush_is_refused_honestly_and_loses_nothing(app) -> None:  # type: ignore[no-untyped-def]
    """One turn computes at a time and none may wait: of a burst of turns at once, those
    refused get 503 + Retry-After with a plain message, and only answered turns are kept."""
    app.config.update(ACTIVE_TURNS=1, QUEUED_TURNS=0, QUEUE_WAIT_S=0.0)
    app.extensions.pop("shopper_admission", None)
    results = _burst(app)
    codes = sorted(r.status_code for _, r in results)
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
    for c, r in results:
        if r.status_code == 503:
            body = r.get_json()
            assert body["status"] == 503 and "busy" in body["detail"]
            assert int(r.headers["Retry-After"]) > 0
            assert _kept_turns(c) == 1  # only the opening: the refused turn left no trace
        else:
            assert _kept_turns(c) == 2


def test_a_crowded_worker_hands_connections_on(app) -> None:  # type: ignore[no-untyped-def]
    """When turns queue up in this worker, some answers ask the client to reconnect
    (``Connection: close``), so its next request may go to a less busy worker; every turn is
    still answered and kept, and an uncrowded worker keeps its connections."""
    app.config.update(ACTIVE_TURNS=1, QUEUED_TURNS=48, QUEUE_WAIT_S=10.0, REBALANCE_AFTER=1)
    app.extensions.pop("shopper_admission", None)
    results = _burst(app)
    assert [r.status_code for _, r in results] == [200] * len(results)
    assert "close" in {r.headers.get("Connection") for _, r in results}
    assert all(_kept_turns(c) == 2 for c, _ in results)
    # One turn at a time, nothing waiting: the connection stays.
    c = results[0][0]
    r = c.client.post(f"/api/v1/conversations/{c.id}/turns", json={"text": "size M"},
                      headers=c.headers)
    assert r.status_code == 200 and "Connection" not in r.headers


def _timings(response: Any) -> dict[str, float]:
    """The durations (ms) of a ``Server-Timing`` header: {"app": 1.2, "cpu": 0.9, ...}."""
    out = {}
    for metric in response.headers["Server-Timing"].split(","):
        name, _, dur = metric.strip().partition(";dur=")
        out[name] = float(dur)
    return out


def test_server_timing_says_what_a_turn_cost_only_when_asked(  # type: ignore[no-untyped-def]
        app, services: Services) -> None:
    """With --server-timing every answer says, in a Server-Timing header, its time in the
    app, its thread's CPU and its wait for a turn slot; a turn that waited says so. Without
    it (the default) no answer tells how loaded the server is."""
    c = Chat(app.test_client(), "running shoes")
    r = c.client.post(f"/api/v1/conversations/{c.id}/turns", json={"text": "in blue"},
                      headers=c.headers)
    assert r.status_code == 200 and "Server-Timing" not in r.headers
    timed = create_app({"TESTING": True, "DATA_DIR": str(services.data_dir),
                        "API_KEY": API_KEY, "ANON_RATE_PER_MINUTE": 1000,
                        "SERVER_TIMING": True, "ACTIVE_TURNS": 1}, services=services)
    results = _burst(timed, n=6)
    assert [r.status_code for _, r in results] == [200] * 6
    got = [_timings(r) for _, r in results]
    assert all(t.keys() == {"app", "cpu", "wait"} for t in got)
    assert all(0 <= t["wait"] <= t["app"] and 0 < t["cpu"] for t in got)
    assert max(t["wait"] for t in got) > 0  # one turn at a time: the others waited
    assert "Server-Timing" in timed.test_client().get("/healthz").headers


def test_a_pick_pointed_at_in_words(chat: Any) -> None:
    c = chat("a watch for my wife, nothing gold")
    shown = {p["product_id"] for p in c.picks}
    second = c.picks[1]
    c.send(text="more like the second one")
    assert second["title"] in c.turn["message"]
    assert c.picks and not shown & {p["product_id"] for p in c.picks}  # others like it
    first = c.picks[0]["product_id"]
    c.send(text="not the first one")
    assert c.picks and first not in {p["product_id"] for p in c.picks}
    page = [p["product_id"] for p in c.picks]
    c.send(text="I'll take the second one")  # a choice: the same picks, and what to do next
    assert c.picks[1]["title"] in c.turn["message"] and "cart" in c.turn["message"]
    assert [p["product_id"] for p in c.picks] == page
    c.send(text="I like the ninth one")
    assert "I showed 5" in c.turn["message"] and c.picks
    # This catalog has no prices: "cheaper" said in passing is answered, not ignored.
    c.send(text="like the last one but cheaper")
    assert "no prices" in c.turn["message"] and c.picks
    said = c.turn["preferences"]
    c.send(text="something cheaper please")  # nothing else said: the refusal alone
    assert "no prices" in c.turn["message"] and c.turn["preferences"] == said
    # An ordinal that is not a pick stays the shopper's words.
    c.send(text="start over")
    c.send(text="a dress for the first day at my new office")
    assert "more like" not in c.turn["message"] and "which pick" not in c.turn["message"]
    assert c.turn["state"] in ("asking", "recommending")


def test_feedback_keeps_the_page_the_shopper_is_on(chat: Any) -> None:
    c = chat("a watch for men")
    first_page = {p["product_id"] for p in c.picks}
    c.send(action="more")
    page = [p["product_id"] for p in c.picks]
    c.send(feedback={"product_id": page[0], "kind": "not_interested"})
    now = {p["product_id"] for p in c.picks}
    assert page[0] not in now and not first_page & now
    assert len(set(page[1:]) & now) >= 3  # the rest of the page stays


def test_the_same_opening_again_is_answered_alike_and_weighed_once(chat: Any, client: Any,
                                                                    services: Any) -> None:
    """A rush brings the same words again and again: the second shopper gets the same
    question and picks, from the plan the first one's turn weighed (every product that fits
    "something for my wife"), and what one shopper says later changes nobody else's."""
    tools = services.assistant.tools("fashion")
    first = chat("something for my wife")
    before = tools.plans.hits, tools.questions.hits, tools.picks.hits
    second = chat("something for my wife")
    assert (tools.plans.hits, tools.questions.hits, tools.picks.hits) == \
        tuple(n + 1 for n in before)
    assert second.turn["question"] == first.turn["question"] is not None
    assert second.turn["picks"] == first.turn["picks"]
    first.say("not black")
    assert all(p["attributes"].get("colour") != "Black" for p in first.picks)
    third = chat("something for my wife")
    assert third.turn["picks"] == second.turn["picks"]
    assert third.turn["question"] == second.turn["question"]
    # A shopper whose profile says something is weighed on their own plan, not the crowd's
    # (for themselves: "for my wife" would leave their own taste out, as it should).
    crowd = [chat("a casual shirt").picks for _ in range(2)]
    assert crowd[0] == crowd[1] and any(p["attributes"].get("colour") == "Black"
                                        for p in crowd[0])
    r = client.put("/api/v1/shoppers/s-rush/preferences",
                   json={"attribute": "colour", "value": "black", "polarity": "avoid"},
                   headers=SERVER)
    assert r.status_code == 200
    mine = chat("a casual shirt", shopper_id="s-rush")
    assert mine.picks and all(p["attributes"].get("colour") != "Black" for p in mine.picks)


def test_a_crowd_opening_alike_at_once_gets_one_answer(app: Any) -> None:
    """Many request threads weighing the same opening at the same moment share its plan
    safely: every one is answered, alike, with nothing of one conversation in another."""
    from concurrent.futures import ThreadPoolExecutor

    def open_one(i: int) -> tuple[str, Any, Any]:
        chat = Chat(app.test_client(), "something casual for my husband" if i % 2
                    else "something for my wife")
        return chat.turn["message"], chat.turn["question"], chat.picks

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(open_one, range(24)))
    for parity in (0, 1):
        alike = {repr(a) for i, a in enumerate(answers) if i % 2 == parity}
        assert len(alike) == 1
    assert answers[0][2] != answers[1][2] and all(a[2] for a in answers)
