"""The HTTP API of ../shared/API.md: conversations, shoppers, search, products.

Errors are application/problem+json everywhere under /api and /healthz; no HTML error page
and no stack trace ever reaches a client.
"""

from __future__ import annotations

import hmac
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from assistant.engine import Assistant, hash_token
from assistant.errors import (
    AssistantError,
    Conflict,
    ConversationClosed,
    InvalidInput,
    MalformedRequest,
    NotFound,
    Unavailable,
)
from assistant.memory import recipient_attributes, recipient_key
from assistant.preferences import parse_time

from . import services
from .openapi import openapi_document

__all__ = ["bp", "problem", "register_error_handlers"]

log = logging.getLogger("shopper.api")
bp = Blueprint("api", __name__)

F = TypeVar("F", bound=Callable[..., Any])
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+\-]{0,127}$")
_CONV_ID = re.compile(r"^c_[0-9a-f]{20}$")
EVENT_TYPES = ("view", "add_to_cart", "purchase", "search")
POLARITIES = ("want", "avoid")

_STATUS = {NotFound: 404, MalformedRequest: 400, InvalidInput: 422, ConversationClosed: 409, Conflict: 409,
           Unavailable: 503}


class Unauthorized(Exception):
    def __init__(self, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def problem(status: int, title: str, detail: str, *, type_: str = "about:blank",
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """An RFC 9457 problem response."""
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = "application/problem+json"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def register_error_handlers(app: Flask) -> None:
    """Map assistant errors and HTTP errors to problem+json (API paths) and log the rest."""

    @app.errorhandler(AssistantError)
    def _assistant_error(exc: AssistantError) -> Response:
        status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else None
        return problem(status, exc.title, exc.detail, headers=headers)

    @app.errorhandler(Unauthorized)
    def _unauthorized(exc: Unauthorized) -> Response:
        title = "Unauthorized" if exc.status == 401 else "Forbidden"
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem(exc.status, title, exc.detail, headers=headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response | HTTPException:
        if not _wants_problem():
            return exc
        detail = exc.description or exc.name
        if exc.code == 413:
            detail = (f"the body is larger than the limit of "
                      f"{app.config['MAX_CONTENT_LENGTH']} bytes")
        headers = {}
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return problem(exc.code or 500, exc.name, detail, headers=headers)

    @app.errorhandler(sqlite3.OperationalError)
    def _db_error(exc: sqlite3.OperationalError) -> Response:
        log.error("database unavailable: %s", exc)
        return problem(503, "Storage unavailable",
                       "the assistant cannot write its data right now (the disk may be full "
                       "or read-only); nothing was changed, please try again shortly",
                       headers={"Retry-After": "30"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return problem(500, "Internal error",
                       "something went wrong on our side; nothing you sent was lost")


def _wants_problem() -> bool:
    return request.path.startswith(("/api/", "/healthz"))


# Helpers ----------------------------------------------------------------------------------
def _assistant() -> Assistant:
    svc = services()
    if svc.assistant is None:
        detail = svc.error or "the assistant is starting up (loading the catalog and model)"
        raise Unavailable(detail, retry_after=10)
    return svc.assistant


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True, force=True) if request.data else None
    if data is None:
        if request.data:
            raise MalformedRequest("the body is not valid JSON")
        raise MalformedRequest("a JSON object body is required")
    if not isinstance(data, dict):
        raise MalformedRequest("the body must be a JSON object")
    return data


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _is_server() -> bool:
    token = _bearer()
    key = services().api_key
    return bool(token and key and hmac.compare_digest(token.encode(), key.encode()))


def _agent() -> dict[str, Any] | None:
    """The logged-in console agent, if the console blueprint set one for this request."""
    agent: dict[str, Any] | None = g.get("agent")
    return agent


def require_server(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _is_server():
            return fn(*args, **kwargs)
        if _agent() is not None and request.view_args and "shopper_id" in request.view_args:
            return fn(*args, **kwargs)
        if _bearer() is None:
            raise Unauthorized("this needs the server key: Authorization: Bearer <key>")
        raise Unauthorized("these credentials do not give access to shopper data", 403)
    return wrapper  # type: ignore[return-value]


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInput(f"{what} must be 1-128 letters, digits or . _ @ : + - "
                           "(starting with a letter or digit)")
    return value


def _conversation_access(conversation_id: str) -> None:
    """A conversation token opens only its conversation; the server key opens all."""
    if not _CONV_ID.match(conversation_id):
        raise NotFound(f"there is no conversation {conversation_id!r}")
    row = services().store().conversation_row(conversation_id)
    if _is_server():
        return
    agent = _agent()
    # An agent opens its own conversations (phone calls and claimed hand-offs) and unowned
    # phone conversations; an admin also opens other agents' ones.
    if agent is not None and (
            row["agent_id"] == agent["name"]
            or (row["channel"] == "phone" and row["agent_id"] is None)
            or (agent.get("is_admin") and (row["channel"] == "phone" or row["agent_id"]))):
        return
    token = _bearer()
    if token is None:
        raise Unauthorized("this needs the conversation's token: Authorization: Bearer <token>")
    if not hmac.compare_digest(hash_token(token), row["token_hash"]):
        raise Unauthorized("this token does not open this conversation", 403)


class _RateLimiter:
    """A token bucket per client address, bounded in memory."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, per_minute: int) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > 50000:
                self._buckets.clear()
            tokens, last = self._buckets.get(key, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * per_minute / 60.0)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1, now)
            return True


_anon_limiter = _RateLimiter()


class _Inflight:
    """Sheds load honestly: past a bound of turns in progress, answer 503 at once."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        from flask import current_app

        with self._lock:
            if self.count >= current_app.config["MAX_INFLIGHT"]:
                raise Unavailable("the assistant is very busy right now and did not take this "
                                  "turn; nothing was lost, please send it again in a moment",
                                  retry_after=2)
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.count -= 1


_inflight = _Inflight()


# Health and the document ------------------------------------------------------------------
@bp.get("/healthz")
def healthz() -> Any:
    svc = services()
    if svc.assistant is None:
        return problem(503, "Not ready", svc.error or "loading the catalog and model",
                       headers={"Retry-After": "5"})
    return {"status": "ok", "catalogs": {n: len(c) for n, c in svc.assistant.catalogs.items()}}


@bp.get("/api/v1/openapi.json")
def openapi() -> Any:
    return openapi_document()


# Conversations ----------------------------------------------------------------------------
@bp.post("/api/v1/conversations")
def create_conversation() -> Any:
    body = _body()
    shopper_id = body.get("shopper_id")
    agent = _agent()
    if shopper_id is not None:
        _check_id(shopper_id, "shopper_id")
        if not _is_server() and agent is None:
            raise Unauthorized("a conversation for a signed-in shopper is created by the "
                               "shop's backend with the server key", 401 if _bearer() is None
                               else 403)
    elif not _is_server() and agent is None:
        addr = request.remote_addr or "?"
        from flask import current_app

        if not _anon_limiter.allow(addr, int(current_app.config["ANON_RATE_PER_MINUTE"])):
            return problem(429, "Too many conversations",
                           "too many new conversations from this address; wait a minute",
                           headers={"Retry-After": "60"})
    channel = body.get("channel", "web")
    for key in ("text", "catalog", "store_id", "product_id"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidInput(f"{key} must be a string")
    if body.get("store_id") is not None:
        _check_id(body["store_id"], "store_id")
    if agent is not None and channel != "phone" and not _is_server():
        raise Unauthorized("agents open conversations on the phone channel", 403)
    with _inflight:
        conv, token, turn = _assistant().start(
            channel=channel, shopper_id=shopper_id, catalog=body.get("catalog"),
            store_id=body.get("store_id"), text=body.get("text"),
            agent_id=agent["name"] if agent else None, product_id=body.get("product_id"))
    out = {**turn, "conversation_id": conv.conversation_id, "token": token}
    resp = jsonify(out)
    resp.status_code = 201
    resp.headers["Location"] = f"/api/v1/conversations/{conv.conversation_id}"
    return resp


@bp.post("/api/v1/conversations/<conversation_id>/turns")
def add_turn(conversation_id: str) -> Any:
    _conversation_access(conversation_id)
    body = _body()
    with _inflight:
        return _assistant().turn(conversation_id, body)


@bp.get("/api/v1/conversations/<conversation_id>")
def get_conversation(conversation_id: str) -> Any:
    _conversation_access(conversation_id)
    return _assistant().transcript(conversation_id)


# Shoppers ---------------------------------------------------------------------------------
@bp.get("/api/v1/shoppers/<shopper_id>/profile")
@require_server
def get_profile(shopper_id: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    assistant = _assistant()
    prof = assistant.profile(shopper_id, assistant.catalog(request.args.get("catalog")))
    prof.pop("effective_objects", None)
    return prof


def _pref_fields(body: dict[str, Any], need_polarity: bool) -> tuple[str, str, str]:
    attr, value = body.get("attribute"), body.get("value")
    if not isinstance(attr, str) or not attr or not isinstance(value, str) or not value:
        raise InvalidInput('"attribute" and "value" must be non-empty strings')
    polarity = body.get("polarity", "want")
    if need_polarity and polarity not in POLARITIES:
        raise InvalidInput('"polarity" must be "want" or "avoid"')
    cat = _assistant().catalog(body.get("catalog"))
    if attr not in cat.values:
        raise InvalidInput(f"there is no attribute {attr!r}; attributes: "
                           f"{', '.join(cat.values)}")
    canon = {v.casefold(): v for v in cat.values[attr]}.get(value.strip().casefold())
    if canon is None:
        raise InvalidInput(f"{value!r} is not a {attr} in catalog {cat.name!r}")
    return attr, canon, polarity


@bp.put("/api/v1/shoppers/<shopper_id>/preferences")
@require_server
def put_preference(shopper_id: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    attr, value, polarity = _pref_fields(_body(), True)
    store = services().store()
    agent = _agent()
    said = _body().get("said") if agent else None
    if agent is not None and not (isinstance(said, str) and said.strip()):
        raise InvalidInput("an agent records a preference only with the caller's own words "
                           'in "said"')
    evidence = (f"the caller said “{said}” to {agent['name']}" if agent else
                "you set it in your profile") + f" on {time.strftime('%Y-%m-%d')}"
    with store.transaction():
        store.put_preference(shopper_id, attr, value, polarity, evidence=evidence,
                             said=said or "")
    prof = _assistant().profile(shopper_id)
    prof.pop("effective_objects", None)
    return prof


@bp.delete("/api/v1/shoppers/<shopper_id>/preferences")
@require_server
def delete_preference(shopper_id: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    attr, value, _ = _pref_fields(_body(), False)
    store = services().store()
    with store.transaction():
        removed = store.delete_preference(shopper_id, attr, value)
        if not removed:
            # An inferred preference: keep a note so it is not inferred again.
            store.put_preference(shopper_id, attr, value, "neutral", source="dismissed",
                                 evidence="you removed it", strength=0.0)
    prof = _assistant().profile(shopper_id)
    prof.pop("effective_objects", None)
    return prof


@bp.post("/api/v1/shoppers/<shopper_id>/events")
@require_server
def add_event(shopper_id: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    body = _body()
    type_ = body.get("type")
    if type_ not in EVENT_TYPES:
        raise InvalidInput(f'"type" must be one of {", ".join(EVENT_TYPES)}')
    assistant = _assistant()
    cat = assistant.catalog(body.get("catalog"))
    product_id = body.get("product_id")
    query = body.get("query")
    if type_ == "search":
        if not isinstance(query, str) or not query.strip() or len(query) > 500:
            raise InvalidInput('a search event needs "query", a string of 1-500 characters')
    else:
        if not isinstance(product_id, str) or not product_id:
            raise InvalidInput(f'a {type_} event needs "product_id"')
        if cat.product(product_id) is None:
            raise NotFound(f"there is no product {product_id!r} in catalog {cat.name!r}")
    at = body.get("at")
    if at is not None:
        if not isinstance(at, str):
            raise InvalidInput('"at" must be an ISO 8601 time')
        try:
            at = parse_time(at).isoformat(timespec="seconds")
        except ValueError:
            raise InvalidInput(f'"at" is not an ISO 8601 time: {at!r}') from None
    recipient = body.get("recipient")
    if recipient is not None and not isinstance(recipient, str):
        raise InvalidInput('"recipient" must be a string')
    store = services().store()
    with store.transaction():
        store.add_event(shopper_id, type_, product_id=product_id, catalog=cat.name,
                        query=query, at=at, recipient=recipient)
    resp = jsonify({"shopper_id": shopper_id, "type": type_, "product_id": product_id,
                    "query": query, "at": at, "recorded": True})
    resp.status_code = 201
    return resp


# Recipients: the people a shopper shops for ------------------------------------------------
def _recipient_name(name: str) -> str:
    key = recipient_key(name)
    if not key or len(key) > 64 or not re.fullmatch(r"[a-z0-9][a-z0-9 \-]*", key):
        raise InvalidInput("a recipient's name is 1-64 letters, digits, spaces or -, "
                           "e.g. 'husband' or 'niece'")
    return key


@bp.get("/api/v1/shoppers/<shopper_id>/recipients")
@require_server
def list_recipients(shopper_id: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    return {"shopper_id": shopper_id, "recipients": services().store().recipients(shopper_id)}


@bp.get("/api/v1/shoppers/<shopper_id>/recipients/<name>")
@require_server
def get_recipient(shopper_id: str, name: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    saved = services().store().recipient(shopper_id, _recipient_name(name))
    if saved is None:
        raise NotFound(f"shopper {shopper_id!r} has no recipient {name!r}")
    return saved


@bp.put("/api/v1/shoppers/<shopper_id>/recipients/<name>")
@require_server
def put_recipient(shopper_id: str, name: str) -> Any:
    """Keep a person the shopper shops for: ``{"attributes": {"colour": "Navy Blue",
    "size": "L"}, "text": "size L, likes navy", "note": "..."}`` (attributes, text or both;
    text is read with the catalog's words)."""
    _check_id(shopper_id, "shopper_id")
    key = _recipient_name(name)
    body = _body()
    attrs = body.get("attributes", {})
    text, note = body.get("text"), body.get("note", "")
    if not isinstance(attrs, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v and len(v) <= 100
            for k, v in attrs.items()) or len(attrs) > 30:
        raise InvalidInput('"attributes" must map attribute names to non-empty strings')
    if text is not None and (not isinstance(text, str) or len(text) > 500):
        raise InvalidInput('"text" must be a string of at most 500 characters')
    if not isinstance(note, str) or len(note) > 500:
        raise InvalidInput('"note" must be a string of at most 500 characters')
    assistant = _assistant()
    cat = assistant.catalog(body.get("catalog"))
    kept: dict[str, str] = {}
    if text:
        kept.update(recipient_attributes(text, assistant.query_reader(cat.name)))
    for attr, value in attrs.items():
        canon = {v.casefold(): v for v in cat.values.get(attr, [])}.get(value.strip().casefold())
        kept[attr] = canon or value.strip()
    if not kept and not note:
        raise InvalidInput('say something about them: "attributes", "text" or "note"')
    store = services().store()
    with store.transaction():
        store.put_recipient(shopper_id, key, kept, note=note or text or "")
    return store.recipient(shopper_id, key)


@bp.delete("/api/v1/shoppers/<shopper_id>/recipients/<name>")
@require_server
def delete_recipient(shopper_id: str, name: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    store = services().store()
    with store.transaction():
        removed = store.delete_recipient(shopper_id, _recipient_name(name))
    if not removed:
        raise NotFound(f"shopper {shopper_id!r} has no recipient {name!r}")
    return Response(status=204)


@bp.get("/api/v1/shoppers/<shopper_id>/export")
@require_server
def export_shopper(shopper_id: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    data = services().store().export_shopper(shopper_id)
    prof = _assistant().profile(shopper_id)
    prof.pop("effective_objects", None)
    return {"shopper_id": shopper_id, "profile": prof, "tables": data}


@bp.delete("/api/v1/shoppers/<shopper_id>")
@require_server
def forget_shopper(shopper_id: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    store = services().store()
    with store.transaction():
        store.forget_shopper(shopper_id)
    return Response(status=204)


# Search and products ----------------------------------------------------------------------
@bp.get("/api/v1/search")
def search() -> Any:
    q = request.args.get("q", "")
    product_id = request.args.get("product_id") or None
    if not q.strip() and product_id is None:
        raise InvalidInput('"q" is required (or "product_id" for products similar to one)')
    if len(q) > 500:
        raise InvalidInput('"q" is too long (500 characters at most)')
    try:
        k = int(request.args.get("k", "10"))
    except ValueError:
        raise InvalidInput('"k" must be a whole number') from None
    if not 1 <= k <= 100:
        raise InvalidInput('"k" must be between 1 and 100')
    shopper_id = request.args.get("shopper_id")
    if shopper_id is not None:
        _check_id(shopper_id, "shopper_id")
        if not _is_server() and _agent() is None:
            raise Unauthorized("personalised search needs the server key",
                               401 if _bearer() is None else 403)
    with _inflight:
        picks = _assistant().search(q, shopper_id=shopper_id, k=k,
                                    catalog=request.args.get("catalog"),
                                    product_id=product_id)
    return {"picks": picks}


@bp.get("/api/v1/products/<path:product_id>")
def get_product(product_id: str) -> Any:
    cat = _assistant().catalog(request.args.get("catalog"))
    product = cat.product(product_id)
    if product is None:
        raise NotFound(f"there is no product {product_id!r} in catalog {cat.name!r}")
    row = cat.row_of[product_id]
    return {**product.to_json(), "catalog": cat.name,
            "purchase_kind": cat.purchase_kind(row)}
