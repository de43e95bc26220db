"""The agent console at ``/console``: log-in, sessions, CSRF, and the audit of every look-up.

The console page itself (``static/console.js``) works only through the public API. This
module makes that possible for a logged-in agent: a ``before_app_request`` reads the session
cookie on ``/api/`` paths, checks the per-session CSRF token (``X-CSRF-Token``) on every
state-changing request and sets ``flask.g.agent``, which web/api.py reads. Agents may use only
the API calls the console needs; every profile look-up and change is written to the audit log
(``shopper audit``). Accounts are made with ``shopper agents add NAME``.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
)

from assistant.agents import AgentStore

from . import services
from .api import problem

__all__ = ["COOKIE", "bp"]

bp = Blueprint("console", __name__)

COOKIE = "shopper_console"
LOGIN_COOKIE = "shopper_console_login"
SAFE = ("GET", "HEAD", "OPTIONS")
LOGIN_WINDOW_MINUTES = 15
#: The API endpoints an agent may call, with the methods allowed.
AGENT_ENDPOINTS = {
    "api.get_profile": {"GET"},
    "api.find_shopper": {"GET"},
    "api.put_preference": {"PUT"},
    "api.delete_preference": {"DELETE"},
    "doors.list_events": {"GET"},
    "api.create_conversation": {"POST"},
    "api.add_turn": {"POST"},
    "api.get_conversation": {"GET"},
    "doors.claim_handoff": {"POST"},
    "api.search": {"GET"},
    "api.get_product": {"GET"},
    "api.healthz": {"GET"},
    "api.openapi": {"GET"},
}
_SHOPPER_PATH = re.compile(r"^/api/v1/shoppers/([^/]+)/")


def _agents() -> AgentStore:
    return AgentStore(services().db())


def _idle_minutes() -> float:
    return float(current_app.config.get("CONSOLE_IDLE_MINUTES", 30))


def _session() -> dict[str, Any] | None:
    sid = request.cookies.get(COOKIE)
    if not sid:
        return None
    return _agents().session(sid, idle_minutes=_idle_minutes())


def _set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        secure=request.is_secure, samesite="Strict")


# Agents on the API ----------------------------------------------------------------------------
@bp.before_app_request
def _load_agent() -> Response | None:
    """Set g.agent for an API request carrying a live console session (and its CSRF token
    when the request changes something)."""
    if not request.path.startswith("/api/") or not request.cookies.get(COOKIE) \
            or request.endpoint is None:
        return None
    if request.headers.get("Authorization"):
        return None  # a token or the server key speaks for itself
    session = _session()
    if session is None:
        return None
    if request.method not in SAFE:
        sent = request.headers.get("X-CSRF-Token")
        if sent is None:
            return None  # not the console (e.g. the widget on the same site): no agent rights
        if not hmac.compare_digest(sent.encode(), session["csrf"].encode()):
            return problem(403, "Forbidden", "the console's CSRF token is missing or wrong; "
                           "reload the console page")
    allowed = AGENT_ENDPOINTS.get(request.endpoint or "")
    if allowed is None or request.method not in allowed:
        return problem(403, "Forbidden", "agents may not do this from the console")
    g.agent = {"name": session["name"], "is_admin": session["is_admin"],
               "session": session["key"]}
    return None


@bp.after_app_request
def _audit(response: Response) -> Response:
    """Write every profile look-up and change an agent makes to the audit log."""
    agent = g.get("agent")
    if agent is None or response.status_code >= 400:
        return response
    endpoint = request.endpoint or ""
    match = _SHOPPER_PATH.match(request.path)
    shopper_id = match.group(1) if match else None
    detail: dict[str, Any] = {"status": response.status_code}
    action = None
    conversation_id = None
    if endpoint == "api.get_profile":
        action = "profile.view"
        if shopper_id:
            _agents().note_lookup(agent["session"], shopper_id)
    elif endpoint == "api.find_shopper":
        action = "shopper.find"  # the e-mail itself is not written to the log
        shopper_id = (response.get_json(silent=True) or {}).get("shopper_id")
    elif endpoint == "doors.list_events":
        action = "events.view"
    elif endpoint in ("api.put_preference", "api.delete_preference"):
        action = "preference.set" if endpoint == "api.put_preference" else "preference.remove"
        body = request.get_json(silent=True, force=True) or {}
        detail.update({k: body.get(k) for k in ("attribute", "value", "polarity", "said")
                       if isinstance(body, dict) and body.get(k) is not None})
    elif endpoint in ("api.create_conversation", "api.add_turn", "api.get_conversation"):
        data = response.get_json(silent=True) or {}
        conversation_id = (request.view_args or {}).get("conversation_id") or \
            data.get("conversation_id")
        if conversation_id:
            row = services().store().conversation_row(conversation_id)
            shopper_id = row["shopper_id"]
        if shopper_id:  # a conversation that reads or changes a shopper's profile
            action = {"api.create_conversation": "conversation.start",
                      "api.add_turn": "conversation.turn",
                      "api.get_conversation": "conversation.view"}[endpoint]
    if action:
        _agents().audit(agent["name"], action, shopper_id=shopper_id,
                        conversation_id=conversation_id, detail=detail)
    return response


# Pages --------------------------------------------------------------------------------------
@bp.get("/console")
def console() -> Response:
    """The console for a logged-in agent; anyone else is sent to the log-in page."""
    session = _session()
    if session is None:
        return make_response(redirect("/console/login", code=303))
    return make_response(render_template(
        "console/index.html", agent=session["name"], is_admin=session["is_admin"],
        csrf=session["csrf"], idle_minutes=_idle_minutes()))


def _login_page(status: int = 200, error: str | None = None,
                retry_after: int | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    resp = make_response(render_template("console/login.html", csrf=token, error=error,
                                         bye=request.args.get("bye") == "1"), status)
    _set_cookie(resp, LOGIN_COOKIE, token, 3600)
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


@bp.get("/console/login")
def login_form() -> Response:
    if _session() is not None:
        return make_response(redirect("/console", code=303))
    return _login_page()


@bp.post("/console/login")
def login() -> Response:
    """Check the form's CSRF token, the rate limit and the password; start a session."""
    form_token = request.form.get("csrf_token", "")
    cookie_token = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie_token or not hmac.compare_digest(form_token.encode(), cookie_token.encode()):
        return _login_page(400, "The form had expired. Please try again.")
    name = request.form.get("name", "").strip()[:64]
    password = request.form.get("password", "")
    agents = _agents()
    limit = int(current_app.config.get("CONSOLE_LOGIN_ATTEMPTS", 5))
    keys = (f"login:{name.casefold()}", f"login-ip:{request.remote_addr or '?'}")
    if agents.count(keys[0], LOGIN_WINDOW_MINUTES) >= limit or \
            agents.count(keys[1], LOGIN_WINDOW_MINUTES) >= limit * 4:
        agents.audit(name or None, "login.throttled", detail={"ip": request.remote_addr})
        return _login_page(429, f"Too many failed log-ins. Wait {LOGIN_WINDOW_MINUTES} "
                           "minutes and try again.", retry_after=LOGIN_WINDOW_MINUTES * 60)
    agent = agents.check_password(name, password) if name and password else None
    if agent is None:
        for key in keys:
            agents.note(key)
        agents.audit(name or None, "login.failed", detail={"ip": request.remote_addr})
        return _login_page(401, "That name and password do not match.")
    agents.clear(keys[0])
    session_id, _ = agents.create_session(
        agent["name"], idle_minutes=_idle_minutes(),
        absolute_hours=float(current_app.config.get("CONSOLE_SESSION_HOURS", 12)))
    agents.audit(agent["name"], "login", detail={"ip": request.remote_addr})
    resp = make_response(redirect("/console", code=303))
    _set_cookie(resp, COOKIE, session_id, None)
    resp.delete_cookie(LOGIN_COOKIE, path="/")
    return resp


@bp.post("/console/logout")
def logout() -> Response:
    """End the session (the form carries the session's CSRF token)."""
    session = _session()
    sid = request.cookies.get(COOKIE, "")
    if session is not None:
        sent = request.form.get("csrf_token", "")
        if not hmac.compare_digest(sent.encode(), session["csrf"].encode()):
            return make_response(("The form had expired: reload the console.", 400))
        _agents().end_session(sid)
        _agents().audit(session["name"], "logout")
    resp = make_response(redirect("/console/login?bye=1", code=303))
    resp.delete_cookie(COOKIE, path="/")
    return resp
