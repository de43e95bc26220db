"""API additions for moving a shopper between doors (documented in web/openapi.py).

- ``POST /api/v1/shoppers/{id}/link-code`` (server key): a short one-time code the shop shows
  on the shopper's profile page; a kiosk enters it with
  ``POST|DELETE /api/v1/conversations/{id}/link`` (conversation token) to attach or detach
  the shopper.
- ``POST /api/v1/conversations/{id}/handoff`` (conversation token): the shopper asks for a
  person; the answer holds a code the shopper reads out on the phone, and an agent enters it
  with ``POST /api/v1/handoffs`` (console session) to continue the same conversation.
- ``POST /api/v1/conversations/{id}/share`` (conversation token): a signed link valid for 30
  minutes listing the current picks' product ids (never the shopper's data), opened at
  ``GET /p/{token}``, with its QR code at ``GET /p/{token}/qr.svg`` (segno).
- ``GET /api/v1/shoppers/{id}/events`` (server key or agent): the shopper's events.
- Picks of a conversation with a ``store_id`` get ``in_store`` from the stock file (stock.py).
"""

from __future__ import annotations

import io
import os
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    render_template,
    request,
)
from flask.blueprints import BlueprintSetupState
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from assistant.agents import AgentStore
from assistant.errors import InvalidInput, NotFound

from . import services
from .api import (
    Unauthorized,
    _agent,
    _assistant,
    _body,
    _check_id,
    _conversation_access,
    _is_server,
    problem,
    require_server,
)
from .stock import StockBook

__all__ = ["SHARE_MINUTES", "bp", "new_code"]

bp = Blueprint("doors", __name__)

SHARE_MINUTES = 30
LINK_CODE_MINUTES = 10
HANDOFF_MINUTES = 30
#: No 0/O or 1/I: codes are read aloud and typed on a touch screen.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_CODE = re.compile(r"^[A-Z0-9]{4,12}$")
_CONV_PATH = re.compile(r"^/api/v1/conversations(?:/(c_[0-9a-f]{20})(?:/turns)?)?$")


def new_code(length: int = 6, alphabet: str = CODE_ALPHABET) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _clean_code(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput('"code" must be a string')
    code = re.sub(r"[\s-]", "", value).upper()
    if not _CODE.match(code):
        raise InvalidInput('"code" is 4-12 letters and digits')
    return code


def _agents() -> AgentStore:
    return AgentStore(services().db())


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    """A secret key shared by every worker (kept in the data dir) for signed links and the
    console; a StockBook for the kiosk."""
    app = state.app
    data_dir = Path(app.extensions["shopper"].data_dir)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(data_dir)
    app.extensions["shopper_stock"] = StockBook(data_dir)


def _secret_key(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip() or _secret_key_retry(path)
    with os.fdopen(fd, "w") as fh:
        key = secrets.token_urlsafe(48)
        fh.write(key)
    return key


def _secret_key_retry(path: Path) -> str:
    # Another worker created the file a moment ago and is still writing it.
    import time

    for _ in range(50):
        time.sleep(0.02)
        text = path.read_text().strip()
        if text:
            return text
    raise RuntimeError(f"{path} is empty: delete it and restart")


def stock() -> StockBook:
    book: StockBook = current_app.extensions["shopper_stock"]
    return book


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="shopper-picks")


# Stock on kiosk picks -----------------------------------------------------------------------
@bp.after_app_request
def _add_stock(response: Response) -> Response:
    """Annotate the picks of a conversation that stands in a store (kiosk). The views that
    answer with a conversation's turns say where it stands (``g.conversation_place``, set
    when they read the conversation), so nothing is read again here."""
    place = g.get("conversation_place")
    if (place is None or not place[0] or _CONV_PATH.match(request.path) is None
            or response.status_code not in (200, 201)
            or response.mimetype != "application/json"):
        return response
    data = response.get_json(silent=True)
    if not isinstance(data, dict):
        return response
    store_id, catalog = place
    turns = data["turns"] if isinstance(data.get("turns"), list) else [data]
    for turn in turns:
        if isinstance(turn.get("picks"), list):
            stock().annotate(turn["picks"], store_id, catalog)
    # Written as every other response is (orjson, compact): 4 us for a kiosk turn, against
    # 51 us by the standard library.
    response.set_data(current_app.json.dumps(data))
    return response


# Link codes ---------------------------------------------------------------------------------
@bp.post("/api/v1/shoppers/<shopper_id>/link-code")
def link_code(shopper_id: str) -> Any:
    """A one-time code (10 minutes) linking a kiosk conversation to this shopper."""
    if not _is_server():
        raise Unauthorized("link codes are made by the shop's backend with the server key",
                           401 if request.headers.get("Authorization") is None else 403)
    _check_id(shopper_id, "shopper_id")
    code = new_code()
    expires = (datetime.now(UTC) + timedelta(minutes=LINK_CODE_MINUTES)).isoformat(
        timespec="seconds")
    store = services().store()
    with store.transaction():
        store.create_link_code(shopper_id, code, expires)
    resp = jsonify({"shopper_id": shopper_id, "code": code, "expires_at": expires})
    resp.status_code = 201
    return resp


@bp.post("/api/v1/conversations/<conversation_id>/link")
def link(conversation_id: str) -> Any:
    """Attach the shopper named by a link code to this conversation."""
    _conversation_access(conversation_id)
    code = _clean_code(_body().get("code"))
    agents = _agents()
    keys = (f"link:{conversation_id}", f"link-ip:{request.remote_addr or '?'}")
    if agents.count(keys[0], 10) >= 5 or agents.count(keys[1], 10) >= 30:
        return problem(429, "Too many tries", "too many wrong codes; wait a few minutes or "
                       "ask staff", headers={"Retry-After": "300"})
    store = services().store()
    with store.transaction():
        shopper_id = store.use_link_code(code)
        if shopper_id is None:
            for key in keys:
                agents.note(key)
        else:
            store.set_conversation_shopper(conversation_id, shopper_id)
            # Kept with the shopper's events: the conversation is theirs even after the kiosk
            # unlinks it, so forgetting them deletes it too.
            store.add_event(shopper_id, "link", conversation_id=conversation_id)
    if shopper_id is None:
        raise InvalidInput("that code is wrong or has expired; make a new one on your "
                           "profile page")
    return {"conversation_id": conversation_id, "linked": True,
            "message": "Your profile is linked: picks now follow your saved preferences."}


@bp.delete("/api/v1/conversations/<conversation_id>/link")
def unlink(conversation_id: str) -> Any:
    """Detach the shopper (the kiosk does this when the shopper leaves)."""
    _conversation_access(conversation_id)
    store = services().store()
    with store.transaction():
        store.set_conversation_shopper(conversation_id, None)
    return {"conversation_id": conversation_id, "linked": False,
            "message": "Your profile is no longer linked to this screen."}


# Hand-off -----------------------------------------------------------------------------------
@bp.post("/api/v1/conversations/<conversation_id>/handoff")
def handoff(conversation_id: str) -> Any:
    """The shopper asks for a person: returns the Turn plus a code to read out."""
    _conversation_access(conversation_id)
    store = services().store()
    for _ in range(20):
        code = new_code(6, "0123456789")
        if store.conversation_by_code(code) is None:
            break
    turn = _assistant().ask_for_person(conversation_id, code)
    expires = (datetime.now(UTC) + timedelta(minutes=HANDOFF_MINUTES)).isoformat(
        timespec="seconds")
    spaced = f"{code[:3]} {code[3:]}"
    return {**turn, "handoff_code": code, "handoff_expires_at": expires,
            "message": f"{turn['message']} Call us and read out this code: {spaced}."}


@bp.post("/api/v1/handoffs")
def claim_handoff() -> Any:
    """An agent (or the shop's backend) continues a handed-off conversation by its code."""
    agent = _agent()
    if agent is None and not _is_server():
        raise Unauthorized("hand-offs are taken by an agent logged in to the console",
                           401 if request.headers.get("Authorization") is None else 403)
    code = _clean_code(_body().get("code"))
    store = services().store()
    cid = store.conversation_by_code(code)
    fresh = False
    if cid is not None:
        asked = [t["at"] for t in store.turns(cid)
                 if t["request"].get("action") == "ask_for_person"]
        limit = (datetime.now(UTC) - timedelta(minutes=HANDOFF_MINUTES)).isoformat(
            timespec="seconds")
        fresh = bool(asked) and asked[-1] >= limit
    if cid is None or not fresh:
        if agent is not None:
            _agents().audit(agent["name"], "handoff.unknown_code", detail={"code": code})
        raise NotFound("no conversation waits with that code; ask the caller to read it "
                       "again, or to ask for a person once more")
    row = store.conversation_row(cid)
    with store.transaction():
        store.claim_conversation(cid, agent["name"] if agent else "server")
    if agent is not None:
        _agents().audit(agent["name"], "handoff.claim", shopper_id=row["shopper_id"],
                        conversation_id=cid, detail={"channel": row["channel"]})
    return _assistant().transcript(cid)


# Taking picks along -------------------------------------------------------------------------
@bp.post("/api/v1/conversations/<conversation_id>/share")
def share(conversation_id: str) -> Any:
    """A signed link to the current picks (product ids only), valid for 30 minutes."""
    _conversation_access(conversation_id)
    row = services().store().conversation_row(conversation_id)
    turns = services().store().turns(conversation_id)
    picks: list[dict[str, Any]] = next(
        (t["picks"] for t in reversed(turns) if t.get("picks")), [])
    if not picks:
        raise InvalidInput("there are no picks to take along yet")
    ids = [str(p["product_id"]) for p in picks][:10]
    token = _signer().dumps({"c": row["catalog"], "p": ids, "s": row["store_id"]})
    base = (current_app.config.get("PUBLIC_URL") or request.host_url).rstrip("/")
    expires = (datetime.now(UTC) + timedelta(minutes=SHARE_MINUTES)).isoformat(
        timespec="seconds")
    return {"url": f"{base}/p/{token}", "path": f"/p/{token}",
            "qr_svg_url": f"/p/{token}/qr.svg", "product_ids": ids, "expires_at": expires}


def _shared(token: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = _signer().loads(token, max_age=SHARE_MINUTES * 60)
    except (SignatureExpired, BadSignature):
        return None
    return data


@bp.get("/p/<token>")
def shared_picks(token: str) -> Response:
    """The picks a shopper took along from a kiosk, as a plain page (no script)."""
    data = _shared(token)
    if data is None:
        return make_response(render_template("shared/picks.html", products=None), 410)
    cat = _assistant().catalog(data.get("c"))
    products = [p.to_json() for p in (cat.product(i) for i in data.get("p", [])) if p]
    return make_response(render_template("shared/picks.html", products=products))


@bp.get("/p/<token>/qr.svg")
def shared_qr(token: str) -> Response:
    """The QR code of the shared link, as SVG."""
    import segno

    if _shared(token) is None:
        return Response("expired", status=410, mimetype="text/plain")
    base = (current_app.config.get("PUBLIC_URL") or request.host_url).rstrip("/")
    out = io.BytesIO()
    segno.make(f"{base}/p/{token}", error="m").save(out, kind="svg", scale=6, border=2,
                                                    title="Scan to open your picks")
    return Response(out.getvalue(), mimetype="image/svg+xml")


# Events (for the console's purchase list) --------------------------------------------------
@bp.get("/api/v1/shoppers/<shopper_id>/events")
@require_server
def list_events(shopper_id: str) -> Any:
    """The shopper's events, newest first, with product titles where known."""
    _check_id(shopper_id, "shopper_id")
    assistant = _assistant()
    out = []
    for e in reversed(services().store().events(shopper_id)):
        title = None
        if e.get("product_id"):
            try:
                product = assistant.catalog(e.get("catalog")).product(e["product_id"])
            except NotFound:
                product = None
            title = product.title if product else None
        out.append({"type": e["type"], "product_id": e["product_id"], "title": title,
                    "catalog": e["catalog"], "query": e["query"], "at": e["at"],
                    "recipient": e["recipient"]})
    return {"shopper_id": shopper_id, "events": out[:200]}

