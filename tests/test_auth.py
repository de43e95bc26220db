"""The "Who may do what" table of ../shared/API.md, row by row, on every route of the app's
url_map: the server key, a conversation token, an anonymous visitor and a support agent; then
what keeps those credentials safe (password hashing, log-in throttling, session expiry, CSRF,
secrets kept out of the repo and out of the logs).

Without the right credentials a request gets 401; with credentials for something else, 403.
"""

from __future__ import annotations

import logging
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from assistant.agents import AgentStore
from tests.conftest import (
    AGENT_PASSWORD,
    API_KEY,
    SERVER,
    World,
    form_token,
    login,
    routes,
    rule_url,
)
from web import Services, _api_key, create_app

#: Routes about one shopper's data (path or query names them).
SHOPPER_ROUTES = "/api/v1/shoppers/"
#: The bodies that get each state-changing API route past validation.
BODIES: dict[str, Any] = {
    "api.create_conversation": {"channel": "phone"},
    "api.add_turn": {"text": "red"},
    "api.put_preference": {"attribute": "colour", "value": "Navy Blue", "said": "navy, please"},
    "api.delete_preference": {"attribute": "colour", "value": "Black"},
    "api.add_event": {"type": "search", "query": "blue shoes"},
    "api.put_recipient": {"note": "size L"},
    "doors.link": {"code": "WRONG1"},
    "doors.claim_handoff": {"code": "000000"},
}


def _api_routes(app: Any) -> list[tuple[Any, str]]:
    return [(r, m) for r, m in routes(app) if r.rule.startswith("/api/")]


def _call(client: Any, rule: Any, method: str, world: World,
          headers: dict[str, str] | None = None, **values: str) -> Any:
    url = rule_url(rule, {**world.paths, **values})
    return client.open(url, method=method, headers=headers or {},
                       json=BODIES.get(rule.endpoint))


def _is_problem(r: Any, status: int) -> bool:
    body = r.get_json(silent=True) or {}
    return (r.status_code == status and r.mimetype == "application/problem+json"
            and body.get("status") == status and body.get("detail"))


# The shop's backend: the server key ---------------------------------------------------------
def test_the_server_key_may_do_everything(app: Any, world: World) -> None:
    """Every API route, for any shopper and any conversation, with the server key."""
    for rule, method in _api_routes(app):
        r = _call(app.test_client(), rule, method, world, SERVER)
        assert r.status_code not in (401, 403), (method, rule.rule, r.get_json())


# A widget or kiosk page: the conversation token ----------------------------------------------
def test_a_token_opens_only_its_conversation(app: Any, client: Any, world: World,
                                             chat: Any) -> None:
    own = {"Authorization": f"Bearer {world.token}"}
    other = chat("a watch")
    for rule, method in _api_routes(app):
        if rule.endpoint == "api.create_conversation":
            continue
        path_has_conversation = "conversation_id" in rule.arguments
        r = _call(app.test_client(), rule, method, world, other.headers)
        if path_has_conversation:
            # Another conversation's token: credentials for something else.
            assert _is_problem(r, 403), (method, rule.rule, r.status_code)
            r = _call(app.test_client(), rule, method, world)
            assert _is_problem(r, 401) and r.headers["WWW-Authenticate"] == "Bearer", \
                (method, rule.rule, r.status_code)
            r = _call(app.test_client(), rule, method, world, own)
            assert r.status_code not in (401, 403), (method, rule.rule, r.get_json())
        elif rule.rule.startswith(SHOPPER_ROUTES) or rule.endpoint == "doors.claim_handoff":
            # Shopper data and hand-offs are not a conversation's to open.
            assert _is_problem(r, 403), (method, rule.rule, r.status_code)
    # Nor may a token name a shopper: not in a new conversation, not in a search.
    r = client.post("/api/v1/conversations", json={"shopper_id": "s-1"}, headers=own)
    assert _is_problem(r, 403)
    r = client.get("/api/v1/search?q=watch&shopper_id=s-1", headers=own)
    assert _is_problem(r, 403)


# An anonymous visitor ---------------------------------------------------------------------
def test_anonymous_visitors_get_401_for_anything_private(app: Any, world: World) -> None:
    for rule, method in _api_routes(app):
        if rule.endpoint in ("api.create_conversation", "api.search", "api.get_product",
                             "api.healthz", "api.openapi"):
            continue
        r = _call(app.test_client(), rule, method, world)
        assert _is_problem(r, 401), (method, rule.rule, r.status_code)
    client = app.test_client()
    assert _is_problem(client.get("/api/v1/search?q=watch&shopper_id=s-1"), 401)
    assert client.get("/api/v1/search?q=watch").status_code == 200
    assert client.get(f"/api/v1/products/{world.product_id}").status_code == 200


def test_anonymous_conversations_are_rate_limited_per_client(services: Services) -> None:
    app = create_app({"TESTING": True, "DATA_DIR": str(services.data_dir), "API_KEY": API_KEY,
                      "ANON_RATE_PER_MINUTE": 3}, services=services)
    one = app.test_client()
    one.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    for _ in range(3):
        assert one.post("/api/v1/conversations", json={}).status_code == 201
    r = one.post("/api/v1/conversations", json={})
    assert _is_problem(r, 429) and int(r.headers["Retry-After"]) > 0
    # With a shopper_id it is not anonymous: the server key, never nothing.
    r = one.post("/api/v1/conversations", json={"shopper_id": "s-1"})
    assert _is_problem(r, 401)
    # Another client is not held back, nor is the shop's backend.
    two = app.test_client()
    two.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    assert two.post("/api/v1/conversations", json={}).status_code == 201
    assert one.post("/api/v1/conversations", json={}, headers=SERVER).status_code == 201
    # The limiter belongs to the app: a new app (another worker, another test) starts afresh.
    other = create_app({"TESTING": True, "DATA_DIR": str(services.data_dir),
                        "API_KEY": API_KEY, "ANON_RATE_PER_MINUTE": 3}, services=services)
    three = other.test_client()
    three.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    assert three.post("/api/v1/conversations", json={}).status_code == 201


# A support agent --------------------------------------------------------------------------
AGENT_MAY = {"api.get_profile", "api.put_preference", "api.delete_preference",
             "doors.list_events", "api.create_conversation", "api.add_turn",
             "api.get_conversation", "doors.claim_handoff", "api.search", "api.get_product",
             "api.healthz", "api.openapi", "api.find_shopper"}


def test_an_agent_sees_only_the_shoppers_it_looks_up(app: Any, world: World,
                                                     agents: AgentStore) -> None:
    agent = app.test_client()
    csrf = login(agent, "alice")
    hdr = {"X-CSRF-Token": csrf}
    # Before the look-up: nothing about the shopper but the look-up itself.
    for method, url, body in [
            ("GET", "/api/v1/shoppers/s-1/events", None),
            ("PUT", "/api/v1/shoppers/s-1/preferences", BODIES["api.put_preference"]),
            ("DELETE", "/api/v1/shoppers/s-1/preferences", BODIES["api.delete_preference"]),
            ("POST", "/api/v1/conversations", {"channel": "phone", "shopper_id": "s-1"}),
            ("GET", "/api/v1/search?q=watch&shopper_id=s-1", None)]:
        r = agent.open(url, method=method, json=body, headers=hdr)
        assert _is_problem(r, 403), (method, url, r.get_json())
    assert agents.audit_log(agent="alice", shopper_id="s-1") == []
    assert agent.get("/api/v1/shoppers/s-1/profile").status_code == 200  # the look-up
    assert ("alice", "profile.view") in [(e["agent"], e["action"])
                                         for e in agents.audit_log(shopper_id="s-1")]
    assert agent.get("/api/v1/shoppers/s-1/events").status_code == 200
    assert agent.put("/api/v1/shoppers/s-1/preferences", json=BODIES["api.put_preference"],
                     headers=hdr).status_code == 200
    assert agent.get("/api/v1/search?q=watch&shopper_id=s-1").status_code == 200
    r = agent.post("/api/v1/conversations", json={"channel": "phone", "shopper_id": "s-1"},
                   headers=hdr)
    assert r.status_code == 201
    # Another agent has not looked them up; a new session of alice's starts over.
    bob = app.test_client()
    login(bob, "bob")
    assert _is_problem(bob.get("/api/v1/shoppers/s-1/events"), 403)
    again = app.test_client()
    login(again, "alice")
    assert _is_problem(again.get("/api/v1/shoppers/s-1/events"), 403)


def test_an_agent_may_only_what_the_console_needs(app: Any, world: World,
                                                  agents: AgentStore) -> None:
    """Every other API route is 403 for an agent, even for a shopper it looked up."""
    agent = app.test_client()
    csrf = login(agent, "carol")  # an admin, at that
    assert agent.get("/api/v1/shoppers/s-1/profile").status_code == 200
    for rule, method in _api_routes(app):
        if rule.endpoint in AGENT_MAY:
            continue
        r = _call(agent, rule, method, world, {"X-CSRF-Token": csrf})
        assert _is_problem(r, 403), (method, rule.rule, r.status_code)
    # Agents open phone conversations, not the shop's web or kiosk ones.
    r = agent.post("/api/v1/conversations", json={"channel": "web"},
                   headers={"X-CSRF-Token": csrf})
    assert _is_problem(r, 403)


def test_an_agent_opens_its_own_and_unclaimed_phone_conversations(
        app: Any, world: World, agents: AgentStore) -> None:
    alice, bob = app.test_client(), app.test_client()
    csrf = login(alice, "alice")
    login(bob, "bob")
    cid = alice.post("/api/v1/conversations", json={"channel": "phone"},
                     headers={"X-CSRF-Token": csrf}).get_json()["conversation_id"]
    unclaimed = app.test_client().post("/api/v1/conversations", headers=SERVER,
                                       json={"channel": "phone"}).get_json()["conversation_id"]
    assert alice.get(f"/api/v1/conversations/{cid}").status_code == 200
    assert _is_problem(bob.get(f"/api/v1/conversations/{cid}"), 403)
    assert bob.get(f"/api/v1/conversations/{unclaimed}").status_code == 200
    # The shopper's kiosk conversation is theirs until an agent takes it by its code.
    assert _is_problem(bob.get(f"/api/v1/conversations/{world.conversation_id}"), 403)


# Passwords, log-ins, sessions, CSRF -------------------------------------------------------
def test_agent_passwords_are_hashed_with_scrypt(agents: AgentStore, services: Services) -> None:
    rows = {r["name"]: r["password_hash"] for r in agents.db["agents"].rows}
    for name, stored in rows.items():
        kind, n, r, p, salt, digest = stored.split("$")
        assert (kind, int(n), int(r), int(p)) == ("scrypt", 2**14, 8, 1), name
        assert len(salt) >= 22 and len(digest) >= 43
    assert len(set(rows.values())) == len(rows)  # one salt each, though the password is one
    dump = "\n".join(repr(row) for t in services.db().table_names()
                     for row in services.db().execute(f'SELECT * FROM "{t}"'))
    assert AGENT_PASSWORD not in dump


def test_log_ins_are_throttled_per_name_and_per_address(app: Any, agents: AgentStore) -> None:
    client = app.test_client()
    for i in range(20):  # five names, four wrong passwords each: the address's limit
        page = client.get("/console/login")
        r = client.post("/console/login", data={"csrf_token": form_token(page.text),
                                                "name": f"guess{i % 5}", "password": "nope"})
        assert r.status_code == 401
    page = client.get("/console/login")
    r = client.post("/console/login", data={"csrf_token": form_token(page.text),
                                            "name": "bob", "password": AGENT_PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 60
    assert client.get_cookie("shopper_console") is None


def test_sessions_end_when_idle_and_at_their_absolute_end(app: Any,
                                                          agents: AgentStore) -> None:
    client = app.test_client()
    login(client)
    agents.db.execute("UPDATE agent_sessions SET expires_at = '2000-01-01T00:00:00+00:00'")
    assert _is_problem(client.get("/api/v1/shoppers/s-1/profile"), 401)  # idle too long
    login(client)
    agents.db.execute("UPDATE agent_sessions SET absolute_expires_at = "
                      "'2000-01-01T00:00:00+00:00'")
    assert _is_problem(client.get("/api/v1/shoppers/s-1/profile"), 401)  # 12 hours are up
    assert client.get("/console").status_code == 303
    # Sessions are in the config: a short idle time ends them without touching the database.
    short = create_app({"TESTING": True, "DATA_DIR": str(app.config["DATA_DIR"]),
                        "API_KEY": API_KEY, "CONSOLE_IDLE_MINUTES": -1},
                       services=app.extensions["shopper"])
    brief = short.test_client()
    page = brief.get("/console/login")
    brief.post("/console/login", data={"csrf_token": form_token(page.text), "name": "bob",
                                       "password": AGENT_PASSWORD})
    assert brief.get("/console").status_code == 303


def test_a_session_in_use_stays_signed_in(app: Any, agents: AgentStore) -> None:
    """The idle expiry slides with use: an agent who signed in 29 minutes ago (of 30) and
    looks a shopper up now has another 30 minutes. Within the same minute nothing is
    written again."""
    from datetime import UTC, datetime, timedelta

    client = app.test_client()
    login(client)
    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat(timespec="seconds")
    agents.db.execute("UPDATE agent_sessions SET expires_at = ?", [soon])
    assert client.get("/api/v1/shoppers/s-1/profile").status_code == 200
    (slid,) = agents.db.execute("SELECT expires_at FROM agent_sessions").fetchone()
    assert slid >= (datetime.now(UTC) + timedelta(minutes=29)).isoformat(timespec="seconds")
    assert client.get("/api/v1/shoppers/s-1/profile").status_code == 200
    assert agents.db.execute("SELECT expires_at FROM agent_sessions").fetchone()[0] == slid


def test_every_console_form_needs_its_csrf_token(app: Any, agents: AgentStore) -> None:
    """Every POST route of the console (from the url_map) refuses a missing or wrong token."""
    posts = [r for r, m in routes(app) if r.endpoint.startswith("console.") and m == "POST"]
    assert {r.rule for r in posts} >= {"/console/login", "/console/logout"}
    for rule in posts:
        for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
            client = app.test_client()
            login(client, "bob")
            client.get("/console/login")
            r = client.post(rule.rule, data={**data, "name": "bob",
                                             "password": AGENT_PASSWORD})
            assert r.status_code == 400, (rule.rule, data, r.status_code)
            assert client.get("/console").status_code == 200  # still logged in, no new one


def test_every_state_changing_api_request_needs_the_csrf_header(
        app: Any, world: World, agents: AgentStore) -> None:
    """With the session cookie, a wrong X-CSRF-Token is refused (403) and changes nothing;
    without one the cookie gives no rights at all (as if it were not sent)."""
    agent = app.test_client()
    login(agent, "carol")
    assert agent.get("/api/v1/shoppers/s-1/profile").status_code == 200
    changing = [(r, m) for r, m in _api_routes(app) if m in ("POST", "PUT", "DELETE")]
    assert len(changing) >= 10
    for rule, method in changing:
        r = _call(agent, rule, method, world, {"X-CSRF-Token": "forged"})
        assert _is_problem(r, 403), (method, rule.rule, r.status_code)
        without = _call(agent, rule, method, world)
        anonymous = _call(app.test_client(), rule, method, world)
        assert without.status_code == anonymous.status_code, (method, rule.rule)
    cookie = agent.get_cookie("shopper_console")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    secure = app.test_client()
    page = secure.get("/console/login", base_url="https://shop.example")
    secure.post("/console/login", base_url="https://shop.example",
                data={"csrf_token": form_token(page.text), "name": "bob",
                      "password": AGENT_PASSWORD})
    cookie = secure.get_cookie("shopper_console", domain="shop.example")
    assert cookie is not None and cookie.secure


# Secrets ------------------------------------------------------------------------------------
def test_the_server_key_comes_from_the_environment_or_the_data_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, services: Services,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SHOPPER_API_KEY", "from-the-environment")
    app = create_app(None, services=services)
    assert app.config["API_KEY"] == "from-the-environment"
    assert _api_key(tmp_path, "configured") == "configured"
    assert not (tmp_path / "api_key").exists()
    with caplog.at_level(logging.DEBUG):
        key = _api_key(tmp_path, None)
    path = tmp_path / "api_key"
    assert path.read_text().strip() == key and len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in caplog.text and key not in caplog.text  # where, never what
    assert _api_key(tmp_path, None) == key  # kept across restarts
    # The default data dir (./var) is never committed, and no key file lies in the code.
    root = Path(__file__).parent.parent
    assert "var/" in (root / ".gitignore").read_text().split()
    for folder in ("assistant", "catalog", "web", "tests", "scripts", "docs"):
        assert not [p for p in (root / folder).rglob("*")
                    if p.name in ("api_key", "secret_key")], folder


def test_secrets_never_reach_the_logs(app: Any, world: World, agents: AgentStore,
                                      caplog: pytest.LogCaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The server key, tokens, session ids and passwords appear in no log line, whatever
    happens: good and bad requests, refused log-ins, an unexpected error."""
    secrets = [API_KEY, world.token, AGENT_PASSWORD, "wrong-password-123"]
    with caplog.at_level(logging.DEBUG):
        client = app.test_client()
        for rule, method in _api_routes(app):
            _call(client, rule, method, world, SERVER)
            _call(client, rule, method, world, {"Authorization": f"Bearer {world.token}"})
        client.get("/api/v1/shoppers/s-1/profile",
                   headers={"Authorization": f"Bearer {API_KEY}x"})
        page = client.get("/console/login")
        client.post("/console/login", data={"csrf_token": form_token(page.text),
                                            "name": "alice", "password": "wrong-password-123"})
        login(client, "alice")
        secrets.append(client.get_cookie("shopper_console").value)
        secrets.append(re.search(r'data-csrf="([^"]+)"', client.get("/console").text)[1])
        client.get("/api/v1/shoppers/s-1/profile")

        def boom(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("an unexpected failure")

        monkeypatch.setattr(world.services.assistant, "search", boom)
        r = app.test_client().get("/api/v1/search?q=watch&shopper_id=s-1", headers=SERVER)
        assert _is_problem(r, 500)
    assert caplog.records, "nothing was logged at all: the capture is not working"
    logged = caplog.text + "\n".join(str(rec.args) for rec in caplog.records)
    for secret in secrets:
        assert secret not in logged
