"""Bad input on every endpoint, listed from the app's url_map (a new endpoint is attacked as
soon as it exists, and test_every_body_endpoint_has_a_template says what it still needs).

Malformed JSON, wrong types, missing fields, unknown ids, huge bodies, empty and
10,000-character messages, control characters, RTL and emoji text, SQL and HTML injection and
path traversal in ids. A rejection is a 4xx, on /api paths an application/problem+json with
type, title, status and detail (never a 5xx, never an HTML page), and it changes no stored
data (a dump of every table before and after). Text within the limits (MAX_TEXT characters of
a message, no control characters) is accepted, stored and echoed back intact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from assistant.engine import MAX_TEXT
from tests.conftest import SERVER, World, login, routes, rule_url

#: Tables that record a refused attempt on purpose (log-in throttling and its audit).
ATTEMPT_TABLES = {"throttle", "audit"}
ATTEMPT_ACTIONS = {"login.failed", "login.throttled", "handoff.unknown_code"}

#: Path-parameter values no id of ours can be (written as they go on the wire).
PATH_ATTACKS = [
    "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..", "%00", "x%00.json",
    "%27%20OR%20%271%27%3D%271", "1%3B%20DROP%20TABLE%20conversations%3B%20--",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E", "%F0%9F%91%9F%F0%9F%98%80",
    "%D8%A3%D8%B1%D9%8A%D8%AF", "%E2%80%AEevil", "%01%1B%5B31m", "a" * 10_000,
]
#: Ids that are well-formed but name nothing here: parameter -> value (methods that look up).
UNKNOWN_IDS = {"conversation_id": "c_00000000000000000000", "product_id": "no-such-product",
               "name": "great aunt", "token": "bm90LWEtdG9rZW4"}
#: Bodies that are not a JSON object (to every /api route, and every console form).
GARBAGE_BODIES = [
    b"{", b'{"text": ', b"nul", b"{'text': 'x'}", b'{"text": "x",}', b"\xff\xfe\x00\x01",
    b'{"a":' * 5000 + b"1" + b"}" * 5000, b'{"a": NaN}', b'{"a": -Infinity}',
    b'{"text": "\\ud800"}', b"[]", b"[1, 2]", b'"text"', b"42", b"true", b"null",
    b"<html><body>hi</body></html>", b"text=red&action=more",
]
HUGE_BODY = b'{"text": "' + b"a" * (70 * 1024) + b'"}'
#: Values of the wrong JSON type, tried on every field of every body.
WRONG_VALUES: list[Any] = [0, -1, 1e308, True, [], ["x"], {}, {"$ne": None}]
#: Text that is refused wherever free text goes (plus "" and blanks where words are needed).
REJECTED_TEXT = ["x" * 10_000, "x" * (MAX_TEXT + 1), "a\x00b", "\x1b[31mred\x1b[0m",
                 "bell\x07", "nel\u0085", "\x7f"]
#: Text that is accepted, stored and echoed back exactly.
ACCEPTED_TEXT = [
    "أريد حذاء أحمر للجري", "נעלי ריצה אדומות", "👟 running shoes 🏃‍♀️ for my 👨‍👩‍👧",
    "'; DROP TABLE conversations; --", "1' OR '1'='1", "\" OR \"\"=\"",
    "<script>alert(1)</script><img src=x onerror=alert(1)>", "\u202egnp.exe",
    "zero\u200bwidth\u200djoin", "red\tshoes\nplease", "x" * MAX_TEXT,
]
#: Query-string values tried on every query parameter of a GET route.
QUERY_ATTACKS = ["", "%00", "..%2F..%2Fetc%2Fpasswd", "%27%20OR%201%3D1--",
                 "%3Cscript%3Ealert(1)%3C%2Fscript%3E", "a" * 10_000, "9" * 5000, "%C2%B2",
                 "-1", "%01%1B"]
#: The query parameters of each GET route worth attacking.
QUERY_PARAMS = {
    "api.search": ["q", "k", "shopper_id", "catalog", "product_id"],
    "api.get_profile": ["catalog"], "api.get_product": ["catalog"],
    "kiosk.kiosk": ["store_id", "catalog", "idle", "still_there"],
    "widget.demo": ["catalog", "timeout_ms"],
}


@dataclass
class Attack:
    what: str
    method: str
    url: str
    kwargs: dict[str, Any]
    accept: bool = False
    echo: Callable[[Any], None] | None = None


def dump(db: Any) -> dict[str, list[str]]:
    """Every row of every table (but the attempt counters), in a stable order."""
    return {t: sorted(repr(row) for row in db.execute(f'SELECT * FROM "{t}"').fetchall())
            for t in db.table_names() if t not in ATTEMPT_TABLES}


# What each body-reading endpoint is sent when nothing is wrong with it ------------------------
def _templates(w: World) -> dict[str, list[dict[str, Any]]]:
    return {
        "api.create_conversation": [{"channel": "web", "text": "sneakers", "shopper_id": "s-2",
                                     "catalog": "fashion", "store_id": "blr-01",
                                     "product_id": w.product_id}],
        "api.add_turn": [{"text": "red"}, {"answer": {"attribute": "colour", "value": "Red"}},
                         {"action": "more"},
                         {"feedback": {"product_id": w.product_id, "kind": "like"}}],
        "api.put_preference": [{"attribute": "colour", "value": "Navy Blue",
                                "polarity": "want", "catalog": "fashion"}],
        "api.delete_preference": [{"attribute": "colour", "value": "Black"}],
        "api.add_event": [{"type": "view", "product_id": w.product_id, "catalog": "fashion",
                           "at": "2026-01-02T03:04:05+00:00"},
                          {"type": "search", "query": "blue shoes", "recipient": "husband"}],
        "api.put_recipient": [{"attributes": {"colour": "Navy Blue"}, "text": "likes navy",
                               "note": "size L", "catalog": "fashion"}],
        "doors.link": [{"code": "ABCDEF"}],
        "doors.claim_handoff": [{"code": "123456"}],
        "api.put_contact": [{"email": "ana@example.com"}],
    }


#: Known-bad bodies beyond wrong types and missing fields: unknown ids and values.
def _unknowns(w: World) -> dict[str, list[dict[str, Any]]]:
    return {
        "api.create_conversation": [{"catalog": "no-such-catalog"}, {"channel": "fax"},
                                    {"product_id": "no-such-product"},
                                    {"store_id": "../../etc/passwd"},
                                    {"shopper_id": "x" * 200}, {"catalog": "../fashion"}],
        "api.add_turn": [{}, {"text": "a", "action": "more"}, {"action": "dance"},
                         {"answer": {"attribute": "planet", "value": "Mars"}},
                         {"answer": {"attribute": "colour", "value": "Plaid"}},
                         {"answer": {"value": "Red"}},
                         {"feedback": {"product_id": "no-such-product", "kind": "like"}},
                         {"feedback": {"product_id": w.product_id, "kind": "love"}},
                         {"feedback": {"product_id": w.product_id}}, {"unknown": "field"}],
        "api.put_preference": [{"attribute": "planet", "value": "Mars"},
                               {"attribute": "colour", "value": "Plaid"},
                               {"attribute": "colour", "value": "Black", "polarity": "meh"},
                               {"attribute": "colour", "value": "Black",
                                "catalog": "no-such-catalog"},
                               {"attribute": "", "value": ""}],
        "api.delete_preference": [{"attribute": "colour", "value": "Plaid"},
                                  {"attribute": "planet", "value": "Mars"}],
        "api.add_event": [{"type": "teleport", "product_id": w.product_id},
                          {"type": "view", "product_id": "no-such-product"},
                          {"type": "view"}, {"type": "search"}, {"type": "search", "query": " "},
                          {"type": "search", "query": "x" * 501},
                          {"type": "view", "product_id": w.product_id, "at": "yesterday"},
                          {"type": "view", "product_id": w.product_id,
                           "at": "9999-12-31T23:59:59-14:00"},
                          {"type": "view", "product_id": w.product_id,
                           "at": "0001-01-01T00:00:00+14:00"},
                          {"type": "view", "product_id": w.product_id,
                           "at": "2999-01-01T00:00:00Z"},
                          {"type": "view", "product_id": w.product_id, "at": "1969-12-31"},
                          {"type": "search", "query": "x", "recipient": "r" * 65},
                          {"type": "view", "product_id": w.product_id,
                           "catalog": "no-such-catalog"}],
        "api.put_recipient": [{}, {"note": ""}, {"attributes": {"colour": "x" * 101}},
                              {"attributes": {"c" * 65: "navy"}},
                              {"attributes": {f"a{i}": "x" for i in range(31)}},
                              {"attributes": {"colour": ""}}, {"text": "t" * 501},
                              {"note": "n" * 501}, {"note": "x", "catalog": "no-such-catalog"}],
        "doors.link": [{"code": "WRONG1"}, {"code": "!!"}, {"code": "A" * 40}, {}],
        "doors.claim_handoff": [{"code": "000000"}, {"code": "12"}, {}],
    }


def _schema_of(doc: dict[str, Any], rule: str, method: str, base: dict[str, Any]
               ) -> dict[str, Any]:
    """The documented request body schema (the oneOf branch the template matches)."""
    path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)
    schemas = doc["components"]["schemas"]

    def resolve(s: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in s:
            s = schemas[s["$ref"].rsplit("/", 1)[1]]
        return s

    body = resolve(doc["paths"][path][method.lower()]["requestBody"]["content"][
        "application/json"]["schema"])
    for branch in body.get("oneOf", []):
        props = {**body.get("properties", {}), **branch.get("properties", {})}
        if set(branch.get("required", [])) <= set(base) and all(
                _fits(props.get(k, {}), v) for k, v in base.items()):
            return {**branch, "properties": props}
    return body


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def _fits(schema: dict[str, Any], value: Any) -> bool:
    if "anyOf" in schema:
        return any(_fits(branch, value) for branch in schema["anyOf"])
    if "const" in schema:
        return bool(value == schema["const"])
    if "enum" in schema:
        return value in schema["enum"]
    types = schema.get("type")
    if types is None:
        return True
    types = [types] if isinstance(types, str) else types
    return _json_type(value) in ["number" if t == "integer" else t for t in types]


def _free_text(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of free text (documented with its limits), or None."""
    for branch in [schema, *schema.get("anyOf", [])]:
        if branch.get("type") == "string" and "\\u0000" in branch.get("pattern", ""):
            return branch
    return None


# The attacks ---------------------------------------------------------------------------------
def attacks(app: Any, w: World, doc: dict[str, Any]) -> list[Attack]:
    out: list[Attack] = []
    templates, unknowns = _templates(w), _unknowns(w)
    for rule, method in routes(app):
        api = rule.rule.startswith("/api/")
        headers = dict(SERVER) if api else {}
        params = list(rule.arguments)
        good = rule_url(rule, w.paths)
        # Ids: traversal, NUL, injection, emoji, RTL, control characters, 10,000 characters.
        for name in params:
            for value in PATH_ATTACKS:
                out.append(Attack(f"path {name}={value[:20]}", method,
                                  rule_url(rule, w.paths, {name: value}), {"headers": headers}))
            if name in UNKNOWN_IDS and not (name == "name" and method == "PUT"):
                out.append(Attack(f"unknown {name}", method,
                                  rule_url(rule, w.paths, {name: UNKNOWN_IDS[name]}),
                                  {"headers": headers}))
        # Bodies: a huge one everywhere; anything but a JSON object on /api and console forms.
        out.append(Attack("huge body", method, good, {"headers": headers, "data": HUGE_BODY,
                                                      "content_type": "application/json"}))
        if api or (rule.endpoint.startswith("console.") and method == "POST"):
            for body in GARBAGE_BODIES:
                # Logging out without a session does nothing: attack a live one.
                out.append(Attack(f"garbage {body[:16]!r}", method, good,
                                  {"headers": headers, "data": body,
                                   "content_type": "application/json",
                                   "session": rule.endpoint == "console.logout"}))
        # Query strings.
        for name in QUERY_PARAMS.get(rule.endpoint, []):
            for value in QUERY_ATTACKS:
                base = "q=watch&" if rule.endpoint == "api.search" and name != "q" else ""
                page = not api
                out.append(Attack(f"query {name}={value[:20]}", method,
                                  f"{good}?{base}{name}={value}", {"headers": headers},
                                  accept=page or _query_accepted(rule.endpoint, name, value)))
        # Fields: wrong types, missing fields, unknown values, text that is and is not fine.
        for base in templates.get(rule.endpoint, []):
            schema = _schema_of(doc, rule.rule, method, base)
            props = schema.get("properties", {})
            for key in base:
                for wrong in WRONG_VALUES:
                    if not _fits(props.get(key, {}), wrong):
                        out.append(Attack(f"{key}={wrong!r}"[:40], method, good,
                                          {"headers": headers, "json": {**base, key: wrong}}))
                if key in schema.get("required", []):
                    out.append(Attack(f"{key} missing", method, good, {
                        "headers": headers,
                        "json": {k: v for k, v in base.items() if k != key}}))
                    out.append(Attack(f"{key}=null", method, good,
                                      {"headers": headers, "json": {**base, key: None}}))
                text_schema = _free_text(props.get(key, {}))
                if text_schema is not None:
                    words = text_schema.get("minLength", 0) > 0
                    for text in REJECTED_TEXT + (["", "   ", "\n\t"] if words else []):
                        out.append(Attack(f"{key}={text[:12]!r}", method, good,
                                          {"headers": headers, "json": {**base, key: text}}))
                    for text in ACCEPTED_TEXT:
                        if len(text) > text_schema.get("maxLength", MAX_TEXT):
                            continue
                        out.append(Attack(f"{key}={text[:12]!r} (fine)", method, good,
                                          {"headers": headers, "json": {**base, key: text}},
                                          accept=True,
                                          echo=_echo(rule.endpoint, key, text, w)))
        for body in unknowns.get(rule.endpoint, []):
            out.append(Attack(f"unknown {json.dumps(body)[:40]}", method, good,
                              {"headers": headers, "json": body}))
    # The console's forms, with a real form token where one is needed.
    out.extend(_console_attacks())
    return out


def _query_accepted(endpoint: str, name: str, value: str) -> bool:
    """Query values a read-only API route takes: an empty catalog or product_id is "not
    given", and a search for odd words (of at most 500 characters, no control characters) is
    still a search. Every other attack is a 4xx."""
    if name in ("catalog", "product_id") and value == "":
        return True
    return endpoint == "api.search" and name == "q" and value in (
        "..%2F..%2Fetc%2Fpasswd", "%27%20OR%201%3D1--", "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "%C2%B2", "-1")


def _echo(endpoint: str, key: str, text: str, w: World) -> Callable[[Any], None] | None:
    """A check that accepted text comes back exactly as sent."""
    def turns(client: Any, r: Any) -> None:
        cid = r.get_json().get("conversation_id", w.conversation_id)
        got = client.get(f"/api/v1/conversations/{cid}", headers=SERVER).get_json()
        assert got["turns"][-1 if endpoint == "api.add_turn" else 0]["request"]["text"] == text

    def note(client: Any, r: Any) -> None:
        assert r.get_json()["note"] == text

    def query(client: Any, r: Any) -> None:
        events = client.get("/api/v1/shoppers/s-1/events", headers=SERVER).get_json()
        assert events["events"][0]["query"] == text

    if not text.strip():
        return None
    return {("api.create_conversation", "text"): turns, ("api.add_turn", "text"): turns,
            ("api.put_recipient", "note"): note, ("api.add_event", "query"): query,
            }.get((endpoint, key))  # type: ignore[return-value]


def _console_attacks() -> list[Attack]:
    out = []
    form = {"csrf_token": "{token}", "name": "alice", "password": "wrong password"}
    for label, data in [
            ("no form token", {"name": "alice", "password": "x"}),
            ("forged form token", {**form, "csrf_token": "forged"}),
            ("no name", {**form, "name": ""}), ("no password", {**form, "password": ""}),
            ("sql name", {**form, "name": "' OR '1'='1' --"}),
            ("sql password", {**form, "password": "' OR '1'='1' --"}),
            ("html name", {**form, "name": "<script>alert(1)</script>"}),
            ("long name", {**form, "name": "a" * 10_000}),
            ("nul name", {**form, "name": "alice\x00"}),
            ("emoji name", {**form, "name": "👟‍"}), ("rtl name", {**form, "name": "أليس"})]:
        out.append(Attack(f"login {label}", "POST", "/console/login", {"data": data}))
    for label, data in [("no form token", {}), ("forged form token", {"csrf_token": "forged"}),
                        ("login token", {"csrf_token": "{token}"})]:
        out.append(Attack(f"logout {label}", "POST", "/console/logout", {"data": data,
                                                                          "session": True}))
    return out


# The test -----------------------------------------------------------------------------------
def _check(client: Any, attack: Attack, w: World, failures: list[str]) -> None:
    kwargs = dict(attack.kwargs)
    label = f"{attack.method} {attack.url[:90]} [{attack.what}]"
    session = kwargs.pop("session", False)
    if "data" in kwargs and isinstance(kwargs["data"], dict):
        page = client.get("/console/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        kwargs["data"] = {k: (token.group(1) if v == "{token}" and token else v)
                          for k, v in kwargs["data"].items()}
    if session:
        login(client, "bob")
    before = dump(w.db())
    audit_before = w.db().execute("SELECT max(id) FROM audit").fetchone()[0] or 0
    r = client.open(attack.url, method=attack.method, **kwargs)
    api = attack.url.startswith("/api/")
    if r.status_code >= 500:
        failures.append(f"{label}: {r.status_code} {r.data[:200]!r}")
        return
    if api and r.mimetype not in ("application/json", "application/problem+json"):
        failures.append(f"{label}: {r.mimetype} on an API path")
        return
    if attack.accept:
        if r.status_code >= 400:
            failures.append(f"{label}: refused ({r.status_code}) but it is fine: {r.text[:200]}")
        elif attack.echo is not None:
            try:
                attack.echo(client, r)
            except AssertionError as exc:
                failures.append(f"{label}: not echoed intact: {exc}")
        return
    if not 400 <= r.status_code < 500:
        failures.append(f"{label}: accepted ({r.status_code}) {r.data[:200]!r}")
        return
    if api:
        body = r.get_json(silent=True) or {}
        if r.mimetype != "application/problem+json" or not (
                {"type", "title", "status", "detail"} <= set(body)
                and body["status"] == r.status_code):
            failures.append(f"{label}: not a problem+json: {r.mimetype} {r.data[:200]!r}")
    if dump(w.db()) != before:
        failures.append(f"{label}: refused but stored data changed")
    actions = {row[0] for row in w.db().execute("SELECT action FROM audit WHERE id > ?",
                                                 [audit_before])}
    if actions - ATTEMPT_ACTIONS:
        failures.append(f"{label}: refused but audited {actions - ATTEMPT_ACTIONS}")


def test_every_endpoint_refuses_bad_input(app: Any, client: Any, world: World,
                                          artifacts: Path) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    tried = attacks(app, world, doc)
    failures: list[str] = []
    for attack in tried:
        _check(app.test_client(), attack, world, failures)
    tables = {t for t in world.db().table_names()}
    assert {"conversations", "turns", "preferences", "events", "recipients"} <= tables
    refused = sum(not a.accept for a in tried)
    summary = (f"bad inputs tried: {len(tried)} ({refused} refused as they must be, "
               f"{len(tried) - refused} fine and accepted) on {len(routes(app))} routes")
    print(summary)
    (artifacts / "bad_inputs.txt").write_text(summary + "\n")
    assert not failures, f"{len(failures)} of {len(tried)}:\n" + "\n".join(failures[:80])
    assert len(tried) >= 1000


def test_every_body_endpoint_has_a_template(app: Any, client: Any, world: World) -> None:
    """Each route that reads a body (as the OpenAPI document says) has a valid template here
    and every path parameter a good value, so the attacks reach its validation."""
    doc = client.get("/api/v1/openapi.json").get_json()
    templates = _templates(world)
    for rule, method in routes(app):
        assert set(rule.arguments) <= set(world.paths), (rule.rule, rule.arguments)
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        op = doc["paths"][path][method.lower()]
        assert ("requestBody" in op) == (rule.endpoint in templates), (rule.endpoint, method)


def test_text_is_rendered_as_text_in_pages(client: Any) -> None:
    """Pages never turn shopper or catalog text into markup: the scripts use textContent,
    and what a page takes from its query string is checked, not reflected."""
    static = Path(__file__).parent.parent / "web" / "static"
    for js in static.glob("*.js"):
        code = re.sub(r"/\*.*?\*/|//[^\n]*", "", js.read_text(), flags=re.S)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "eval(", "new Function"):
            assert sink not in code, (js.name, sink)
    attack = "<script>alert(1)</script>"
    for url in (f"/kiosk?store_id={quote(attack)}&catalog={quote(attack)}",
                f"/demo?catalog={quote(attack)}&timeout_ms={quote(attack)}"):
        r = client.get(url)
        assert r.status_code == 200 and attack not in r.text and "alert(1)" not in r.text
