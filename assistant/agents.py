"""Support agents: accounts, console sessions, throttling and the audit log, in SQLite.

The schema is its own migration set (``sqlite_utils.Migrations("personal-shopper-console")``)
kept apart from the shopper tables; ``AgentStore`` applies it on first use of a connection.
Passwords are hashed with scrypt (``hashlib.scrypt``) and a random salt per password;
session ids and CSRF tokens are random, and only a session id's SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from .errors import InvalidInput

__all__ = ["AGENT_MIGRATIONS", "AgentStore", "hash_password", "verify_password"]

AGENT_MIGRATIONS = sqlite_utils.Migrations("personal-shopper-console")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@\-]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@AGENT_MIGRATIONS()
def m001_create_agents(db: sqlite_utils.Database) -> None:
    db.table("agents").create({"name": str, "password_hash": str, "is_admin": int,
                         "created_at": str}, pk="name", not_null={"password_hash"})
    db.table("agent_sessions").create({"id_hash": str, "agent": str, "csrf": str, "created_at": str,
                                 "expires_at": str, "absolute_expires_at": str},
                                pk="id_hash")
    db.table("throttle").create({"id": int, "key": str, "at": str}, pk="id")
    db.table("throttle").create_index(["key", "at"])
    db.table("audit").create({"id": int, "at": str, "agent": str, "action": str, "shopper_id": str,
                        "conversation_id": str, "detail": str}, pk="id")
    db.table("audit").create_index(["shopper_id"])
    db.table("audit").create_index(["agent"])


@AGENT_MIGRATIONS()
def m002_create_agent_lookups(db: sqlite_utils.Database) -> None:
    # The shoppers each console session looked up: an agent sees only those.
    db.table("agent_lookups").create({"session": str, "shopper_id": str, "at": str},
                                     pk=("session", "shopper_id"))


# How far the idle expiry must move before it is written again.
SESSION_SLIDE_STEP = timedelta(minutes=1)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def hash_password(password: str) -> str:
    """An scrypt hash with a fresh 16-byte salt: ``scrypt$n$r$p$salt$hash`` (base64)."""
    if len(password) < 8:
        raise InvalidInput("a password needs at least 8 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return (f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}$"
            f"{b64(salt).decode()}${b64(digest).decode()}")


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the stored scrypt hash (constant-time compare)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def _sid_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class AgentStore:
    """Agent accounts, sessions, throttling counters and the audit log."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        if not getattr(db, "_console_schema", False):
            try:
                if AGENT_MIGRATIONS.pending(db):
                    AGENT_MIGRATIONS.apply(db)
            except sqlite3.OperationalError:
                # Another worker applied them at the same moment: fine if nothing is left.
                time.sleep(0.2)
                if AGENT_MIGRATIONS.pending(db):
                    raise
            db._console_schema = True  # type: ignore[attr-defined]

    # Accounts ------------------------------------------------------------------------------
    def add_agent(self, name: str, password: str, *, is_admin: bool = False) -> None:
        """Create or replace an account. Raises InvalidInput for a bad name or password."""
        if not _NAME.match(name):
            raise InvalidInput("an agent name is 1-64 letters, digits or . _ @ -")
        self.db.table("agents").upsert({"name": name, "password_hash": hash_password(password),
                                  "is_admin": int(is_admin), "created_at": _iso(_now())},
                                 pk="name")

    def remove_agent(self, name: str) -> bool:
        self.db.execute("DELETE FROM agent_sessions WHERE agent = ?", [name])
        return self.db.execute("DELETE FROM agents WHERE name = ?", [name]).rowcount > 0

    def agents(self) -> list[dict[str, Any]]:
        return [{"name": r["name"], "is_admin": bool(r["is_admin"]),
                 "created_at": r["created_at"]}
                for r in self.db.table("agents").rows_where(order_by="name")]

    def agent(self, name: str) -> dict[str, Any] | None:
        rows = list(self.db.table("agents").rows_where("name = ?", [name], limit=1))
        return rows[0] if rows else None

    def check_password(self, name: str, password: str) -> dict[str, Any] | None:
        """The agent when the password is right, else None (the work is the same either way)."""
        row = self.agent(name)
        stored = row["password_hash"] if row else _DUMMY_HASH
        ok = verify_password(password, stored)
        return {"name": row["name"], "is_admin": bool(row["is_admin"])} if row and ok else None

    # Sessions ------------------------------------------------------------------------------
    def create_session(self, name: str, *, idle_minutes: float,
                       absolute_hours: float) -> tuple[str, str]:
        """A new session for the agent; returns (session id for the cookie, CSRF token)."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = _now()
        self.db.table("agent_sessions").insert({
            "id_hash": _sid_hash(session_id), "agent": name, "csrf": csrf,
            "created_at": _iso(now), "expires_at": _iso(now + timedelta(minutes=idle_minutes)),
            "absolute_expires_at": _iso(now + timedelta(hours=absolute_hours))})
        self.db.execute("DELETE FROM agent_sessions WHERE absolute_expires_at < ?",
                        [_iso(now)])
        self.db.execute("DELETE FROM agent_lookups WHERE session NOT IN "
                        "(SELECT id_hash FROM agent_sessions)")
        return session_id, csrf

    def session(self, session_id: str, *, idle_minutes: float) -> dict[str, Any] | None:
        """The live session for this id (sliding its idle expiry), or None when it is
        unknown, idle for too long or past its absolute lifetime."""
        key = _sid_hash(session_id)
        rows = list(self.db.table("agent_sessions").rows_where("id_hash = ?", [key], limit=1))
        if not rows:
            return None
        row = rows[0]
        now = _now()
        if row["expires_at"] <= _iso(now) or row["absolute_expires_at"] <= _iso(now):
            self.db.execute("DELETE FROM agent_sessions WHERE id_hash = ?", [key])
            return None
        agent = self.agent(row["agent"])
        if agent is None:
            return None
        # The idle expiry slides in steps of a minute, not at every request: a console
        # request writes nothing unless a minute has passed, and a request the server
        # refuses (a wrong CSRF token) a moment after sign-in leaves no trace.
        new_expiry = now + timedelta(minutes=idle_minutes)
        if _iso(new_expiry - SESSION_SLIDE_STEP) > row["expires_at"]:
            self.db.execute("UPDATE agent_sessions SET expires_at = ? WHERE id_hash = ?",
                            [_iso(new_expiry), key])
        return {"name": agent["name"], "is_admin": bool(agent["is_admin"]),
                "csrf": row["csrf"], "key": key}

    def end_session(self, session_id: str) -> None:
        self.db.execute("DELETE FROM agent_sessions WHERE id_hash = ?", [_sid_hash(session_id)])

    def note_lookup(self, session_key: str, shopper_id: str) -> None:
        """Remember that the session (its ``key``) looked the shopper up."""
        self.db.table("agent_lookups").upsert(
            {"session": session_key, "shopper_id": shopper_id, "at": _iso(_now())},
            pk=("session", "shopper_id"))

    def looked_up(self, session_key: str, shopper_id: str) -> bool:
        """Whether this session looked the shopper up (an agent sees only those)."""
        row = self.db.execute("SELECT 1 FROM agent_lookups WHERE session = ? AND "
                              "shopper_id = ?", [session_key, shopper_id]).fetchone()
        return row is not None

    # Throttling (shared by every worker through the database) -----------------------------
    def note(self, key: str) -> None:
        self.db.table("throttle").insert({"key": key, "at": _iso(_now())})

    def count(self, key: str, minutes: float) -> int:
        since = _iso(_now() - timedelta(minutes=minutes))
        self.db.execute("DELETE FROM throttle WHERE at < ?",
                        [_iso(_now() - timedelta(days=1))])
        row = self.db.execute("SELECT count(*) FROM throttle WHERE key = ? AND at >= ?",
                              [key, since]).fetchone()
        return int(row[0])

    def clear(self, key: str) -> None:
        self.db.execute("DELETE FROM throttle WHERE key = ?", [key])

    # Audit ---------------------------------------------------------------------------------
    def audit(self, agent: str | None, action: str, *, shopper_id: str | None = None,
              conversation_id: str | None = None, detail: dict[str, Any] | None = None) -> None:
        self.db.table("audit").insert({"at": _iso(_now()), "agent": agent, "action": action,
                                 "shopper_id": shopper_id, "conversation_id": conversation_id,
                                 "detail": json.dumps(detail or {}, ensure_ascii=False)})

    def audit_log(self, *, shopper_id: str | None = None, agent: str | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
        """Audit entries, newest first, optionally for one shopper or one agent."""
        where, args = [], []
        if shopper_id:
            where.append("shopper_id = ?")
            args.append(shopper_id)
        if agent:
            where.append("agent = ?")
            args.append(agent)
        rows = self.db.table("audit").rows_where(" AND ".join(where) or None, args,
                                           order_by="id desc", limit=limit)
        return [{**r, "detail": json.loads(r["detail"] or "{}")} for r in rows]


_DUMMY_HASH = ("scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
