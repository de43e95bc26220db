"""SQLite storage through sqlite-utils: conversations, turns, preferences, events, audit.

``Store`` receives a ``sqlite_utils.Database`` and never opens a path itself; ``open_db``
opens one in WAL mode with a busy timeout. The schema lives in ``MIGRATIONS``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import Conflict, ConversationNotFound
from .machine import Conversation

__all__ = ["MIGRATIONS", "SHOPPER_TABLES", "Store", "now_iso", "open_db"]

MIGRATIONS = sqlite_utils.Migrations("personal-shopper")

# Every table that holds rows about a shopper, with the column naming them.
SHOPPER_TABLES = {
    "conversations": "shopper_id",
    "preferences": "shopper_id",
    "events": "shopper_id",
    "recipients": "shopper_id",
    "link_codes": "shopper_id",
}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@MIGRATIONS()
def m001_create_conversations(db: sqlite_utils.Database) -> None:
    db["conversations"].create({
        "conversation_id": str, "token_hash": str, "channel": str, "shopper_id": str,
        "catalog": str, "store_id": str, "state": str, "ctx": str, "version": int,
        "created_at": str, "updated_at": str, "agent_id": str, "handoff_code": str,
    }, pk="conversation_id", not_null={"token_hash", "channel", "catalog", "state", "ctx"})
    db["conversations"].create_index(["shopper_id"])
    db["conversations"].create_index(["handoff_code"])
    db["turns"].create({
        "conversation_id": str, "seq": int, "at": str, "request": str, "response": str,
    }, pk=("conversation_id", "seq"), foreign_keys=[("conversation_id", "conversations")])


@MIGRATIONS()
def m002_create_preferences(db: sqlite_utils.Database) -> None:
    db["preferences"].create({
        "shopper_id": str, "attribute": str, "value": str, "polarity": str, "source": str,
        "strength": float, "evidence": str, "said": str, "conversation_id": str,
        "created_at": str, "updated_at": str,
    }, pk=("shopper_id", "attribute", "value"), not_null={"polarity", "source"})


@MIGRATIONS()
def m003_create_events(db: sqlite_utils.Database) -> None:
    db["events"].create({
        "id": int, "shopper_id": str, "type": str, "product_id": str, "catalog": str,
        "query": str, "at": str, "conversation_id": str, "recipient": str,
    }, pk="id")
    db["events"].create_index(["shopper_id", "at"])


@MIGRATIONS()
def m004_create_recipients_and_codes(db: sqlite_utils.Database) -> None:
    db["recipients"].create({
        "shopper_id": str, "name": str, "attributes": str, "note": str, "updated_at": str,
    }, pk=("shopper_id", "name"))
    db["link_codes"].create({
        "code": str, "shopper_id": str, "expires_at": str,
    }, pk="code")


@MIGRATIONS()
def m005_conversations_looking_at(db: sqlite_utils.Database) -> None:
    # The product a shopper is looking at when a conversation starts: never one of its picks.
    db["conversations"].add_column("looking_at", str)


def open_db(path: str | Path) -> sqlite_utils.Database:
    """Open the database in WAL mode (readers never block the writer), apply migrations."""
    conn = sqlite3.connect(str(path), timeout=15, check_same_thread=False,
                           isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=15000")
    conn.execute("PRAGMA foreign_keys=ON")
    db = sqlite_utils.Database(conn)
    if MIGRATIONS.pending(db):
        with _immediate(db):
            pass
        MIGRATIONS.apply(db)
    return db


@contextmanager
def _immediate(db: sqlite_utils.Database) -> Iterator[None]:
    """A write transaction taken up front, so two writers queue instead of deadlocking."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")


def _conversation(row: dict[str, Any]) -> Conversation:
    return Conversation(
        conversation_id=row["conversation_id"], channel=row["channel"], catalog=row["catalog"],
        shopper_id=row["shopper_id"], store_id=row["store_id"], state=row["state"],
        version=row["version"], created_at=row["created_at"], agent_id=row["agent_id"],
        ctx=json.loads(row["ctx"]),
    )


class Store:
    """Reads and writes everything the assistant keeps. Each write is one short transaction."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with _immediate(self.db):
            yield

    # Conversations ------------------------------------------------------------------------
    def create_conversation(self, conv: Conversation, token_hash: str) -> None:
        self.db["conversations"].insert({
            "conversation_id": conv.conversation_id, "token_hash": token_hash,
            "channel": conv.channel, "shopper_id": conv.shopper_id, "catalog": conv.catalog,
            "store_id": conv.store_id, "state": conv.state, "ctx": json.dumps(conv.ctx),
            "version": conv.version, "created_at": conv.created_at,
            "updated_at": conv.created_at, "agent_id": conv.agent_id, "handoff_code": None,
        })

    def conversation_row(self, conversation_id: str) -> dict[str, Any]:
        try:
            return dict(self.db["conversations"].get(conversation_id))
        except sqlite_utils.db.NotFoundError:
            raise ConversationNotFound(
                f"there is no conversation {conversation_id!r}") from None

    def load_conversation(self, conversation_id: str) -> Conversation:
        """Raises ConversationNotFound."""
        return _conversation(self.conversation_row(conversation_id))

    def save_conversation(self, conv: Conversation, expected_version: int) -> None:
        """Write the new state if nobody else wrote since it was read; raises Conflict."""
        cur = self.db.execute(
            "UPDATE conversations SET state = ?, ctx = ?, version = ?, updated_at = ?, "
            "shopper_id = ?, agent_id = ? WHERE conversation_id = ? AND version = ?",
            [conv.state, json.dumps(conv.ctx), conv.version, now_iso(), conv.shopper_id,
             conv.agent_id, conv.conversation_id, expected_version])
        if cur.rowcount != 1:
            raise Conflict("another turn of this conversation was answered at the same time; "
                           "send this one again")

    def add_turn(self, conversation_id: str, seq: int, request: dict[str, Any],
                 response: dict[str, Any]) -> None:
        self.db["turns"].insert({
            "conversation_id": conversation_id, "seq": seq, "at": now_iso(),
            "request": json.dumps(request), "response": json.dumps(response),
        })

    def turns(self, conversation_id: str) -> list[dict[str, Any]]:
        return [
            {"seq": r["seq"], "at": r["at"], "request": json.loads(r["request"]),
             **json.loads(r["response"])}
            for r in self.db["turns"].rows_where("conversation_id = ?", [conversation_id],
                                                 order_by="seq")
        ]

    def set_handoff_code(self, conversation_id: str, code: str | None) -> None:
        self.db["conversations"].update(conversation_id, {"handoff_code": code})

    def conversation_by_code(self, code: str) -> str | None:
        rows = list(self.db["conversations"].rows_where("handoff_code = ?", [code], limit=1))
        return rows[0]["conversation_id"] if rows else None

    # Preferences --------------------------------------------------------------------------
    def stated_preferences(self, shopper_id: str) -> list[dict[str, Any]]:
        return list(self.db["preferences"].rows_where("shopper_id = ?", [shopper_id],
                                                      order_by="updated_at"))

    def put_preference(self, shopper_id: str, attribute: str, value: str, polarity: str, *,
                       source: str = "stated", evidence: str = "", said: str = "",
                       conversation_id: str | None = None, strength: float = 1.0) -> None:
        now = now_iso()
        self.db["preferences"].upsert({
            "shopper_id": shopper_id, "attribute": attribute, "value": value,
            "polarity": polarity, "source": source, "strength": strength,
            "evidence": evidence, "said": said, "conversation_id": conversation_id,
            "created_at": now, "updated_at": now,
        }, pk=("shopper_id", "attribute", "value"))

    def delete_preference(self, shopper_id: str, attribute: str, value: str) -> int:
        cur = self.db.execute(
            "DELETE FROM preferences WHERE shopper_id = ? AND attribute = ? AND value = ?",
            [shopper_id, attribute, value])
        return cur.rowcount

    # Events -------------------------------------------------------------------------------
    def add_event(self, shopper_id: str, type_: str, *, product_id: str | None = None,
                  catalog: str | None = None, query: str | None = None,
                  at: str | None = None, conversation_id: str | None = None,
                  recipient: str | None = None) -> None:
        self.db["events"].insert({
            "shopper_id": shopper_id, "type": type_, "product_id": product_id,
            "catalog": catalog, "query": query, "at": at or now_iso(),
            "conversation_id": conversation_id, "recipient": recipient,
        })

    def events(self, shopper_id: str) -> list[dict[str, Any]]:
        return list(self.db["events"].rows_where("shopper_id = ?", [shopper_id],
                                                 order_by="at"))

    # Recipients ---------------------------------------------------------------------------
    def recipients(self, shopper_id: str) -> list[dict[str, Any]]:
        return [{**r, "attributes": json.loads(r["attributes"] or "{}")}
                for r in self.db["recipients"].rows_where("shopper_id = ?", [shopper_id])]

    def put_recipient(self, shopper_id: str, name: str, attributes: dict[str, str],
                      note: str = "") -> None:
        self.db["recipients"].upsert({
            "shopper_id": shopper_id, "name": name, "attributes": json.dumps(attributes),
            "note": note, "updated_at": now_iso()}, pk=("shopper_id", "name"))

    def recipient(self, shopper_id: str, name: str) -> dict[str, Any] | None:
        """One saved recipient with its attributes decoded, or None."""
        rows = list(self.db["recipients"].rows_where("shopper_id = ? AND name = ?",
                                                     [shopper_id, name], limit=1))
        return {**rows[0], "attributes": json.loads(rows[0]["attributes"] or "{}")} \
            if rows else None

    def delete_recipient(self, shopper_id: str, name: str) -> int:
        return self.db.execute("DELETE FROM recipients WHERE shopper_id = ? AND name = ?",
                               [shopper_id, name]).rowcount

    # What a conversation's shopper is looking at ------------------------------------------
    def set_looking_at(self, conversation_id: str, product_id: str | None) -> None:
        self.db.execute("UPDATE conversations SET looking_at = ? WHERE conversation_id = ?",
                        [product_id, conversation_id])

    def looking_at(self, conversation_id: str) -> str | None:
        row = self.db.execute("SELECT looking_at FROM conversations WHERE conversation_id = ?",
                              [conversation_id]).fetchone()
        return row[0] if row else None

    # Everything about one shopper ---------------------------------------------------------
    def export_shopper(self, shopper_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for table, column in SHOPPER_TABLES.items():
            out[table] = list(self.db[table].rows_where(f"{column} = ?", [shopper_id]))
        conv_ids = [c["conversation_id"] for c in out["conversations"]]
        for c in out["conversations"]:
            c.pop("token_hash", None)
            c["ctx"] = json.loads(c["ctx"])
        out["turns"] = [t for cid in conv_ids for t in self.turns(cid)]
        return out

    def forget_shopper(self, shopper_id: str) -> dict[str, int]:
        """Delete every row about the shopper from every table; returns rows per table."""
        counts: dict[str, int] = {}
        conv_ids = [r["conversation_id"] for r in self.db["conversations"].rows_where(
            "shopper_id = ?", [shopper_id], select="conversation_id")]
        counts["turns"] = 0
        for cid in conv_ids:
            counts["turns"] += self.db.execute(
                "DELETE FROM turns WHERE conversation_id = ?", [cid]).rowcount
        for table, column in SHOPPER_TABLES.items():
            counts[table] = self.db.execute(
                f"DELETE FROM [{table}] WHERE [{column}] = ?", [shopper_id]).rowcount
        return counts

    def shopper_known(self, shopper_id: str) -> bool:
        return any(
            self.db.execute(f"SELECT 1 FROM [{t}] WHERE [{c}] = ? LIMIT 1",
                            [shopper_id]).fetchone()
            for t, c in SHOPPER_TABLES.items())

    # Doors: linking a kiosk to a profile, handing a conversation to an agent --------------
    def create_link_code(self, shopper_id: str, code: str, expires_at: str) -> None:
        """Keep a one-time code that links a kiosk conversation to the shopper."""
        self.db.execute("DELETE FROM link_codes WHERE expires_at < ?", [now_iso()])
        self.db["link_codes"].insert({"code": code, "shopper_id": shopper_id,
                                      "expires_at": expires_at}, replace=True)

    def use_link_code(self, code: str) -> str | None:
        """The shopper a live code names, deleting the code (it works once); else None."""
        rows = list(self.db["link_codes"].rows_where("code = ?", [code], limit=1))
        if not rows:
            return None
        self.db.execute("DELETE FROM link_codes WHERE code = ?", [code])
        return rows[0]["shopper_id"] if rows[0]["expires_at"] >= now_iso() else None

    def set_conversation_shopper(self, conversation_id: str, shopper_id: str | None) -> None:
        """Attach or detach a shopper; bumps the version so a turn in flight retries."""
        self.db.execute("UPDATE conversations SET shopper_id = ?, version = version + 1, "
                        "updated_at = ? WHERE conversation_id = ?",
                        [shopper_id, now_iso(), conversation_id])

    def claim_conversation(self, conversation_id: str, agent_id: str) -> None:
        """An agent takes over a handed-off conversation; its hand-off code is spent."""
        self.db.execute("UPDATE conversations SET agent_id = ?, handoff_code = NULL, "
                        "version = version + 1, updated_at = ? WHERE conversation_id = ?",
                        [agent_id, now_iso(), conversation_id])
