"""Forgetting a shopper (DELETE /api/v1/shoppers/{id}) leaves nothing about them.

The shopper's data is made the ways a shop makes it: the widget's signed-in conversation
(typed words, taps, feedback, a hand-off code), stated preferences, events (inferred
preferences), a recipient, kiosk link codes (one used, one not, one wrong try) with words typed
at the kiosk while linked, and an agent on the console (look-up, a preference in the caller's
own words, a phone conversation, the hand-off taken), which fills the audit log. After the
forget every column of every table in ``sqlite_master`` (so a table added later is covered
without touching this test) is searched for the shopper's id, their conversations' ids and
each distinctive thing they typed; then the raw bytes of the database file and its
write-ahead log are searched for the typed words too (secure_delete must have zeroed them).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from assistant.agents import AgentStore
from tests.conftest import SERVER, login
from web import Services

SHOPPER = "privacy-shopper-q7x"
OTHER = "bystander-b2"
# What the shopper typed or said, each word distinctive enough to find anywhere.
TYPED = {
    "widget": "black jeans for me, my nickname is Quokkazanzibar",
    "widget2": "something cheaper, Plumtreeseven",
    "search": "albatrossblue sneakers",
    "recipient": "size L, loves Marmotmaroon colours",
    "kiosk": "running shoes Pangolinpurple",
    "said": "I never wear Wombatwhite, write that down",
    "phone": "a watch for my dad Ocelotorange",
}
WORDS = ["Quokkazanzibar", "Plumtreeseven", "albatrossblue", "Marmotmaroon", "Pangolinpurple",
         "Wombatwhite", "Ocelotorange"]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:500])
    return r.get_json()


def _fill(client: Any, shopper: str, words: dict[str, str], csrf: str,
          agent_client: Any) -> list[str]:
    """Everything a shop keeps about one shopper; returns their conversation ids."""
    convs = []
    # The widget, signed in by the shop's backend: words, a tap, feedback, a hand-off code.
    turn = _ok(client.post("/api/v1/conversations", headers=SERVER, json={
        "channel": "web", "shopper_id": shopper, "text": words["widget"]}), 201)
    cid, auth = turn["conversation_id"], _bearer(turn["token"])
    convs.append(cid)
    if turn["question"]:
        q = turn["question"]
        turn = _ok(client.post(f"/api/v1/conversations/{cid}/turns", headers=auth, json={
            "answer": {"attribute": q["attribute"], "value": q["options"][0]["value"]}}))
    turn = _ok(client.post(f"/api/v1/conversations/{cid}/turns", headers=auth,
                           json={"text": words["widget2"]}))
    product = turn["picks"][0]["product_id"] if turn["picks"] else "15970"
    _ok(client.post(f"/api/v1/conversations/{cid}/turns", headers=auth,
                    json={"feedback": {"product_id": product, "kind": "already_own"}}))
    code = _ok(client.post(f"/api/v1/conversations/{cid}/handoff", headers=auth))
    handoff_code = code["handoff_code"]
    # The shop's backend: stated preferences, events, a recipient, link codes.
    _ok(client.put(f"/api/v1/shoppers/{shopper}/preferences", headers=SERVER,
                   json={"attribute": "colour", "value": "Navy Blue", "polarity": "want"}))
    for ev in ({"type": "purchase", "product_id": product}, {"type": "view",
               "product_id": "15970"}, {"type": "search", "query": words["search"]}):
        _ok(client.post(f"/api/v1/shoppers/{shopper}/events", headers=SERVER, json=ev), 201)
    _ok(client.put(f"/api/v1/shoppers/{shopper}/recipients/husband", headers=SERVER,
                   json={"text": words["recipient"]}))
    _ok(client.post(f"/api/v1/shoppers/{shopper}/link-code", headers=SERVER), 201)  # unused
    link = _ok(client.post(f"/api/v1/shoppers/{shopper}/link-code", headers=SERVER), 201)
    # The kiosk: a wrong code, the right one, words typed while linked, then it unlinks.
    kiosk = _ok(client.post("/api/v1/conversations", json={"channel": "kiosk",
                                                           "store_id": "blr-01"}), 201)
    kid, kauth = kiosk["conversation_id"], _bearer(kiosk["token"])
    convs.append(kid)
    assert client.post(f"/api/v1/conversations/{kid}/link", headers=kauth,
                       json={"code": "ZZZZZZ"}).status_code == 422
    _ok(client.post(f"/api/v1/conversations/{kid}/link", headers=kauth,
                    json={"code": link["code"]}))
    _ok(client.post(f"/api/v1/conversations/{kid}/turns", headers=kauth,
                    json={"text": words["kiosk"]}))
    _ok(client.delete(f"/api/v1/conversations/{kid}/link", headers=kauth))
    # The console: look-up, a preference in the caller's words, a phone call, the hand-off.
    hdr = {"X-CSRF-Token": csrf}
    _ok(agent_client.get(f"/api/v1/shoppers/{shopper}/profile"))
    _ok(agent_client.get(f"/api/v1/shoppers/{shopper}/events"))
    _ok(agent_client.put(f"/api/v1/shoppers/{shopper}/preferences", headers=hdr, json={
        "attribute": "colour", "value": "White", "polarity": "avoid", "said": words["said"]}))
    phone = _ok(agent_client.post("/api/v1/conversations", headers=hdr, json={
        "channel": "phone", "shopper_id": shopper, "text": words["phone"]}), 201)
    convs.append(phone["conversation_id"])
    _ok(agent_client.post(f"/api/v1/conversations/{phone['conversation_id']}/turns",
                          headers=hdr, json={"action": "more"}))
    _ok(agent_client.post("/api/v1/handoffs", headers=hdr, json={"code": handoff_code}))
    return convs


def _scan(db_path: Path, needles: list[str]) -> list[str]:
    """Every (table, column, needle) where a value holds a needle, over every table."""
    hits = []
    with sqlite3.connect(db_path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cur = db.execute(f"SELECT * FROM [{table}]")
            cols = [d[0] for d in cur.description]
            for row in cur:
                for col, value in zip(cols, row, strict=True):
                    text = value.decode("utf-8", "replace") if isinstance(value, bytes) \
                        else str(value)
                    hits.extend(f"{table}.{col}: {n}" for n in needles
                                if n.casefold() in text.casefold())
    db.close()
    return hits


def test_forget_removes_every_row_and_every_byte_about_the_shopper(
        client: Any, services: Services, agents: AgentStore, app: Any) -> None:
    agent_client = app.test_client()
    csrf = login(agent_client)
    convs = _fill(client, SHOPPER, TYPED, csrf, agent_client)
    other_words = {k: f"{v} (other)".replace(w, w[::-1])
                   for (k, v), w in zip(TYPED.items(), WORDS, strict=True)}
    other_convs = _fill(client, OTHER, other_words, csrf, agent_client)
    db_path = services.db_path
    needles = [SHOPPER, *WORDS, *convs]
    found = _scan(db_path, needles)
    assert {n for n in needles if not any(h.endswith(f": {n}") for h in found)} == set(), \
        "the scan must see every needle before the forget"
    assert any(h.startswith("audit.") for h in found) and any(
        h.startswith("throttle.") for h in found)

    r = client.delete(f"/api/v1/shoppers/{SHOPPER}", headers=SERVER)
    assert r.status_code == 204

    assert _scan(db_path, needles) == []
    # The other shopper keeps everything.
    others = _scan(db_path, [OTHER, *other_convs, *(w[::-1] for w in WORDS)])
    assert {h.split(":")[0].split(".")[0] for h in others} >= {
        "conversations", "turns", "preferences", "events", "recipients", "link_codes",
        "audit"}
    # The audit keeps one line that a shopper was forgotten, without saying who.
    forgot = [e for e in agents.audit_log() if e["action"] == "shopper.forget"]
    assert len(forgot) == 1 and forgot[0]["shopper_id"] is None
    assert forgot[0]["detail"]["rows"] > 10
    export = _ok(client.get(f"/api/v1/shoppers/{SHOPPER}/export", headers=SERVER))
    assert all(rows == [] for rows in export["tables"].values())

    # Nor in the file's free pages or the write-ahead log.
    services.db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = db_path.read_bytes()
    wal = Path(f"{db_path}-wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert [w for w in [SHOPPER, *WORDS] if w.encode() in raw] == []
    assert "Quokkazanzibar"[::-1].encode() in raw  # the other shopper's words are there


def test_the_project_keeps_no_backups(services: Services) -> None:
    """If one is ever added, forgetting must reach it too: this fails until it does."""
    names = {p.name for p in Path(services.data_dir).iterdir()}
    assert not {n for n in names if "backup" in n or n.endswith((".bak", ".dump"))}
    repo = Path(__file__).resolve().parents[1]
    sources = [p for d in ("assistant", "web", "catalog", "scripts") for p in (repo / d).rglob(
        "*") if p.suffix in (".py", "") and p.is_file()]
    assert not [p for p in sources if ".backup(" in p.read_text(errors="replace")
                or "VACUUM INTO" in p.read_text(errors="replace")]
