"""Evaluate the assistant with simulated shoppers, against a plain semantic-search box.

Each simulated shopper has a hidden target product from a bundled catalog, opens with a vague
need drawn from ONE of the target's attributes ("a t-shirt", "something for my wife"), and
answers every question truthfully from the target. Three kinds, assigned round-robin:

- ``volunteer`` answers in words and adds one true fact not asked ("men, in navy blue");
- ``passive`` taps an offered option, otherwise says "not sure, show me more";
- ``refuser`` opens with the need plus a colour the target is not ("a t-shirt, but not
  black"), then behaves like ``passive``.

Success@5: within ``max_turns`` shopper turns (the opening is turn 1) a pick in some Turn's top
five agrees with the target on gender, article_type, colour and usage. The same shoppers then
use the search box (``GET /api/v1/search``) without questions. ``run_evaluation`` drives both
through any client with ``post``/``get`` (``FlaskClient`` in process, ``HttpClient`` for a live
server) and returns the figures as a dict; ``format_report`` renders them.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from catalog.catalog import bundled_mapping
from catalog.importers import import_products

__all__ = [
    "FlaskClient", "HttpClient", "Shopper", "format_report", "in_process_client",
    "load_shoppers", "run_evaluation",
]

KINDS = ("volunteer", "passive", "refuser")
MATCH_ON = ("gender", "article_type", "colour", "usage")
TOP = 5
OPENING_WEIGHTS = {"article_type": 0.6, "gender": 0.25, "usage": 0.15}
VIOLATION_RULE = (
    "a top-5 pick violates when it carries a refused colour, or a concrete value different from "
    "one the shopper stated or tapped for the same attribute (picks missing the attribute do not "
    "count); a Unisex pick where the shopper said Men or Women is compatible and counted "
    "separately as unisex_for_gendered; Unisex against Boys/Girls, or Men/Women against a stated "
    "Unisex, is a violation")

ARTICLE_PHRASES = {
    "Tshirts": "a t-shirt", "Shirts": "a shirt", "Casual Shoes": "sneakers",
    "Watches": "a watch", "Sports Shoes": "running shoes", "Kurtas": "a kurta", "Tops": "a top",
    "Handbags": "a handbag", "Heels": "heels", "Sunglasses": "sunglasses",
    "Wallets": "a wallet", "Flip Flops": "flip flops", "Sandals": "sandals",
    "Briefs": "underwear briefs", "Belts": "a belt", "Backpacks": "a backpack",
    "Socks": "socks", "Formal Shoes": "office shoes", "Perfume and Body Mist": "a perfume",
    "Jeans": "jeans", "Shorts": "shorts", "Trousers": "trousers", "Flats": "flat shoes",
    "Bra": "a bra", "Dresses": "a dress", "Sarees": "a saree", "Earrings": "earrings",
    "Deodorant": "a deodorant", "Nail Polish": "nail polish", "Lipstick": "a lipstick",
    "Track Pants": "track pants", "Clutches": "a clutch", "Sweatshirts": "a sweatshirt",
    "Caps": "a cap", "Sweaters": "a sweater", "Ties": "a tie", "Jackets": "a jacket",
    "Innerwear Vests": "a vest", "Kurtis": "a kurti", "Tunics": "a tunic",
    "Nightdress": "a nightie", "Leggings": "leggings", "Pendant": "a pendant",
    "Capris": "capris", "Necklace and Chains": "a necklace", "Lip Gloss": "lip gloss",
    "Night suits": "a night suit", "Trunk": "trunks", "Skirts": "a skirt", "Scarves": "a scarf",
}
GENDER_OPENINGS = {
    "Men": "something for my husband", "Women": "something for my wife",
    "Boys": "something for my son", "Girls": "something for my daughter",
    "Unisex": "something anyone can wear",
}
GENDER_FACTS = {"Men": "for men", "Women": "for women", "Boys": "for a boy",
                "Girls": "for a girl", "Unisex": "unisex"}
USAGE_FACTS = {"Casual": "for casual wear", "Sports": "for sports", "Ethnic": "ethnic wear",
               "Formal": "formal, for work", "Smart Casual": "smart casual",
               "Party": "for a party", "Travel": "for travel", "Home": "to wear at home"}
USAGE_OPENINGS = {"Casual": "something casual", "Sports": "something for the gym",
                  "Ethnic": "something ethnic for a festival", "Formal": "something for the office"}


# ---------------------------------------------------------------- clients


@dataclass
class Response:
    """An HTTP answer: status code and the JSON body (None when the body is not JSON)."""

    status_code: int
    body: Any

    def json(self) -> Any:
        return self.body


class Client(Protocol):
    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> Any: ...
    def get(self, path: str, headers: dict[str, str] | None = None) -> Any: ...


class FlaskClient:
    """Wrap Flask's test client so that ``.json()`` is a method, as with ``requests``."""

    def __init__(self, test_client: Any) -> None:
        self._c = test_client

    @property
    def app(self) -> Any:
        """The Flask app behind the client."""
        return self._c.application

    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> Response:
        r = self._c.post(path, json=json, headers=headers or {})
        return Response(r.status_code, r.get_json(silent=True))

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        r = self._c.get(path, headers=headers or {})
        return Response(r.status_code, r.get_json(silent=True))


class HttpClient:
    """Talk to a live server at ``base_url`` with urllib; HTTP errors become Responses."""

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _send(self, method: str, path: str, body: Any, headers: dict[str, str] | None) -> Response:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Response(status, parsed)

    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> Response:
        return self._send("POST", path, json, headers)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return self._send("GET", path, None, headers)


def in_process_client(data_dir: str, **config: Any) -> tuple[FlaskClient, str]:
    """Build the app in this process on ``data_dir`` (importing the bundled catalogs on first
    use, which takes minutes) and return a client for it and the server key it uses. Shoppers'
    words are encoded as the server does (``EMBEDDER`` in ``config``, else $SHOPPER_EMBEDDER,
    else the int8 ONNX model when onnxruntime is installed)."""
    from web import create_app

    app = create_app({"DATA_DIR": data_dir, "TESTING": True, "IMPORT_BUNDLED": True, **config})
    return FlaskClient(app.test_client()), str(app.extensions["shopper"].api_key)


def _call(send: Any, *args: Any, retries: int = 5, **kwargs: Any) -> Any:
    """Call ``send``, waiting out 429 answers (the anonymous rate limit) a few times."""
    for attempt in range(retries + 1):
        r = send(*args, **kwargs)
        if r.status_code != 429 or attempt == retries:
            return r
        time.sleep(min(2.0 * (attempt + 1), 30.0))
    return r


# ---------------------------------------------------------------- shoppers


@dataclass
class Shopper:
    """A simulated shopper: the hidden target, the kind, how it opens, and what it has said."""

    index: int
    kind: str
    product_id: str
    title: str
    target: dict[str, str]
    opening_attribute: str
    refused_colour: str | None = None
    stated: dict[str, str] = field(default_factory=dict)

    def phrase(self, attribute: str) -> str:
        """Everyday words for one of the target's attributes, as a fact added to a sentence."""
        v = self.target[attribute]
        if attribute == "article_type":
            return ARTICLE_PHRASES.get(v, v.lower())
        if attribute == "gender":
            return GENDER_FACTS.get(v, f"for {v.lower()}")
        if attribute == "colour":
            return f"in {v.lower()}"
        if attribute == "usage":
            return USAGE_FACTS.get(v, f"for {v.lower()} wear")
        return v.lower()

    def opening(self) -> str:
        """The first words: a vague need from one attribute (plus a refusal for refusers)."""
        a, v = self.opening_attribute, self.target[self.opening_attribute]
        if a == "gender":
            text = GENDER_OPENINGS.get(v, f"something {self.phrase(a)}")
        elif a == "usage":
            text = USAGE_OPENINGS.get(v, f"something {self.phrase(a)}")
        else:
            text = self.phrase(a)
        if self.refused_colour:
            text += f", but not {self.refused_colour.lower()}"
        return text

    def next_fact(self) -> str | None:
        """The first of gender/article type/colour/usage not yet said, or None."""
        return next((a for a in MATCH_ON if a not in self.stated), None)


def load_shoppers(n: int = 300, seed: int = 7, catalog: str = "fashion") -> list[Shopper]:
    """Sample ``n`` targets uniformly from the bundled catalog (read through the project's
    importer, so values are spelled as the API spells them) among products with gender,
    article type, colour and usage (not NA); kinds go round-robin."""
    products = import_products(bundled_mapping(catalog))
    by_type: dict[str, Counter[str]] = {}
    for p in products:
        a = p.attributes
        if "article_type" in a and "colour" in a:
            by_type.setdefault(a["article_type"], Counter())[a["colour"]] += 1
    eligible = [p for p in products
                if all(p.attributes.get(a) for a in MATCH_ON) and p.attributes["usage"] != "NA"]
    rng = random.Random(seed)
    chosen = rng.sample(eligible, min(n, len(eligible)))
    shoppers = []
    for i, p in enumerate(chosen):
        kind = KINDS[i % len(KINDS)]
        attrs = dict(p.attributes)
        refused = None
        if kind == "refuser":
            opening = "article_type"
            others = [(c, k) for c, k in by_type[attrs["article_type"]].most_common()
                      if c != attrs["colour"]]
            refused = others[0][0] if others else None
        else:
            opening = rng.choices(list(OPENING_WEIGHTS), list(OPENING_WEIGHTS.values()))[0]
        shoppers.append(Shopper(i, kind, p.product_id, p.title, attrs, opening, refused))
    return shoppers


def _answer(s: Shopper, question: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The shopper's reply to a question, and the facts that reply states."""
    attr = question.get("attribute") or ""
    value = s.target.get(attr)
    if not value:
        return {"answer": {"attribute": attr, "value": None}}, {}
    offered = {str(o.get("value", "")).casefold(): o.get("value")
               for o in question.get("options") or []}
    tap = offered.get(value.casefold())
    if s.kind == "volunteer":
        extra = next((a for a in MATCH_ON if a not in s.stated and a != attr), None)
        if extra is not None:
            return ({"text": f"{value.lower()}, {s.phrase(extra)}"},
                    {attr: value, extra: s.target[extra]})
        if tap is None:
            return {"text": value.lower()}, {attr: value}
    if tap is not None:
        return {"answer": {"attribute": attr, "value": tap}}, {attr: value}
    if s.kind == "volunteer":
        return {"text": value.lower()}, {attr: value}
    return {"text": "not sure, show me more"}, {}


def _judge(s: Shopper, picks: list[dict[str, Any]]) -> tuple[bool, list[str], int]:
    """(success, the violating top picks described, unisex-for-gendered notes) for one answer."""
    success, violations, unisex = False, [], 0
    for pick in picks[:TOP]:
        attrs = pick.get("attributes") or {}
        if all(attrs.get(a) == s.target[a] for a in MATCH_ON):
            success = True
        broken = []
        if s.refused_colour and attrs.get("colour") == s.refused_colour:
            broken.append(f"colour {s.refused_colour} refused")
        for a, v in s.stated.items():
            got = attrs.get(a)
            if not got or got == v:
                continue
            if a == "gender" and got == "Unisex" and v in ("Men", "Women"):
                unisex += 1
            else:
                broken.append(f"{a} {got} but said {v}")
        if broken:
            violations.append(f"{_pick_line(pick)}: {'; '.join(broken)}")
    return success, violations, unisex


def _brief(turn: dict[str, Any] | None) -> dict[str, Any]:
    turn = turn or {}
    q = turn.get("question") or None
    return {
        "message": turn.get("message"),
        "question": q and {"attribute": q.get("attribute"),
                           "options": [o.get("value") for o in q.get("options") or []][:10]},
        "picks": [_pick_line(p) for p in (turn.get("picks") or [])[:TOP]],
    }


def _pick_line(pick: dict[str, Any]) -> str:
    attrs = pick.get("attributes") or {}
    return f"{pick.get('title')} [{'/'.join(str(attrs.get(a, '-')) for a in MATCH_ON)}]"


def _converse(client: Client, s: Shopper, catalog: str, max_turns: int,
              api_key: str | None) -> dict[str, Any]:
    """Run one shopper's dialogue with the assistant; returns the outcome and transcript."""
    s.stated = {s.opening_attribute: s.target[s.opening_attribute]}
    said: dict[str, Any] = {"text": s.opening()}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    r = _call(client.post, "/api/v1/conversations",
              json={"channel": "web", "catalog": catalog, **said}, headers=headers)
    log: list[dict[str, Any]] = []
    out: dict[str, Any] = {"success_turn": None, "violations": 0, "violation_notes": [],
                           "unisex_for_gendered": 0, "error": None}
    body = r.json() if r.status_code == 201 else None
    conv_id = (body or {}).get("conversation_id")
    token = (body or {}).get("token")
    if not conv_id:
        out["error"] = f"create: HTTP {r.status_code} {r.json()}"
    for turn_no in range(1, max_turns + 1):
        if body is None:
            break
        log.append({"turn": turn_no, "shopper": said, **_brief(body)})
        ok, bad, uni = _judge(s, body.get("picks") or [])
        out["violations"] += len(bad)
        out["violation_notes"] += [f"T{turn_no} {b}" for b in bad]
        out["unisex_for_gendered"] += uni
        if ok:
            out["success_turn"] = turn_no
            break
        if turn_no == max_turns:
            break
        question = body.get("question")
        if question:
            said, facts = _answer(s, question)
        elif s.kind == "volunteer" and s.next_fact():
            fact = s.next_fact()
            assert fact is not None
            said, facts = {"text": s.phrase(fact)}, {fact: s.target[fact]}
        else:
            said, facts = {"action": "more"}, {}
        s.stated.update(facts)
        r = _call(client.post, f"/api/v1/conversations/{conv_id}/turns", json=said,
                  headers={"Authorization": f"Bearer {token}"})
        body = r.json() if r.status_code == 200 else None
        if body is None:
            out["error"] = f"turn {turn_no + 1}: HTTP {r.status_code} {r.json()}"
    out["transcript"] = log
    return out


def _search_box(client: Client, s: Shopper, catalog: str, max_turns: int,
                api_key: str | None) -> dict[str, Any]:
    """The same shopper with a plain search box: volunteers add a fact a turn, others page."""
    s.stated = {s.opening_attribute: s.target[s.opening_attribute]}
    query, page = s.opening(), 1
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    out: dict[str, Any] = {"success_turn": None, "violations": 0, "violation_notes": [],
                           "unisex_for_gendered": 0, "error": None}
    log: list[dict[str, Any]] = []
    for turn_no in range(1, max_turns + 1):
        qs = urllib.parse.urlencode({"q": query, "k": TOP * page, "catalog": catalog})
        r = _call(client.get, f"/api/v1/search?{qs}", headers=headers)
        if r.status_code != 200:
            out["error"] = f"search: HTTP {r.status_code} {r.json()}"
            break
        picks = (r.json().get("picks") or [])[TOP * (page - 1):]
        log.append({"turn": turn_no, "shopper": {"q": query, "page": page},
                    **_brief({"picks": picks})})
        ok, bad, uni = _judge(s, picks)
        out["violations"] += len(bad)
        out["violation_notes"] += [f"T{turn_no} {b}" for b in bad]
        out["unisex_for_gendered"] += uni
        if ok:
            out["success_turn"] = turn_no
            break
        fact = s.next_fact() if s.kind == "volunteer" else None
        if fact:
            query += " " + s.phrase(fact)
            s.stated[fact] = s.target[fact]
            page = 1
        else:
            page += 1
    out["transcript"] = log
    return out


def _summarise(outcomes: list[dict[str, Any]], max_turns: int) -> dict[str, Any]:
    n = len(outcomes)
    wins = [o["success_turn"] for o in outcomes if o["success_turn"]]
    return {
        "n": n,
        "successes": len(wins),
        "success_at_5": round(len(wins) / n, 4) if n else 0.0,
        "avg_turns_to_success": round(sum(wins) / len(wins), 3) if wins else None,
        "avg_turns_overall": (round((sum(wins) + max_turns * (n - len(wins))) / n, 3)
                              if n else None),
        "violations": sum(o["violations"] for o in outcomes),
        "dialogues_with_violation": sum(1 for o in outcomes if o["violations"]),
        "unisex_for_gendered": sum(o["unisex_for_gendered"] for o in outcomes),
        "errors": sum(1 for o in outcomes if o["error"]),
        "success_turns": {str(t): wins.count(t) for t in sorted(set(wins))},
    }


def run_evaluation(client: Client, n_shoppers: int = 300, seed: int = 7,
                   catalog: str = "fashion", max_turns: int = 6, *,
                   api_key: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Run every simulated shopper against the assistant and against the search box.

    Returns ``{"config", "assistant", "search_box", "failures", "violation_notes"}``: the two
    systems hold, per kind and ``overall``, n, successes, success_at_5, avg_turns_to_success
    (over successes), avg_turns_overall (failures count as ``max_turns``), violations (violating
    top-5 picks),
    dialogues_with_violation, unisex_for_gendered, errors and success_turns (a histogram);
    ``failures`` holds the assistant's failed dialogues with transcripts and
    ``violation_notes`` every violating pick of either system. ``api_key`` (the server key) is
    sent when creating conversations and searching, which avoids the anonymous rate limit.
    """
    shoppers = load_shoppers(n_shoppers, seed, catalog)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {"assistant": {}, "search_box": {}}
    failures, violations = [], []
    for i, s in enumerate(shoppers):
        if progress and i % 10 == 0:
            print(f"  shopper {i + 1}/{len(shoppers)}", flush=True)
        a = _converse(client, s, catalog, max_turns, api_key)
        b = _search_box(client, s, catalog, max_turns, api_key)
        results["assistant"].setdefault(s.kind, []).append(a)
        results["search_box"].setdefault(s.kind, []).append(b)
        for system, o in (("assistant", a), ("search_box", b)):
            violations += [{"shopper": s.index, "kind": s.kind, "system": system, "note": v}
                           for v in o["violation_notes"]]
        if not a["success_turn"]:
            failures.append({"shopper": s.index, "kind": s.kind, "product_id": s.product_id,
                             "title": s.title, "target": {k: s.target[k] for k in MATCH_ON},
                             "refused_colour": s.refused_colour, "error": a["error"],
                             "search_box_success_turn": b["success_turn"],
                             "transcript": a["transcript"]})
    out: dict[str, Any] = {
        "config": {"n_shoppers": len(shoppers), "seed": seed, "catalog": catalog,
                   "max_turns": max_turns, "top": TOP, "match_on": list(MATCH_ON),
                   "opening_weights": OPENING_WEIGHTS, "violation_rule": VIOLATION_RULE},
        "failures": failures,
        "violation_notes": violations,
    }
    for system, by_kind in results.items():
        out[system] = {k: _summarise(by_kind.get(k, []), max_turns) for k in KINDS}
        out[system]["overall"] = _summarise([o for k in KINDS for o in by_kind.get(k, [])],
                                            max_turns)
    return out


# ---------------------------------------------------------------- report

_METRICS = ("n", "success_at_5", "avg_turns_to_success", "avg_turns_overall", "violations",
            "dialogues_with_violation", "unisex_for_gendered", "errors")


def _said(x: dict[str, Any]) -> str:
    if "text" in x:
        return repr(x["text"])
    if "answer" in x:
        return f"tap {x['answer']['attribute']}={x['answer']['value']}"
    if "action" in x:
        return f"action {x['action']}"
    return f"search {x.get('q')!r} page {x.get('page')}"


def format_report(result: dict[str, Any], show_failures: int = 0) -> str:
    """A readable table (kind x metric, assistant | search box), a few failed dialogues and a
    final line holding every figure as JSON."""
    cols = [*KINDS, "overall"]
    lines = [f"{'metric':<26}" + "".join(f"{k:>22}" for k in cols),
             f"{'':<26}" + "".join(f"{'assistant | search':>22}" for _ in cols)]
    for m in _METRICS:
        cells = []
        for k in cols:
            a, b = result["assistant"][k][m], result["search_box"][k][m]
            cells.append(f"{'-' if a is None else a!s:>10} | {'-' if b is None else b!s:<9}")
        lines.append(f"{m:<26}" + "".join(f"{c:>22}" for c in cells))
    lines.append(f"violation rule: {result['config']['violation_rule']}")
    for f in result["failures"][:show_failures]:
        t = f["target"]
        lines.append("")
        lines.append(f"#{f['shopper']} {f['kind']} target {f['product_id']} {f['title']!r} "
                     f"[{'/'.join(t[a] for a in MATCH_ON)}]"
                     + (f" refuses {f['refused_colour']}" if f["refused_colour"] else "")
                     + f"; search box success turn: {f['search_box_success_turn']}")
        if f["error"]:
            lines.append(f"  error: {f['error']}")
        for step in f["transcript"]:
            lines.append(f"  T{step['turn']} shopper: {_said(step['shopper'])}")
            q = step["question"]
            lines.append(f"     assistant: {step['message']!r}"
                         + (f" asks {q['attribute']} {q['options']}" if q else " (no question)"))
            for title in step["picks"]:
                lines.append(f"       - {title}")
    if show_failures and result["violation_notes"]:
        lines.append("")
        lines.append("violations:")
        lines += [f"  #{v['shopper']} {v['kind']} {v['system']}: {v['note']}"
                  for v in result["violation_notes"][:show_failures * 3]]
    figures = {k: v for k, v in result.items() if k not in ("failures", "violation_notes")}
    lines.append(json.dumps(figures, sort_keys=True))
    return "\n".join(lines)
