"""The doors' server side through the Flask test client: agent log-in, sessions, CSRF, audit,
agents' isolation, hand-off codes, kiosk link codes, store stock and take-away links."""

from __future__ import annotations

import re
from typing import Any

import pytest

from assistant.agents import AgentStore, verify_password
from tests.conftest import AGENT_PASSWORD as PASSWORD
from tests.conftest import form_token as _form_token
from tests.conftest import login
from web import Services
from web.cli import main as cli_main


def test_passwords_are_salted_scrypt(agents: AgentStore) -> None:
    rows = {r["name"]: r["password_hash"] for r in agents.db["agents"].rows}
    assert rows["alice"].startswith("scrypt$") and PASSWORD not in rows["alice"]
    assert rows["alice"] != rows["bob"]  # same password, different salt
    assert verify_password(PASSWORD, rows["alice"]) and not verify_password("nope", rows["alice"])


def test_login_logout_csrf_and_audit(client: Any, agents: AgentStore,
                                     server_headers: dict[str, str]) -> None:
    assert client.get("/console").status_code == 303
    page = client.get("/console/login")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    r = client.post("/console/login", data={"name": "alice", "password": PASSWORD})
    assert r.status_code == 400  # no CSRF token on the form
    r = client.post("/console/login", data={"csrf_token": _form_token(r.text),
                                            "name": "alice", "password": "wrong password"})
    assert r.status_code == 401 and "do not match" in r.text

    csrf = login(client)
    cookie = client.get_cookie("shopper_console")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    client.put("/api/v1/shoppers/s-1/preferences", headers=server_headers,
               json={"attribute": "colour", "value": "Black", "polarity": "avoid"})

    r = client.get("/api/v1/shoppers/s-1/profile")
    assert r.status_code == 200 and r.get_json()["stated"][0]["value"] == "Black"
    pref = {"attribute": "colour", "value": "Navy Blue", "polarity": "want"}
    # Without the CSRF header the cookie gives no agent rights; a wrong one is refused.
    assert client.put("/api/v1/shoppers/s-1/preferences", json=pref).status_code == 401
    r = client.put("/api/v1/shoppers/s-1/preferences", json=pref,
                   headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    hdr = {"X-CSRF-Token": csrf}
    r = client.put("/api/v1/shoppers/s-1/preferences", json=pref, headers=hdr)
    assert r.status_code == 422 and "said" in r.get_json()["detail"]
    r = client.put("/api/v1/shoppers/s-1/preferences", headers=hdr,
                   json={**pref, "said": "I love navy, it's my colour"})
    assert r.status_code == 200
    navy = next(p for p in r.get_json()["stated"] if p["value"] == "Navy Blue")
    assert "I love navy" in navy["evidence"] and "alice" in navy["evidence"]
    # Agents may not export or forget a shopper from the console.
    assert client.get("/api/v1/shoppers/s-1/export").status_code == 403
    assert client.delete("/api/v1/shoppers/s-1", headers=hdr).status_code == 403

    r = client.post("/console/logout", data={"csrf_token": "forged"})
    assert r.status_code == 400
    r = client.post("/console/logout", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert client.get("/console").status_code == 303
    assert client.get("/api/v1/shoppers/s-1/profile").status_code == 401

    log = agents.audit_log()
    actions = [(e["agent"], e["action"], e["shopper_id"]) for e in log]
    assert ("alice", "profile.view", "s-1") in actions
    assert ("alice", "preference.set", "s-1") in actions
    assert ("alice", "login", None) in actions and ("alice", "logout", None) in actions
    assert ("alice", "login.failed", None) in actions
    said = next(e for e in log if e["action"] == "preference.set")
    assert said["detail"]["said"] == "I love navy, it's my colour"


def test_login_is_rate_limited(client: Any, agents: AgentStore) -> None:
    for _ in range(5):
        page = client.get("/console/login")
        r = client.post("/console/login", data={"csrf_token": _form_token(page.text),
                                                "name": "alice", "password": "guess"})
        assert r.status_code == 401
    page = client.get("/console/login")
    r = client.post("/console/login", data={"csrf_token": _form_token(page.text),
                                            "name": "alice", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_sessions_expire(client: Any, agents: AgentStore) -> None:
    login(client)
    assert client.get("/api/v1/shoppers/s-2/profile").status_code == 200
    agents.db.execute("UPDATE agent_sessions SET expires_at = '2000-01-01T00:00:00+00:00'")
    assert client.get("/api/v1/shoppers/s-2/profile").status_code == 401
    assert client.get("/console").status_code == 303


def test_agents_see_only_their_own_conversations(app: Any, agents: AgentStore) -> None:
    alice, bob, carol = app.test_client(), app.test_client(), app.test_client()
    csrf = login(alice, "alice")
    login(bob, "bob")
    login(carol, "carol")
    assert alice.get("/api/v1/shoppers/s-3/profile").status_code == 200  # the look-up
    r = alice.post("/api/v1/conversations", headers={"X-CSRF-Token": csrf},
                   json={"channel": "phone", "shopper_id": "s-3", "text": "black jeans"})
    assert r.status_code == 201, r.get_json()
    cid = r.get_json()["conversation_id"]
    r = alice.post("/api/v1/conversations", headers={"X-CSRF-Token": csrf},
                   json={"channel": "web"})
    assert r.status_code == 403  # agents open phone conversations only
    assert alice.get(f"/api/v1/conversations/{cid}").status_code == 200
    assert bob.get(f"/api/v1/conversations/{cid}").status_code == 403  # not its conversation
    assert carol.get(f"/api/v1/conversations/{cid}").status_code == 200
    assert ("alice", "conversation.start", "s-3") in [
        (e["agent"], e["action"], e["shopper_id"]) for e in agents.audit_log()]


def test_handoff_from_the_widget_to_an_agent(app: Any, chat: Any, agents: AgentStore) -> None:
    shopper = chat("I need running shoes for my husband")
    r = shopper.client.post(f"/api/v1/conversations/{shopper.id}/handoff",
                            headers=shopper.headers)
    assert r.status_code == 200, r.get_json()
    turn = r.get_json()
    code = turn["handoff_code"]
    assert turn["state"] == "handoff" and re.fullmatch(r"\d{6}", code)
    assert f"{code[:3]} {code[3:]}" in turn["message"]
    # Another conversation's token may not hand this one off.
    other = chat("a watch")
    r = other.client.post(f"/api/v1/conversations/{shopper.id}/handoff", headers=other.headers)
    assert r.status_code == 403

    agent = app.test_client()
    csrf = login(agent)
    hdr = {"X-CSRF-Token": csrf}
    assert agent.post("/api/v1/handoffs", json={"code": "000000"}, headers=hdr).status_code \
        in (404, 422)
    r = agent.post("/api/v1/handoffs", json={"code": f"{code[:3]} {code[3:]}"}, headers=hdr)
    assert r.status_code == 200, r.get_json()
    transcript = r.get_json()
    assert transcript["conversation_id"] == shopper.id
    assert transcript["turns"][0]["request"] == {"text": "I need running shoes for my husband"}
    assert transcript["turns"][-1]["state"] == "handoff"
    r = agent.post(f"/api/v1/conversations/{shopper.id}/turns", headers=hdr,
                   json={"text": "just show me some"})
    assert r.status_code == 200 and r.get_json()["state"] != "handoff"
    # The code works once; another agent cannot open the claimed conversation.
    assert agent.post("/api/v1/handoffs", json={"code": code}, headers=hdr).status_code == 404
    bob = app.test_client()
    login(bob, "bob")
    assert bob.get(f"/api/v1/conversations/{shopper.id}").status_code == 403
    assert shopper.client.get(f"/api/v1/conversations/{shopper.id}",
                              headers=shopper.headers).status_code == 200


def test_kiosk_links_a_profile_with_a_code(client: Any, chat: Any,
                                           server_headers: dict[str, str],
                                           services: Services) -> None:
    assert client.post("/api/v1/shoppers/s-4/link-code").status_code == 401
    r = client.post("/api/v1/shoppers/s-4/link-code", headers=server_headers)
    assert r.status_code == 201
    code = r.get_json()["code"]
    assert re.fullmatch(r"[A-Z2-9]{6}", code) and r.get_json()["expires_at"]

    kiosk = chat(channel="kiosk", store_id="blr-01")
    url = f"/api/v1/conversations/{kiosk.id}/link"
    r = client.post(url, json={"code": "WRONG1"}, headers=kiosk.headers)
    assert r.status_code == 422
    r = client.post(url, json={"code": code.lower()}, headers=kiosk.headers)
    assert r.status_code == 200 and r.get_json()["linked"] is True
    assert "s-4" not in r.text  # the kiosk never shows who is linked
    assert services.store().conversation_row(kiosk.id)["shopper_id"] == "s-4"
    r = client.post(url, json={"code": code}, headers=kiosk.headers)
    assert r.status_code == 422  # a code works once
    assert client.delete(url, headers=kiosk.headers).status_code == 200
    assert services.store().conversation_row(kiosk.id)["shopper_id"] is None
    for _ in range(4):
        client.post(url, json={"code": "WRONG2"}, headers=kiosk.headers)
    assert client.post(url, json={"code": "WRONG3"}, headers=kiosk.headers).status_code == 429


def test_kiosk_picks_say_whether_they_are_in_store(client: Any, chat: Any,
                                                   services: Services) -> None:
    web = chat("black t-shirt for men")
    web.send(action="more")
    assert web.picks and all("in_store" not in p for p in web.picks)
    kiosk = chat("black t-shirt for men", channel="kiosk", store_id="blr-01")
    kiosk.send(action="more")
    ids = [p["product_id"] for p in kiosk.picks]
    assert len(ids) >= 3 and all("in_store" in p for p in kiosk.picks)
    (services.data_dir / "stock.csv").write_text(
        "product_id,store_id,quantity\n"
        f"{ids[0]},blr-01,4\n{ids[1]},blr-01,0\n{ids[2]},del-01,9\n")
    r = client.get(f"/api/v1/conversations/{kiosk.id}", headers=kiosk.headers)
    picks = r.get_json()["turns"][-1]["picks"]
    assert [p["in_store"] for p in picks[:3]] == [True, False, None]
    assert picks[0]["in_store_label"] == "In stock here"
    assert picks[2]["in_store_label"] == "Ask staff"
    assert picks[0]["store_quantity"] == 4


def test_take_away_link_and_qr(client: Any, chat: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    kiosk = chat("black t-shirt for men", channel="kiosk", store_id="blr-01")
    kiosk.send(action="more")
    r = client.post(f"/api/v1/conversations/{kiosk.id}/share", headers=kiosk.headers)
    assert r.status_code == 200, r.get_json()
    link = r.get_json()
    assert link["product_ids"] == [p["product_id"] for p in kiosk.picks]
    assert link["url"].endswith(link["path"])
    page = client.get(link["path"])
    assert page.status_code == 200 and "script-src 'self'" in page.headers[
        "Content-Security-Policy"]
    for pick in kiosk.picks:
        assert f'data-product-id="{pick["product_id"]}"' in page.text
    assert "<script" not in page.text and kiosk.id not in page.text
    qr = client.get(link["qr_svg_url"])
    assert qr.mimetype == "image/svg+xml" and b"<svg" in qr.data
    assert client.get(link["path"][:-3] + "abc").status_code == 410
    import web.handoff

    monkeypatch.setattr(web.handoff, "SHARE_MINUTES", -1)
    assert client.get(link["path"]).status_code == 410


def test_new_paths_are_documented(client: Any) -> None:
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/conversations/{conversation_id}/handoff", "/api/v1/handoffs",
                 "/api/v1/conversations/{conversation_id}/link",
                 "/api/v1/conversations/{conversation_id}/share",
                 "/api/v1/shoppers/{shopper_id}/link-code"):
        assert path in paths, path
    assert "get" in paths["/api/v1/shoppers/{shopper_id}/events"]


def test_cli_adds_agents_and_reads_the_audit(tmp_path: Any, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert cli_main(["agents", "add", "dana", "--admin", "--password-stdin",
                     "--data-dir", str(tmp_path)]) == 0
    from assistant.store import open_db

    store = AgentStore(open_db(tmp_path / "shopper.db"))
    assert store.check_password("dana", "a long password") == {"name": "dana",
                                                                "is_admin": True}
    store.audit("dana", "profile.view", shopper_id="s-9")
    capsys.readouterr()
    assert cli_main(["audit", "--data-dir", str(tmp_path), "--shopper", "s-9"]) == 0
    out = capsys.readouterr().out
    assert "dana" in out and "profile.view" in out and "s-9" in out


def test_an_agent_finds_a_caller_by_email(client: Any, agents: AgentStore,
                                          server_headers: dict[str, str]) -> None:
    r = client.put("/api/v1/shoppers/s-42/contact", json={"email": "Ana.Silva@Example.com"},
                   headers=server_headers)
    assert r.status_code == 200 and r.get_json()["email"] == "ana.silva@example.com"
    assert client.put("/api/v1/shoppers/s-42/contact", json={"email": "not an email"},
                      headers=server_headers).status_code == 422
    # Nobody without the server key or an agent session finds anyone.
    assert client.get("/api/v1/shoppers?email=ana.silva@example.com").status_code == 401
    login(client)
    r = client.get("/api/v1/shoppers?email=ANA.SILVA@example.com")
    assert r.status_code == 200 and r.get_json() == {"shopper_id": "s-42"}
    r = client.get("/api/v1/shoppers?email=nobody@example.com")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    log = agents.audit_log()
    found = next(e for e in log if e["action"] == "shopper.find")
    assert found["agent"] == "alice" and found["shopper_id"] == "s-42"
    assert "ana" not in str(found["detail"]).casefold()  # the e-mail is not logged
    # The e-mail is the shopper's data: exported, and gone when they are forgotten.
    export = client.get("/api/v1/shoppers/s-42/export", headers=server_headers).get_json()
    assert "ana.silva@example.com" in str(export)
    assert client.delete("/api/v1/shoppers/s-42", headers=server_headers).status_code == 204
    assert client.get("/api/v1/shoppers?email=ana.silva@example.com",
                      headers=server_headers).status_code == 404
