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
import traceback
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

import orjson
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    jsonify,
    request,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from assistant.agents import AgentStore
from assistant.engine import MAX_TEXT, Assistant, hash_token
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
from assistant.store import storage_fault

from . import SLOT_WAIT_KEY, services
from .openapi import openapi_document

__all__ = ["bp", "problem", "register_error_handlers"]

log = logging.getLogger("shopper.api")
bp = Blueprint("api", __name__)

F = TypeVar("F", bound=Callable[..., Any])
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+\-]{0,127}$")
_CONV_ID = re.compile(r"^c_[0-9a-f]{20}$")
EVENT_TYPES = ("view", "add_to_cart", "purchase", "search")
POLARITIES = ("want", "avoid")

_STATUS = {NotFound: 404, MalformedRequest: 400, InvalidInput: 422, ConversationClosed: 409,
           Conflict: 409, Unavailable: 503}
#: C0 and C1 control characters other than tab, line feed and carriage return: refused in
#: every string of a JSON body (they would reach logs, terminals and the agent's screen).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: Event times outside [1970, now + 1 day] are refused: they cannot be real, and far ones
#: overflow date arithmetic when the profile is read.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_NO_BODY = object()
_RECIPIENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 \-]{0,63}$")


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

    @app.errorhandler(sqlite3.DatabaseError)
    @app.errorhandler(OSError)
    def _db_error(exc: Exception) -> Response:
        fault = storage_fault(exc)
        if fault is None:  # a constraint or programming error: a bug, not the storage
            return _unexpected(exc)
        log.error("storage %s on %s %s: %s", fault, request.method, request.path, exc)
        detail, retry_after = _STORAGE_FAULTS[fault]
        return problem(503, "Storage unavailable", detail, storage=fault,
                       headers={"Retry-After": str(retry_after)})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if app.config.get("LOG_TEXT"):
            log.exception("unexpected error on %s %s", request.method, request.path)
        else:  # the message may quote what the shopper typed: the type and the stack only
            log.error("unexpected error on %s %s: %s (message left out; SHOPPER_LOG_TEXT=1 "
                      "keeps it)\n%s", request.method, request.path, type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)).rstrip())
        return problem(500, "Internal error",
                       "something went wrong on our side; nothing you sent was lost")


_SAFE = "nothing was changed and nothing you sent is half-saved; reading still works"
_STORAGE_FAULTS = {
    "full": (f"the disk holding the assistant's data is full: {_SAFE}. Please try again "
             "later.", 60),
    "read_only": (f"the assistant's data dir is read-only: {_SAFE}. Please try again later.",
                  120),
    "busy": ("the database was busy for too long: nothing was changed; send it again.", 2),
    "unavailable": ("the assistant cannot reach its data right now: nothing was changed "
                    "and nothing you sent is half-saved. Please try again shortly.", 30),
}


def _wants_problem() -> bool:
    return request.path.startswith(("/api/", "/healthz"))


# Helpers ----------------------------------------------------------------------------------
def _assistant() -> Assistant:
    svc = services()
    if svc.assistant is None:
        detail = svc.error or "the assistant is starting up (loading the catalog and model)"
        raise Unavailable(detail, retry_after=10)
    return svc.assistant


def _check_strings(data: Any) -> None:
    """Raise MalformedRequest for text that is not valid Unicode (a lone surrogate, which
    SQLite cannot store) and InvalidInput for control characters, anywhere in ``data``."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedRequest("the body holds text that is not valid Unicode "
                                       "(a lone surrogate)") from None
            if _CONTROL.search(item):
                raise InvalidInput("text may not contain control characters (tab and new "
                                   "line are fine)")


def _parsed_body() -> Any:
    """The body as strict JSON, parsed once per request; ``_NO_BODY`` when there is none.

    Raises MalformedRequest for a body that is not JSON (NaN and Infinity included, or nested
    too deeply to read) and what ``_check_strings`` raises."""
    if "json_body" in g:
        return g.json_body
    raw = request.get_data(cache=True)
    if not raw:
        data: Any = _NO_BODY
    else:
        try:
            # orjson is strict JSON: NaN, Infinity, a lone surrogate, a number too large for
            # a double and nesting deeper than 1,024 are all refused (and it reads a turn's
            # body in a tenth of the standard library's time).
            data = orjson.loads(raw)
        except (orjson.JSONDecodeError, RecursionError):
            raise MalformedRequest("the body is not valid JSON") from None
        _check_strings(data)
    g.json_body = data
    return data


def _body() -> dict[str, Any]:
    """The JSON object body. Raises MalformedRequest (400) or InvalidInput (422)."""
    data = _parsed_body()
    if data is _NO_BODY:
        raise MalformedRequest("a JSON object body is required")
    if not isinstance(data, dict):
        raise MalformedRequest("the body must be a JSON object")
    return data


@bp.after_app_request
def _hand_on_connection(response: Response) -> Response:
    """Ask the client to reconnect when admission control says this worker is crowded (see
    _Admission). ``Connection`` is a hop-by-hop header, which PEP 3333 leaves to the server;
    granian passes it on to its HTTP layer, which closes the connection after this answer."""
    if g.get("reconnect"):
        response.headers["Connection"] = "close"
    return response


@bp.before_app_request
def _check_request_body() -> None:
    """Before any view: a body over MAX_CONTENT_LENGTH is refused (413) on every path, and
    under /api/ a body, where one is sent, must be a JSON object even if the endpoint
    ignores it, so a garbled request never acts."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()
    if request.path.startswith("/api/") and request.routing_exception is None:
        data = _parsed_body()
        if data is not _NO_BODY and not isinstance(data, dict):
            raise MalformedRequest("the body must be a JSON object")


def _catalog_field(body: dict[str, Any]) -> str | None:
    """The body's optional "catalog". Raises InvalidInput when it is not a string."""
    value = body.get("catalog")
    if value is not None and not isinstance(value, str):
        raise InvalidInput('"catalog" must be a string')
    return value


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
            _agent_may_open(request.view_args["shopper_id"])
            return fn(*args, **kwargs)
        if _bearer() is None:
            raise Unauthorized("this needs the server key: Authorization: Bearer <key>")
        raise Unauthorized("these credentials do not give access to shopper data", 403)
    return wrapper  # type: ignore[return-value]


def _agent_may_open(shopper_id: str) -> None:
    """An agent reads a shopper's profile when it looks the caller up (that request is the
    look-up, and is audited); anything else about the shopper (events, preferences, a phone
    conversation or a search for them) only once it looked them up in this console session.
    Raises Unauthorized (403)."""
    agent = _agent()
    if agent is None or request.endpoint == "api.get_profile":
        return
    if not AgentStore(services().db()).looked_up(agent.get("session", ""), shopper_id):
        raise Unauthorized("an agent sees only the shoppers it looks up: look this shopper "
                           "up first", 403)


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
    # Where the conversation stands, for the stock on kiosk picks (handoff._add_stock).
    g.conversation_place = (row["store_id"], row["catalog"])
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
    if agent is not None:  # credentials, but for other conversations
        raise Unauthorized("an agent opens its own conversations and phone conversations "
                           "nobody has taken", 403)
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


def _anon_limiter() -> _RateLimiter:
    """This app's limiter of anonymous conversations (one per app, not per module)."""
    limiter: _RateLimiter = current_app.extensions.setdefault("shopper_anon_limiter",
                                                              _RateLimiter())
    return limiter


class _Admission:
    """Admission control for turns, per worker: at most ``active`` compute at once (two
    cores have room for no more), at most ``queue`` wait for a slot and none longer than
    ``wait_s``; past either bound the turn is refused at once with 503 + Retry-After and an
    honest message, so a rush never builds a queue without bound or a request that times
    out. Serve with more threads than ``active + queue`` so waiting happens here, where it is
    bounded, not in the server's accept queue, where it is not.

    Waiting turns are served first come, first served: a finished turn hands its slot to
    the one that has waited longest. (``threading.Semaphore`` is not fair: a turn arriving
    just as a slot frees takes it before the woken waiter runs, and the waiter goes to the
    back of the line again. At 200 turns/s, half the capacity, that made the p99 wait for a
    slot 0.7 s.)

    A crowded worker also hands connections on. A keep-alive connection stays with the
    worker that accepted it, so each worker is a queue of its own, and how the connections
    happened to fall decided the tail: 64 shoppers' connections split up to 59/41, and in
    one run the busier worker's p99 wait for a slot was twice the other's. Each finished
    turn adds the number of turns waiting behind it to a count; each time the count passes
    ``rebalance_after``, that answer carries ``Connection: close``, the client's next
    request opens a new connection and either worker may accept it. A worker with a longer
    queue so hands connections on more often, in proportion to its queue, and the queues
    even out. 0 turns it off; serve's default, 250, asked about one client a second to
    reconnect at 500 turns/s and 85 a second in the closed loop, where every request waits.
    (Closing once in 20 turns that ended with two or more waiting did not even them out:
    when both workers are always busy both closed at one rate, the split walked at random,
    and 64 closed-loop shoppers got 11 answers of 503, one worker having come to hold more
    connections than it lets wait. Closing after every turn that waited over 10 ms, 85 % of
    them on a slow minute, cost more in new connections than it saved.)"""

    def __init__(self, active: int, queue: int, wait_s: float,
                 rebalance_after: int = 0) -> None:
        self._rebalance_after = max(0, rebalance_after)
        self._waits_seen = 0
        self._free = max(1, active)
        self._queue = max(0, queue)
        self._wait_s = wait_s
        self._waiters: deque[threading.Lock] = deque()
        self._lock = threading.Lock()

    @staticmethod
    def _busy() -> Unavailable:
        return Unavailable("the assistant is very busy right now and did not take this turn; "
                           "nothing was lost, please send it again in a moment", retry_after=2)

    def __enter__(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            if len(self._waiters) >= self._queue:
                raise self._busy()
            ticket = threading.Lock()
            ticket.acquire()
            self._waiters.append(ticket)
        t0 = time.perf_counter()
        try:
            if ticket.acquire(timeout=self._wait_s):
                return  # handed a slot by a turn that finished
            with self._lock:
                try:
                    self._waiters.remove(ticket)
                except ValueError:
                    return  # handed a slot just as the wait ran out: it is this turn's
            raise self._busy()
        finally:
            if has_request_context():  # for Server-Timing
                request.environ[SLOT_WAIT_KEY] = time.perf_counter() - t0

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._waiters:
                if self._rebalance_after:
                    self._waits_seen += len(self._waiters)
                    if self._waits_seen >= self._rebalance_after:
                        self._waits_seen = 0
                        g.reconnect = True  # see _hand_on_connection
                self._waiters.popleft().release()  # the slot passes on, still taken
            else:
                self._free += 1


def _admission() -> _Admission:
    """This app's admission control, built from its config on first use."""
    ext = current_app.extensions
    adm: _Admission | None = ext.get("shopper_admission")
    if adm is None:
        cfg = current_app.config
        adm = ext.setdefault("shopper_admission", _Admission(
            int(cfg.get("ACTIVE_TURNS", 2)), int(cfg.get("QUEUED_TURNS", 48)),
            float(cfg.get("QUEUE_WAIT_S", 3.0)), int(cfg.get("REBALANCE_AFTER", 0))))
    return adm


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
    return openapi_document(int(current_app.config.get("MAX_CONTENT_LENGTH") or 0))


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
        if not _is_server():
            _agent_may_open(shopper_id)
    elif not _is_server() and agent is None:
        addr = request.remote_addr or "?"
        if not _anon_limiter().allow(addr, int(current_app.config["ANON_RATE_PER_MINUTE"])):
            return problem(429, "Too many conversations",
                           "too many new conversations from this address; wait a minute",
                           headers={"Retry-After": "60"})
    channel = body.get("channel", "web")
    for key in ("text", "catalog", "store_id", "product_id"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidInput(f"{key} must be a string")
    if body.get("store_id") is not None:
        _check_id(body["store_id"], "store_id")
    if body.get("text") is not None and len(body["text"]) > MAX_TEXT:
        # Checked here, before the conversation is stored, not only by the first turn.
        raise InvalidInput(f"text is too long ({len(body['text'])} characters; the limit is "
                           f"{MAX_TEXT})")
    if agent is not None and channel != "phone" and not _is_server():
        raise Unauthorized("agents open conversations on the phone channel", 403)
    with _admission():
        conv, token, turn = _assistant().start(
            channel=channel, shopper_id=shopper_id, catalog=body.get("catalog"),
            store_id=body.get("store_id"), text=body.get("text"),
            agent_id=agent["name"] if agent else None, product_id=body.get("product_id"))
    g.conversation_place = (conv.store_id, conv.catalog)
    out = {**turn, "conversation_id": conv.conversation_id, "token": token}
    resp = jsonify(out)
    resp.status_code = 201
    resp.headers["Location"] = f"/api/v1/conversations/{conv.conversation_id}"
    return resp


@bp.post("/api/v1/conversations/<conversation_id>/turns")
def add_turn(conversation_id: str) -> Any:
    _conversation_access(conversation_id)
    body = _body()
    with _admission():
        return _assistant().turn(conversation_id, body)


@bp.get("/api/v1/conversations/<conversation_id>")
def get_conversation(conversation_id: str) -> Any:
    _conversation_access(conversation_id)
    return _assistant().transcript(conversation_id)


# Shoppers ---------------------------------------------------------------------------------
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,63}$")


def _email(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.match(value.strip()):
        raise InvalidInput('"email" must be an e-mail address such as ana@example.com')
    return value.strip()


@bp.put("/api/v1/shoppers/<shopper_id>/contact")
@require_server
def put_contact(shopper_id: str) -> Any:
    """The shop's backend tells the e-mail of a shopper, so an agent can find them by it."""
    _check_id(shopper_id, "shopper_id")
    email = _email(_body().get("email"))
    services().store().set_email(shopper_id, email)
    return {"shopper_id": shopper_id, "email": email.casefold()}


@bp.get("/api/v1/shoppers")
def find_shopper() -> Any:
    """Find a shopper by the e-mail the shop gave: the server key, or an agent (audited)."""
    if not (_is_server() or _agent() is not None):
        if _bearer() is None:
            raise Unauthorized("this needs the server key: Authorization: Bearer <key>")
        raise Unauthorized("these credentials do not give access to shopper data", 403)
    email = _email(request.args.get("email"))
    shopper_id = services().store().shopper_by_email(email)
    if shopper_id is None:
        raise NotFound("no shopper has that e-mail")
    return {"shopper_id": shopper_id}


@bp.get("/api/v1/shoppers/<shopper_id>/profile")
@require_server
def get_profile(shopper_id: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    assistant = _assistant()
    prof = assistant.profile(shopper_id, assistant.catalog(request.args.get("catalog")))
    return prof


def _pref_fields(body: dict[str, Any], need_polarity: bool) -> tuple[str, str, str]:
    attr, value = body.get("attribute"), body.get("value")
    if not isinstance(attr, str) or not attr or not isinstance(value, str) or not value:
        raise InvalidInput('"attribute" and "value" must be non-empty strings')
    polarity = body.get("polarity", "want")
    if need_polarity and polarity not in POLARITIES:
        raise InvalidInput('"polarity" must be "want" or "avoid"')
    cat = _assistant().catalog(_catalog_field(body))
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
    if agent is not None and not (isinstance(said, str) and said.strip() and len(said) <= 500):
        raise InvalidInput("an agent records a preference only with the caller's own words "
                           'in "said" (at most 500 characters)')
    evidence = (f"the caller said “{said}” to {agent['name']}" if agent else
                "you set it in your profile") + f" on {time.strftime('%Y-%m-%d')}"
    with store.transaction():
        store.put_preference(shopper_id, attr, value, polarity, evidence=evidence,
                             said=said or "")
    prof = _assistant().profile(shopper_id)
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
    cat = assistant.catalog(_catalog_field(body))
    product_id = body.get("product_id")
    query = body.get("query")
    if any(v is not None and not isinstance(v, str) for v in (product_id, query)):
        raise InvalidInput('"product_id" and "query" must be strings')
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
            when = parse_time(at)
            in_utc = when.astimezone(UTC)
        except (ValueError, OverflowError):
            raise InvalidInput(f'"at" is not an ISO 8601 time: {at!r}') from None
        if not _EARLIEST <= in_utc <= datetime.now(UTC) + timedelta(days=1):
            raise InvalidInput(f'"at" must lie between 1970 and now: {at!r}')
        at = when.isoformat(timespec="seconds")
    recipient = body.get("recipient")
    if recipient is not None and (not isinstance(recipient, str) or len(recipient) > 64):
        raise InvalidInput('"recipient" must be a string of at most 64 characters')
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
    # Checked as sent, not only once normalised: "'; DROP TABLE x" is refused, not kept as
    # "drop table x".
    key = recipient_key(name) if _RECIPIENT.match(name) else None
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
            isinstance(k, str) and k and len(k) <= 64 and isinstance(v, str) and v
            and len(v) <= 100 for k, v in attrs.items()) or len(attrs) > 30:
        raise InvalidInput('"attributes" must map at most 30 attribute names (64 characters '
                           'at most) to non-empty strings of at most 100 characters')
    if text is not None and (not isinstance(text, str) or len(text) > 500):
        raise InvalidInput('"text" must be a string of at most 500 characters')
    if not isinstance(note, str) or len(note) > 500:
        raise InvalidInput('"note" must be a string of at most 500 characters')
    assistant = _assistant()
    cat = assistant.catalog(_catalog_field(body))
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
    return {"shopper_id": shopper_id, "profile": prof, "tables": data}


@bp.delete("/api/v1/shoppers/<shopper_id>")
@require_server
def forget_shopper(shopper_id: str) -> Any:
    _check_id(shopper_id, "shopper_id")
    store = services().store()
    agents = AgentStore(store.db)
    with store.transaction():
        counts = store.forget_shopper(shopper_id)
        # The audit keeps that a shopper was forgotten, never who (see README, Privacy).
        agents.audit("server", "shopper.forget", detail={"rows": sum(counts.values())})
    if not store.scrub():
        log.warning("forget: readers kept the write-ahead log from being truncated; it is "
                    "overwritten as the server writes")
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
    if _CONTROL.search(q):
        raise InvalidInput('"q" may not contain control characters')
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
        if not _is_server():
            _agent_may_open(shopper_id)
    with _admission():
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
