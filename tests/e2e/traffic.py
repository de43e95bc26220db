"""Shoppers talking to the real server from threads, and the checks that nothing they were
answered got lost (tests/e2e/test_faults.py, tests/e2e/test_two_servers.py)."""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.conftest import KEY, Server

OPENINGS = ("I need running shoes for my husband", "a black handbag for my wife",
            "blue jeans for men", "casual shirts for women", "a watch for my dad",
            "white t-shirt for a boy", "sports shoes", "a red dress")
SEASONS = ("Summer", "Fall", "Winter", "Spring")
THREADS = 6
TURNS_PER_CONVERSATION = 6


@dataclass
class Conv:
    id: str
    token: str
    answered: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)


@dataclass
class Shopper:
    """One thread's shopper: its conversations and what the server confirmed."""

    n: int
    signed_in: bool
    convs: list[Conv] = field(default_factory=list)
    prefs: dict[tuple[str, str], str] = field(default_factory=dict)  # last answered PUT
    events: list[dict[str, Any]] = field(default_factory=list)
    cut: int = 0  # requests that got no answer at all
    refused: int = 0  # answered with an error (503 while a worker boots)
    turn: dict[str, Any] | None = None
    steps: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]

    @property
    def shopper_id(self) -> str | None:
        return f"fault-shopper-{self.n}" if self.signed_in else None


class Traffic:
    """The threads and what they saw; ``inflight`` counts requests on the wire. With several
    servers each request goes to the next one in turn."""

    def __init__(self, *servers: Server) -> None:
        self.servers = servers
        self.picks = itertools.count()
        self.shoppers = [Shopper(n, signed_in=n % 2 == 0) for n in range(THREADS)]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.inflight = 0
        self.answered = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(s,), daemon=True)
                        for s in self.shoppers]

    def call(self, shopper: Shopper, method: str, path: str, body: Any = None,
             token: str | None = None) -> tuple[int, Any] | None:
        with self.lock:
            self.inflight += 1
        try:
            server = self.servers[next(self.picks) % len(self.servers)]
            status, data = server.call(method, path, body, token, timeout=20)
        except (OSError, http.client.HTTPException, ValueError):
            # reset, refused, timed out, cut in the middle of the answer: no answer
            shopper.cut += 1
            time.sleep(0.2)
            return None
        finally:
            with self.lock:
                self.inflight -= 1
        if status < 300:
            with self.lock:
                self.answered += 1
        else:
            shopper.refused += 1
            if status != 503:
                self.errors.append(f"{method} {path} {body}: {status} {data}")
            time.sleep(0.2)
        return status, data

    def _run(self, s: Shopper) -> None:
        while not self.stop.is_set():
            self._step(s)

    def _step(self, s: Shopper) -> None:
        n = next(s.steps)
        if s.signed_in and n % 3 == 1:
            self._profile(s, n)
            return
        conv = s.convs[-1] if s.convs else None
        if conv is None or len(conv.answered) >= TURNS_PER_CONVERSATION or s.turn is None:
            text = OPENINGS[(s.n + len(s.convs)) % len(OPENINGS)]
            body: dict[str, Any] = {"channel": "web", "text": text}
            if s.shopper_id:
                body["shopper_id"] = s.shopper_id
            got = self.call(s, "POST", "/api/v1/conversations", body,
                            KEY if s.signed_in else None)
            if got and got[0] == 201:
                s.turn = got[1]
                s.convs.append(Conv(got[1]["conversation_id"], got[1]["token"],
                                    [({"text": text}, got[1])]))
            return
        turn = s.turn
        q = turn["question"]
        if q and q["options"] and q["attribute"] != "season" and n % 4:
            req: dict[str, Any] = {"answer": {"attribute": q["attribute"],
                                              "value": q["options"][0]["value"]}}
        elif q:  # a skip; never a season, which the profile checks keep for PUTs
            req = {"answer": {"attribute": q["attribute"], "value": None}}
        elif turn["picks"] and n % 3 == 0:
            req = {"feedback": {"product_id": turn["picks"][-1]["product_id"],
                                "kind": "like"}}
        elif n % 2:
            req = {"text": "something cheaper please"}
        else:
            req = {"action": "more"}
        got = self.call(s, "POST", f"/api/v1/conversations/{conv.id}/turns", req, conv.token)
        if got and got[0] == 200:
            s.turn = got[1]
            conv.answered.append((req, got[1]))

    def _profile(self, s: Shopper, n: int) -> None:
        path = f"/api/v1/shoppers/{s.shopper_id}"
        if n % 2:
            season = SEASONS[n % len(SEASONS)]
            polarity = "avoid" if n % 4 == 3 else "want"
            got = self.call(s, "PUT", f"{path}/preferences",
                            {"attribute": "season", "value": season, "polarity": polarity},
                            KEY)
            if got and got[0] == 200:
                s.prefs[("season", season)] = polarity
        else:
            product = (s.turn or {}).get("picks") or [{"product_id": "15970"}]
            ev = ({"type": "search", "query": f"fault probe {s.n} {n}"} if n % 4
                  else {"type": "view", "product_id": product[0]["product_id"],
                        "at": f"2026-01-01T00:{s.n:02d}:{n % 60:02d}+00:00"})
            got = self.call(s, "POST", f"{path}/events", ev, KEY)
            if got and got[0] == 201:
                s.events.append(got[1])

    def wait(self, answered: int, inflight: int, timeout: float = 30) -> None:
        """Until ``answered`` requests were answered in all, and ``inflight`` are on the
        wire right now."""
        deadline = time.monotonic() + timeout
        while self.answered < answered or self.inflight < inflight:
            assert time.monotonic() < deadline, (self.answered, self.inflight, self.errors)
            time.sleep(0.005)


def _same(answer: dict[str, Any], kept: dict[str, Any]) -> bool:
    return (answer["state"] == kept["state"] and answer["message"] == kept["message"]
            and answer["question"] == kept["question"]
            and [p["product_id"] for p in answer["picks"]]
            == [p["product_id"] for p in kept["picks"]])


def _said(turn: dict[str, Any]) -> set[tuple[str, str, str]]:
    """What the conversation itself holds (as opposed to the profile)."""
    return {(p["attribute"], p["value"], p["polarity"]) for p in turn["preferences"]
            if p["evidence"].startswith("you said so on")}


def check_nothing_answered_was_lost(server: Server, traffic: Traffic) -> None:
    """Every turn answered 200 is in its transcript, in order (turns that got no answer may
    sit between them), with no gap in the sequence; each conversation continues from the
    state it was in; every answered stated preference and event is in the profile/export."""
    for conv in [c for s in traffic.shoppers for c in s.convs]:
        status, kept = server.call("GET", f"/api/v1/conversations/{conv.id}", token=conv.token)
        assert status == 200, kept
        turns = kept["turns"]
        assert [t["seq"] for t in turns] == list(range(len(turns))), "a turn half-written"
        i = 0
        for req, answer in conv.answered:
            while i < len(turns) and not (turns[i]["request"] == req
                                          and _same(answer, turns[i])):
                i += 1
            assert i < len(turns), f"{conv.id}: answered turn {req} lost"
            i += 1
        assert kept["state"] == turns[-1]["state"]
        status, more = server.call("POST", f"/api/v1/conversations/{conv.id}/turns",
                                   {"action": "more"}, conv.token)
        assert status == 200, more
        assert more["state"] == "recommending"
        assert _said(more) == _said(turns[-1]), "the conversation forgot what was said"
        status, after = server.call("GET", f"/api/v1/conversations/{conv.id}", token=conv.token)
        assert len(after["turns"]) == len(turns) + 1
    for s in traffic.shoppers:
        if not s.signed_in:
            continue
        status, profile = server.call("GET", f"/api/v1/shoppers/{s.shopper_id}/profile",
                                      token=KEY)
        stated = {(p["attribute"], p["value"]): p["polarity"] for p in profile["stated"]}
        for key, polarity in s.prefs.items():
            assert stated.get(key) == polarity, (s.shopper_id, key)
        status, export = server.call("GET", f"/api/v1/shoppers/{s.shopper_id}/export",
                                     token=KEY)
        kept_events = {_event_key(e) for e in export["tables"]["events"]}
        for ev in s.events:
            assert _event_key(ev) in kept_events, (s.shopper_id, ev)


def _event_key(ev: dict[str, Any]) -> tuple[Any, ...]:
    return (ev["type"], ev["product_id"], ev["query"]) + (
        (ev["at"],) if ev["type"] == "view" else ())
