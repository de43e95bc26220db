""""It knows the shopper": eight scenarios driven only through the HTTP API, as a report.

Each scenario plays a shopper (a fresh, unique shopper id), says what it did, what came back,
and checks the promise: stated beats inferred, a one-time purchase is not a hobby, interest
fades, the session counts most, variety, budgets, shopping for someone else, and control.
Products are found by searching the catalog through the API, so the scenarios run on the
full bundled catalogs and on the test slices alike. Every shopper a scenario creates is
deleted at its end.

The scenarios talk to a tiny client, ``get/post/put/delete(path, json=None, headers=None) ->
(status, body)``: ``HttpClient`` speaks HTTP with urllib (``scripts/scenarios.py``), and
``FlaskClient`` wraps Flask's test client (``tests/test_memory.py``).
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

__all__ = ["SCENARIOS", "Client", "FlaskClient", "HttpClient", "Result", "format_report",
           "run_scenarios"]

Json = Any


class Client(Protocol):
    def get(self, path: str, json: Json = None, headers: dict[str, str] | None = None
            ) -> tuple[int, Json]: ...
    def post(self, path: str, json: Json = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Json]: ...
    def put(self, path: str, json: Json = None, headers: dict[str, str] | None = None
            ) -> tuple[int, Json]: ...
    def delete(self, path: str, json: Json = None, headers: dict[str, str] | None = None
               ) -> tuple[int, Json]: ...


class ScenarioError(Exception):
    """The API answered something a scenario cannot go on from (or could not be reached)."""


class HttpClient:
    """The client interface over real HTTP (urllib only)."""

    def __init__(self, base_url: str, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Json, headers: dict[str, str] | None
              ) -> tuple[int, Json]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Accept": "application/json", **(headers or {}),
                                              **({"Content-Type": "application/json"}
                                                 if data is not None else {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        except (urllib.error.URLError, TimeoutError) as exc:
            raise ScenarioError(f"{method} {path}: cannot reach {self.base_url}: {exc}") from None
        return status, (json.loads(raw) if raw.strip() else None)

    def get(self, path: str, json: Json = None, headers: dict[str, str] | None = None
            ) -> tuple[int, Json]:
        return self._call("GET", path, json, headers)

    def post(self, path: str, json: Json = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Json]:
        return self._call("POST", path, json, headers)

    def put(self, path: str, json: Json = None, headers: dict[str, str] | None = None
            ) -> tuple[int, Json]:
        return self._call("PUT", path, json, headers)

    def delete(self, path: str, json: Json = None, headers: dict[str, str] | None = None
               ) -> tuple[int, Json]:
        return self._call("DELETE", path, json, headers)


class FlaskClient:
    """The client interface over Flask's test client."""

    def __init__(self, test_client: Any) -> None:
        self.client = test_client

    def _call(self, method: str, path: str, body: Json, headers: dict[str, str] | None
              ) -> tuple[int, Json]:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if body is not None:
            kwargs["json"] = body
        r = getattr(self.client, method)(path, **kwargs)
        return r.status_code, (r.get_json(silent=True) if r.data else None)

    def get(self, path: str, json: Json = None, headers: dict[str, str] | None = None
            ) -> tuple[int, Json]:
        return self._call("get", path, json, headers)

    def post(self, path: str, json: Json = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Json]:
        return self._call("post", path, json, headers)

    def put(self, path: str, json: Json = None, headers: dict[str, str] | None = None
            ) -> tuple[int, Json]:
        return self._call("put", path, json, headers)

    def delete(self, path: str, json: Json = None, headers: dict[str, str] | None = None
               ) -> tuple[int, Json]:
        return self._call("delete", path, json, headers)


@dataclass
class Result:
    """One scenario's story and verdict."""

    name: str
    title: str
    lines: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(ok for _, ok in self.checks)


def _ago(**kw: float) -> str:
    return (datetime.now(UTC) - timedelta(**kw)).isoformat(timespec="seconds")


def _short(p: dict[str, Any]) -> str:
    a = p.get("attributes", {})
    bits = [a.get("gender"), a.get("colour"), a.get("article_type"), a.get("brand")]
    price = f" {p['price']:,.0f}" if p.get("price") is not None else ""
    return f"{p['product_id']} ({' '.join(b for b in bits if b)}{price})"


def _type(p: dict[str, Any]) -> str | None:
    t: str | None = p.get("attributes", {}).get("article_type")
    return t


class Shop:
    """A scenario's view of the API: the server key, unique shoppers, and short helpers."""

    def __init__(self, client: Client, api_key: str, result: Result) -> None:
        self.client = client
        self.key = {"Authorization": f"Bearer {api_key}"}
        self.result = result
        self.run_id = secrets.token_hex(3)
        self.shoppers: list[str] = []

    # Reporting -----------------------------------------------------------------------------
    def say(self, line: str) -> None:
        self.result.lines.append(line)

    def check(self, label: str, ok: object) -> bool:
        self.result.checks.append((label, bool(ok)))
        return bool(ok)

    # Calls ---------------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Json = None, *, expect: Iterable[int] = (200,),
             headers: dict[str, str] | None = None) -> Json:
        status, data = getattr(self.client, method)(path, json=body,
                                                    headers=self.key if headers is None
                                                    else headers)
        if status not in tuple(expect):
            detail = data.get("detail") if isinstance(data, dict) else data
            raise ScenarioError(f"{method.upper()} {path} answered {status}: {detail}")
        return data

    def shopper(self, label: str) -> str:
        sid = f"scn-{self.run_id}-{label}"
        self.shoppers.append(sid)
        return sid

    def search(self, q: str, *, k: int = 10, shopper: str | None = None,
               catalog: str | None = None, product_id: str | None = None) -> list[Json]:
        params = {"q": q, "k": k, "shopper_id": shopper, "catalog": catalog,
                  "product_id": product_id}
        query = urlencode({n: v for n, v in params.items() if v is not None})
        picks: list[Json] = self.call("get", f"/api/v1/search?{query}")["picks"]
        return picks

    def find(self, q: str, where: Callable[[Json], bool] = lambda p: True, *, n: int = 1,
             catalog: str | None = None, skip: int = 0) -> list[Json]:
        """Products found by an anonymous search, filtered; raises when there are too few."""
        found = [p for p in self.search(q, k=60, catalog=catalog) if where(p)][skip:skip + n]
        if len(found) < n:
            raise ScenarioError(f"the catalog search {q!r} found {len(found)} of the {n} "
                                "products this scenario needs")
        return found

    def event(self, shopper: str, type_: str, *, product_id: str | None = None,
              query: str | None = None, at: str | None = None, recipient: str | None = None,
              catalog: str | None = None) -> None:
        body = {"type": type_, "product_id": product_id, "query": query, "at": at,
                "recipient": recipient, "catalog": catalog}
        self.call("post", f"/api/v1/shoppers/{shopper}/events",
                  {k: v for k, v in body.items() if v is not None}, expect=(201,))

    def profile(self, shopper: str) -> Json:
        return self.call("get", f"/api/v1/shoppers/{shopper}/profile")

    def converse(self, text: str, *, shopper: str | None = None, catalog: str | None = None,
                 product_id: str | None = None, more: int = 1) -> tuple[list[Json], Json]:
        """A conversation: the first words, 'no preference' to each question, then 'more'.
        Returns every pick shown and the last turn."""
        body = {"channel": "web", "text": text, "shopper_id": shopper, "catalog": catalog,
                "product_id": product_id}
        turn = self.call("post", "/api/v1/conversations",
                         {k: v for k, v in body.items() if v is not None}, expect=(201,))
        conv, token = turn["conversation_id"], {"Authorization": f"Bearer {turn['token']}"}
        shown = list(turn["picks"])
        for _ in range(4):
            if not turn.get("question"):
                break
            turn = self.call("post", f"/api/v1/conversations/{conv}/turns",
                             {"answer": {"attribute": turn["question"]["attribute"],
                                         "value": None}}, headers=token)
            shown += turn["picks"]
        for _ in range(more):
            turn = self.call("post", f"/api/v1/conversations/{conv}/turns",
                             {"action": "more"}, headers=token)
            shown += turn["picks"]
        turn["conversation_id"], turn["token"] = conv, token
        return shown, turn

    def turn(self, turn: Json, body: Json) -> Json:
        out: Json = self.call("post", f"/api/v1/conversations/{turn['conversation_id']}/turns",
                              body, headers=turn["token"])
        out["conversation_id"], out["token"] = turn["conversation_id"], turn["token"]
        return out

    def forget_all(self) -> None:
        for sid in self.shoppers:
            self.call("delete", f"/api/v1/shoppers/{sid}", expect=(204,))


# The scenarios -------------------------------------------------------------------------------
def stated_beats_inferred(shop: Shop) -> None:
    """Three black purchases, then 'no more black': no black anywhere, both kinds visible."""
    s = shop.shopper("black")

    def black(p: Json) -> bool:
        return bool(p["attributes"].get("colour") == "Black")
    bought = [shop.find(q, black)[0] for q in ("black t-shirt for men", "black casual shoes",
                                               "black backpack")]
    for days, p in zip((12, 25, 40), bought, strict=True):
        shop.event(s, "purchase", product_id=p["product_id"], at=_ago(days=days))
    shop.say("bought " + ", ".join(_short(p) for p in bought))
    inferred = shop.profile(s)["inferred"]
    guess = next((p for p in inferred if (p["attribute"], p["value"]) == ("colour", "Black")),
                 None)
    shop.say(f"profile guesses: {guess and guess['evidence']}, strength "
             f"{guess and guess['strength']}")
    shop.check("three black purchases are inferred as a liking for black, with evidence",
               guess is not None and "3 purchases" in guess["evidence"])
    shown, turn = shop.converse("something for me, no more black", shopper=s)
    shop.say(f"said “something for me, no more black”: {len(shown)} picks, colours "
             f"{dict(Counter(p['attributes'].get('colour') for p in shown))}")
    shop.check("no black pick in that conversation", shown and not any(map(black, shown)))
    prof = shop.profile(s)
    stated = {(p["attribute"], p["value"], p["polarity"]) for p in prof["stated"]}
    eff = {(p["attribute"], p["value"], p["polarity"], p["source"]) for p in prof["effective"]}
    shop.say(f"profile: stated {sorted(stated)}; inferred black still listed: "
             f"{any(p['value'] == 'Black' for p in prof['inferred'])}")
    shop.check("the stated 'avoid black' is in the profile and wins in effective",
               ("colour", "Black", "avoid") in stated
               and ("colour", "Black", "avoid", "stated") in eff
               and ("colour", "Black", "want", "inferred") not in eff)
    shop.check("the inferred liking stays visible (and editable) next to it",
               any(p["value"] == "Black" and p["source"] == "inferred" for p in prof["inferred"]))
    later = [p for q in ("shirts", "something for me", "a jacket", "casual shoes")
             for p in shop.search(q, shopper=s)]
    chat_later, _ = shop.converse("a jacket", shopper=s)
    shop.say(f"later searches and a new conversation: {len(later) + len(chat_later)} picks, "
             f"{sum(map(black, later + chat_later))} black")
    shop.check("no black in later searches or conversations",
               later and chat_later and not any(map(black, later + chat_later)))
    shop.call("delete", f"/api/v1/shoppers/{s}/preferences",
              {"attribute": "colour", "value": "Black"})
    back = shop.search("shirts", shopper=s)
    shop.say(f"after deleting the stated one, 'shirts' shows {sum(map(black, back))} black")
    shop.check("deleting it lets the inferred liking act again", any(map(black, back)))
    shop.call("put", f"/api/v1/shoppers/{s}/preferences",
              {"attribute": "colour", "value": "Black", "polarity": "avoid"})
    again = shop.search("shirts", shopper=s) + shop.search("something for me", shopper=s)
    shop.check("a PUT 'avoid black' removes black again", not any(map(black, again)))


def one_time_purchase(shop: Shop) -> None:
    """Durables are not pushed again; consumables come back when they run out; dismissals
    last."""
    vague = "something for me"
    s = shop.shopper("durable")
    anon = shop.search(vague, k=10)
    common = Counter(t for t in map(_type, anon) if t).most_common(1)[0][0]
    item = next(p for p in anon if _type(p) == common)
    watch = shop.find("a watch for men", lambda p: _type(p) == "Watches")[0]
    shop.event(s, "purchase", product_id=item["product_id"], at=_ago(days=20))
    shop.event(s, "purchase", product_id=watch["product_id"], at=_ago(days=30))
    shop.say(f"anonymous “{vague}” shows mostly {common}; the shopper bought {_short(item)} "
             f"and the watch {_short(watch)}")
    picks = shop.search(vague, shopper=s) + shop.search("a present for a man", shopper=s)
    shown, _ = shop.converse(vague, shopper=s)
    shop.say(f"vague search and conversation: types "
             f"{dict(Counter(map(_type, picks + shown)).most_common(5))}")
    shop.check(f"no {common} and no watches suggested unprompted",
               picks and shown and not {common, "Watches"} & set(map(_type, picks + shown)))
    why = [r for p in picks for r in p["reasons"] if "unless you ask" in r]
    shop.say(f"reason given: “{why[0] if why else '-'}”")
    shop.check("picks say which purchase moved them", bool(why))
    asked = shop.search("a watch for men", shopper=s, k=30)
    shown, _ = shop.converse("a watch for men", shopper=s)
    shop.check("asking for watches shows watches, never the one bought",
               asked and all(_type(p) == "Watches" for p in asked[:5])
               and watch["product_id"] not in {p["product_id"] for p in asked + shown})

    care = "personal care for men"
    deo = shop.find(care, lambda p: p["attributes"].get("article_type") in (
        "Deodorant", "Fragrance", "Perfume and Body Mist"))[0]
    kind = _type(deo)
    fresh, due = shop.shopper("fresh"), shop.shopper("due")
    shop.event(fresh, "purchase", product_id=deo["product_id"], at=_ago(days=7))
    shop.event(due, "purchase", product_id=deo["product_id"], at=_ago(days=120))
    got = shop.search(care, shopper=fresh) + shop.search(vague, shopper=fresh)
    shop.say(f"bought {_short(deo)} a week ago; “{care}” shows {kind}: "
             f"{sum(_type(p) == kind for p in got)}")
    shop.check(f"within its cycle the {kind} is not pushed", not any(_type(p) == kind
                                                                     for p in got))
    got = shop.search(vague, shopper=due, k=5) + shop.search(care, shopper=due, k=5)
    hint = next((r for p in got for r in p["reasons"] if "running out" in r), None)
    shop.say(f"bought it 4 months ago: “{hint}”")
    shop.check("after its cycle it comes back, with a reason",
               any(_type(p) == kind for p in got) and hint is not None)

    d = shop.shopper("dismiss")
    shown, turn = shop.converse("a watch for men", shopper=d)
    meh, owned = shown[0]["product_id"], shown[1]["product_id"]
    shop.turn(turn, {"feedback": {"product_id": meh, "kind": "not_interested"}})
    shop.turn(turn, {"feedback": {"product_id": owned, "kind": "already_own"}})
    later, _ = shop.converse("a watch for men", shopper=d, more=3)
    later += shop.search("a watch for men", shopper=d, k=100)
    shop.say(f"said not interested in {meh} and already own {owned}")
    shop.check("both are gone from later conversations and searches",
               later and not {meh, owned} & {p["product_id"] for p in later})
    vague_picks = shop.search("a present for a man", shopper=d) + shop.search(vague, shopper=d)
    shop.check("owning a watch also stops unprompted watches",
               not any(_type(p) == "Watches" for p in vague_picks))


def fading(shop: Shop) -> None:
    """One search weeks ago has no visible effect; an interest repeated over weeks stays."""
    q, ask = "red kurta", "kurtas for women"
    once, often = shop.shopper("once"), shop.shopper("often")
    shop.event(once, "search", query=q, at=_ago(days=21))
    for days in (42, 35, 28, 21, 14, 7):
        shop.event(often, "search", query=q, at=_ago(days=days))
    anon = [p["product_id"] for p in shop.search(ask)]
    inferred = shop.profile(once)["inferred"]
    picks = [p["product_id"] for p in shop.search(ask, shopper=once)]
    shop.say(f"one search “{q}” three weeks ago: inferred {inferred}")
    shop.check("one old search leaves no inferred preference and the same picks",
               inferred == [] and picks == anon)
    prof = shop.profile(often)
    red = next((p for p in prof["inferred"] if p["value"] == "Red"), None)
    shop.say(f"“{q}” weekly for six weeks: {red and (red['strength'], red['evidence'])}")
    shop.check("an interest repeated over weeks stays, with evidence",
               red is not None and "6 searches" in red["evidence"])
    mine = shop.search(ask, shopper=often, k=5)
    n_red = sum(p["attributes"].get("colour") == "Red" for p in mine)
    n_anon = sum(p["attributes"].get("colour") == "Red" for p in shop.search(ask, k=5))
    shop.say(f"“{ask}”: {n_red} red of 5 for this shopper, {n_anon} for anyone")
    shop.check("and it moves the picks", n_red > n_anon)


def session_first(shop: Shop) -> None:
    """What the shopper did in this visit outweighs older history."""
    s = shop.shopper("session")
    women = shop.find("t-shirts for women", lambda p: p["attributes"].get("gender") == "Women",
                      n=4)
    for i, p in enumerate(women):
        shop.event(s, "view", product_id=p["product_id"], at=_ago(days=10 + 5 * i))
    jeans = shop.find("jeans for men", lambda p: _type(p) == "Jeans"
                      and p["attributes"].get("gender") == "Men", n=2)
    for i, p in enumerate(jeans):
        shop.event(s, "view", product_id=p["product_id"], at=_ago(minutes=20 - 10 * i))
    shop.say("viewed 4 women's t-shirts over the last weeks, then men's jeans just now")

    def men(ps: list[Json]) -> int:
        return sum(p["attributes"].get("gender") == "Men" and _type(p) == "Tshirts"
                   for p in ps[:5])
    found = shop.search("blue t-shirts", shopper=s)
    _, turn = shop.converse("blue t-shirts", shopper=s, more=0)
    if not turn["picks"]:
        turn = shop.turn(turn, {"action": "more"})
    shop.say(f"“blue t-shirts”: men's t-shirts in the top 5: search {men(found)}, "
             f"conversation {men(turn['picks'])}; reason “{found[0]['reasons'][-1]}”")
    shop.check("search puts men's t-shirts first (4 of 5 at least)", men(found) >= 4)
    shop.check("so does a conversation", men(turn["picks"]) >= 4)

    r = shop.shopper("returning")
    ask = "handbags for women"
    viewed = shop.find(ask, lambda p: _type(p) == "Handbags", n=3, skip=12)
    for i, p in enumerate(viewed):
        shop.event(r, "view", product_id=p["product_id"], at=_ago(days=2, minutes=10 * i))
    ids = {p["product_id"] for p in viewed}
    anon = ids & {p["product_id"] for p in shop.search(ask)}
    top = shop.search(ask, shopper=r)
    seen = ids & {p["product_id"] for p in top}
    shop.say(f"viewed 3 handbags two days ago (ranked past 12th for anyone: {len(anon)} of "
             f"them in anyone's top 10); back now, {len(seen)} of them in the top 10")
    shop.check("the three viewed products are near the top (top 10)", seen == ids)


def variety(shop: Shop) -> None:
    """Top 5 not all one colour or brand unless pinned; 'similar' never returns the product."""
    for q, catalog in (("t-shirts for men", None), ("watches", None), ("casual shoes", None),
                       ("kurtas", "myntra"), ("shirts for men", "myntra")):
        try:
            top = shop.search(q, k=5, catalog=catalog)
        except ScenarioError as exc:
            shop.say(f"{q!r} on {catalog}: skipped ({exc})")
            continue
        colours = {p["attributes"].get("colour") for p in top}
        brands = {p["attributes"].get("brand") for p in top}
        shop.say(f"“{q}” ({catalog or 'default'}): colours {sorted(map(str, colours))}, "
                 f"brands {len(brands)}")
        shop.check(f"“{q}”: top 5 not all one colour or one brand",
                   len(colours) > 1 and (len(brands) > 1 or brands == {None}))
    pinned = shop.search("blue t-shirts", k=5)
    shop.check("a pinned colour is kept (blue t-shirts are all blue)",
               all(p["attributes"].get("colour") == "Blue" for p in pinned))
    looked = shop.find("casual shoes for men", lambda p: _type(p) == "Casual Shoes")[0]
    pid = looked["product_id"]
    similar = shop.search("", product_id=pid)
    with_q = shop.search("casual shoes", product_id=pid)
    shown, _ = shop.converse("casual shoes for men", product_id=pid, more=2)
    shop.say(f"looking at {_short(looked)}: similar → "
             f"{dict(Counter(map(_type, similar)))}")
    shop.check("“similar to this product” never returns it, in search or conversation",
               similar and pid not in {p["product_id"] for p in similar + with_q + shown})
    shop.check("and is similar (mostly the same type)",
               sum(_type(p) == "Casual Shoes" for p in similar) >= len(similar) // 2)


def budget(shop: Shop) -> None:
    """A stated budget is a hard limit; 'cheaper' goes below the cheapest or says none."""
    s = shop.shopper("budget")
    shown, turn = shop.converse("jeans for women under 1500", catalog="myntra", shopper=s)
    priced = [p["price"] for p in shown]
    shop.say(f"“jeans for women under 1500”: {len(shown)} picks, prices "
             f"{sorted(priced)[:8]}…")
    shop.check("every pick within 1500", shown and all(x is not None and x <= 1500
                                                       for x in priced))
    ok, rounds, said_none = True, 0, False
    cheapest = min(p["price"] for p in turn["picks"]) if turn["picks"] else min(priced)
    while rounds < 8:
        rounds += 1
        turn = shop.turn(turn, {"action": "cheaper"})
        if not turn["picks"]:
            said_none = "cheaper" in turn["message"].lower()
            shop.say(f"cheaper #{rounds}: none — “{turn['message'][:90]}”")
            break
        now = [p["price"] for p in turn["picks"]]
        ok &= all(x < cheapest for x in now)
        shop.say(f"cheaper #{rounds}: {sorted(now)}")
        cheapest = min(now)
    shop.check("each 'cheaper' is below the cheapest shown so far", ok)
    shop.check("and when nothing is cheaper it says so", said_none or rounds == 8)
    picks = shop.search("t-shirts for men under 500", catalog="myntra", shopper=s)
    shop.check("a budget in a search is a hard limit too",
               picks and all(p["price"] is not None and p["price"] <= 500 for p in picks))


def someone_else(shop: Shop) -> None:
    """Shopping for someone else stays theirs; a saved recipient's likes are applied."""
    s = shop.shopper("gifts")
    shown, turn = shop.converse("a watch for my husband", shopper=s)
    turn = shop.turn(turn, {"text": "black please"})
    shop.say(f"“a watch for my husband”, then “black please”: "
             f"{dict(Counter(p['attributes'].get('gender') for p in shown))}")
    shop.check("it shops for him (men's or unisex watches)",
               shown and all(_type(p) == "Watches" and p["attributes"].get("gender") in
                             ("Men", "Unisex") for p in shown))
    gift = shop.find("a dress", lambda p: _type(p) == "Dresses")[0]
    shop.event(s, "purchase", product_id=gift["product_id"], recipient="niece")
    prof = shop.profile(s)
    shop.say(f"bought {_short(gift)} for the niece; own profile: stated {prof['stated']}, "
             f"inferred {prof['inferred']}")
    shop.check("nothing said or bought for them becomes the shopper's own taste",
               prof["stated"] == [] and prof["inferred"] == [])
    saved = shop.call("put", f"/api/v1/shoppers/{s}/recipients/husband",
                      {"text": "size L, likes navy"})
    listed = shop.call("get", f"/api/v1/shoppers/{s}/recipients")["recipients"]
    shop.say(f"saved “my husband: size L, likes navy” → {saved['attributes']}")
    shop.check("the recipient is kept with its attributes",
               saved["attributes"].get("size") == "L"
               and "navy" in saved["attributes"].get("colour", "").lower()
               and [r["name"] for r in listed] == ["husband"])
    shown, _ = shop.converse("a shirt for my husband", shopper=s, more=0)
    anon, _ = shop.converse("a shirt for my husband", more=0)

    def navy(ps: list[Json]) -> int:
        return sum("navy" in (p["attributes"].get("colour") or "").lower() for p in ps)
    why = next((r for p in shown for r in p["reasons"] if "husband likes" in r), None)
    shop.say(f"“a shirt for my husband”: {navy(shown)} navy of {len(shown)} (anyone: "
             f"{navy(anon)} of {len(anon)}); reason “{why}”")
    shop.check("his saved likes move the picks, with a reason",
               navy(shown) > navy(anon) and why is not None)


def control(shop: Shop) -> None:
    """Export shows every row, evidence says where each preference came from, delete forgets."""
    s = shop.shopper("control")
    tee = shop.find("t-shirts for men", lambda p: _type(p) == "Tshirts", n=3)
    for i, p in enumerate(tee):
        shop.event(s, "view", product_id=p["product_id"], at=_ago(days=i + 1))
    shop.event(s, "purchase", product_id=tee[0]["product_id"], at=_ago(days=3))
    shop.call("put", f"/api/v1/shoppers/{s}/preferences",
              {"attribute": "colour", "value": "Green", "polarity": "want"})
    shop.call("put", f"/api/v1/shoppers/{s}/recipients/mother", {"text": "likes pink"})
    shop.converse("a belt for me", shopper=s, more=0)
    prof = shop.profile(s)
    prefs = prof["stated"] + prof["inferred"]
    shop.say("profile: " + "; ".join(f"{p['attribute']}={p['value']} ({p['source']}: "
                                     f"{p['evidence']})" for p in prefs))
    shop.check("every preference says where it came from",
               prefs and all(p["evidence"] and p["source"] in ("stated", "inferred")
                             for p in prefs))
    export = shop.call("get", f"/api/v1/shoppers/{s}/export")
    counts = {t: len(rows) for t, rows in export["tables"].items()}
    shop.say(f"export: {counts}")
    shop.check("export returns the rows kept", all(counts.get(t) for t in
                                                   ("preferences", "events", "recipients",
                                                    "conversations", "turns")))
    personal = [p["product_id"] for p in shop.search("t-shirts", shopper=s)]
    shop.call("delete", f"/api/v1/shoppers/{s}", expect=(204,))
    export = shop.call("get", f"/api/v1/shoppers/{s}/export")
    prof = shop.profile(s)
    after = [p["product_id"] for p in shop.search("t-shirts", shopper=s)]
    anon = [p["product_id"] for p in shop.search("t-shirts")]
    shop.say(f"deleted: export rows {sum(len(r) for r in export['tables'].values())}; "
             f"picks personalised before: {personal != anon}, after: {after != anon}")
    shop.check("delete removes every row", all(rows == [] for rows in export["tables"].values())
               and prof["stated"] == prof["inferred"] == [])
    shop.check("and later picks are no longer personalised", after == anon)


SCENARIOS: dict[str, tuple[str, Callable[[Shop], None]]] = {
    "stated": ("1. Stated beats inferred", stated_beats_inferred),
    "purchases": ("2. A one-time purchase is not a hobby", one_time_purchase),
    "fading": ("3. One search is not a lifelong interest", fading),
    "session": ("4. The session counts most", session_first),
    "variety": ("5. Variety, and 'similar' never returns the product itself", variety),
    "budget": ("6. Customer first: budgets and 'cheaper'", budget),
    "someone_else": ("7. Shopping for someone else", someone_else),
    "control": ("8. Control: export, evidence, forget", control),
}


def run_scenarios(client: Client, api_key: str, only: Iterable[str] | None = None
                  ) -> list[Result]:
    """Run the scenarios (all, or those named) and return their results; never raises for a
    failing scenario, which is reported as FAIL with the error."""
    results = []
    for name in only or SCENARIOS:
        title, fn = SCENARIOS[name]
        result = Result(name, title)
        shop = Shop(client, api_key, result)
        try:
            fn(shop)
        except (ScenarioError, KeyError, TypeError, ValueError, IndexError,
                StopIteration) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                shop.forget_all()
            except ScenarioError as exc:
                result.error = result.error or f"cleaning up: {exc}"
        results.append(result)
    return results


def format_report(results: list[Result]) -> str:
    """The results as a readable report, one block per scenario."""
    out = []
    for r in results:
        out.append(f"{'PASS' if r.passed else 'FAIL'}  {r.title}")
        out.extend(f"      {line}" for line in r.lines)
        out.extend(f"   [{'ok' if ok else 'NO'}] {label}" for label, ok in r.checks)
        if r.error:
            out.append(f"   error: {r.error}")
        out.append("")
    passed = sum(r.passed for r in results)
    out.append(f"{passed} of {len(results)} scenarios passed")
    return "\n".join(out)
