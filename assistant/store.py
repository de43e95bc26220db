"""SQLite storage through sqlite-utils: conversations, turns, preferences, events, audit.

``Store`` receives a ``sqlite_utils.Database`` and never opens a path itself; ``open_db``
opens one in WAL mode with a busy timeout. The schema lives in ``MIGRATIONS``.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlite_utils

from . import jsoncodec
from .errors import Conflict, ConversationNotFound
from .machine import Conversation

__all__ = ["CHECKPOINT_INTERVAL_S", "MIGRATIONS", "SHOPPER_TABLES", "Store", "WalCheckpointer",
           "now_iso", "open_db", "storage_fault"]

log = logging.getLogger(__name__)

MIGRATIONS = sqlite_utils.Migrations("personal-shopper")

# Every table that holds rows about a shopper, with the column naming them.
SHOPPER_TABLES = {
    "conversations": "shopper_id",
    "preferences": "shopper_id",
    "events": "shopper_id",
    "recipients": "shopper_id",
    "link_codes": "shopper_id",
    "shopper_contacts": "shopper_id",
}


_NOW: tuple[int, str] = (0, "")


def now_iso() -> str:
    """The current UTC time to the second, ISO 8601 (made once a second: a turn asks 5 times)."""
    global _NOW
    second = int(time.time())
    if _NOW[0] != second:
        _NOW = (second, datetime.fromtimestamp(second, UTC).isoformat())
    return _NOW[1]


@MIGRATIONS()
def m001_create_conversations(db: sqlite_utils.Database) -> None:
    db.table("conversations").create({
        "conversation_id": str, "token_hash": str, "channel": str, "shopper_id": str,
        "catalog": str, "store_id": str, "state": str, "ctx": str, "version": int,
        "created_at": str, "updated_at": str, "agent_id": str, "handoff_code": str,
    }, pk="conversation_id", not_null={"token_hash", "channel", "catalog", "state", "ctx"})
    db.table("conversations").create_index(["shopper_id"])
    db.table("conversations").create_index(["handoff_code"])
    db.table("turns").create({
        "conversation_id": str, "seq": int, "at": str, "request": str, "response": str,
    }, pk=("conversation_id", "seq"), foreign_keys=[("conversation_id", "conversations")])


@MIGRATIONS()
def m002_create_preferences(db: sqlite_utils.Database) -> None:
    db.table("preferences").create({
        "shopper_id": str, "attribute": str, "value": str, "polarity": str, "source": str,
        "strength": float, "evidence": str, "said": str, "conversation_id": str,
        "created_at": str, "updated_at": str,
    }, pk=("shopper_id", "attribute", "value"), not_null={"polarity", "source"})


@MIGRATIONS()
def m003_create_events(db: sqlite_utils.Database) -> None:
    db.table("events").create({
        "id": int, "shopper_id": str, "type": str, "product_id": str, "catalog": str,
        "query": str, "at": str, "conversation_id": str, "recipient": str,
    }, pk="id")
    db.table("events").create_index(["shopper_id", "at"])


@MIGRATIONS()
def m004_create_recipients_and_codes(db: sqlite_utils.Database) -> None:
    db.table("recipients").create({
        "shopper_id": str, "name": str, "attributes": str, "note": str, "updated_at": str,
    }, pk=("shopper_id", "name"))
    db.table("link_codes").create({
        "code": str, "shopper_id": str, "expires_at": str,
    }, pk="code")


@MIGRATIONS()
def m005_conversations_looking_at(db: sqlite_utils.Database) -> None:
    # The product a shopper is looking at when a conversation starts: never one of its picks.
    db.table("conversations").add_column("looking_at", str)


@MIGRATIONS()
def m006_create_shopper_contacts(db: sqlite_utils.Database) -> None:
    # The e-mail the shop gives for a shopper, so a phone agent can find a caller by it.
    db.table("shopper_contacts").create({"shopper_id": str, "email": str, "updated_at": str},
                                        pk="shopper_id", not_null={"email"})
    db.table("shopper_contacts").create_index(["email"])


@MIGRATIONS()
def m007_turn_writes(db: sqlite_utils.Database) -> None:
    # A turn is saved by one INSERT into a view whose trigger checks the version, updates
    # the conversation and adds the transcript line: one statement, so SQLite holds the
    # write lock only while it works, never while this process waits for the CPU or for
    # Python's interpreter lock between statements (4 statements did: under 480 turns/s the
    # lock was held 0.65 ms on average, 7 ms at p99, and writers queued behind it).
    db.execute("""
        CREATE VIEW turn_writes AS SELECT
            NULL AS conversation_id, NULL AS expected_version, NULL AS version,
            NULL AS state, NULL AS ctx, NULL AS at, NULL AS shopper_id, NULL AS agent_id,
            NULL AS seq, NULL AS request, NULL AS response, NULL AS token_hash,
            NULL AS channel, NULL AS catalog, NULL AS store_id, NULL AS looking_at
        WHERE 0""")
    # A new conversation (token_hash given) is created with its first turn.
    db.execute("""
        CREATE TRIGGER turn_writes_insert INSTEAD OF INSERT ON turn_writes BEGIN
            SELECT RAISE(ABORT, 'version conflict')
            WHERE NEW.token_hash IS NULL AND NOT EXISTS (
                SELECT 1 FROM conversations
                WHERE conversation_id = NEW.conversation_id AND version = NEW.expected_version);
            INSERT INTO conversations (conversation_id, token_hash, channel, shopper_id,
                catalog, store_id, state, ctx, version, created_at, updated_at, agent_id,
                handoff_code, looking_at)
            SELECT NEW.conversation_id, NEW.token_hash, NEW.channel, NEW.shopper_id,
                NEW.catalog, NEW.store_id, NEW.state, NEW.ctx, NEW.version, NEW.at, NEW.at,
                NEW.agent_id, NULL, NEW.looking_at
            WHERE NEW.token_hash IS NOT NULL;
            UPDATE conversations SET state = NEW.state, ctx = NEW.ctx, version = NEW.version,
                updated_at = NEW.at, shopper_id = NEW.shopper_id, agent_id = NEW.agent_id
            WHERE NEW.token_hash IS NULL AND conversation_id = NEW.conversation_id;
            INSERT INTO turns (conversation_id, seq, at, request, response)
            VALUES (NEW.conversation_id, NEW.seq, NEW.at, NEW.request, NEW.response);
        END""")


def open_db(path: str | Path, *, autocheckpoint: bool = True) -> sqlite_utils.Database:
    """Open the database in WAL mode (readers never block the writer), apply migrations.
    With ``autocheckpoint=False`` this connection never copies the write-ahead log back into
    the database itself: a WalCheckpointer does it (below).

    When it cannot be opened for writing (a read-only data dir, a disk too full for the
    write-ahead log's files) it is opened read-only, so reads go on while every write raises
    sqlite3.OperationalError; ``db.read_only_reason`` then says why. Raises
    sqlite3.OperationalError when it cannot be opened at all.
    """
    try:
        conn = sqlite3.connect(str(path), timeout=15, check_same_thread=False,
                               isolation_level=None)
        _wal(conn)
    except sqlite3.OperationalError as exc:
        db = _open_read_only(Path(path), exc)
        why = "the data dir is read-only" if not os.access(Path(path).parent, os.W_OK) \
            else str(exc)
        log.warning("%s cannot be written (%s): serving reads only", path, why)
        return db
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=15000")
    conn.execute("PRAGMA foreign_keys=ON")
    if not autocheckpoint:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    # Deleted rows are overwritten with zeros, so a forgotten shopper's words do not linger
    # in free pages or free space inside pages of the file.
    conn.execute("PRAGMA secure_delete=ON")
    db = sqlite_utils.Database(conn)
    if MIGRATIONS.pending(db):
        # One process migrates (several workers or servers may start at once); the others
        # wait for the lock and then find nothing left to do.
        with _immediate(db):
            if MIGRATIONS.pending(db):
                MIGRATIONS.apply(db)
    return db


#: How often the server's WalCheckpointer copies the write-ahead log back (seconds).
CHECKPOINT_INTERVAL_S = 0.5


class WalCheckpointer:
    """Copies the write-ahead log back into the database from a thread of its own.

    By default the connection whose commit takes the log past 1,000 pages does the copy, and
    its fsyncs, inside that commit: about one turn in 160 took 2-14 ms longer, holding one
    of its worker's turn slots meanwhile (p99.9 of a turn's save 7.8 ms against 1.2 ms
    without). Connections opened with ``autocheckpoint=False`` leave it to this thread, which
    copies what is there every ``interval`` seconds, never waiting for readers or writers
    (PASSIVE), and reopens its connection after any error (a full or read-only disk)."""

    def __init__(self, path: str | Path, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        self.path = Path(path)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self.checkpoints = 0

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        while not self._stop.wait(self.interval):
            try:
                if conn is None:
                    conn = sqlite3.connect(str(self.path), timeout=1, isolation_level=None,
                                           check_same_thread=False)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.checkpoints += 1
            except sqlite3.Error as exc:
                log.debug("WAL checkpoint of %s failed: %s", self.path, exc)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def _wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. On a new file two processes doing it at once get "database is locked"
    at once (the busy timeout does not apply), so wait here."""
    deadline = time.monotonic() + 15
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if storage_fault(exc) != "busy" or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _open_read_only(path: Path, why: sqlite3.OperationalError) -> sqlite_utils.Database:
    """A read-only connection, or ``why`` raised again when there is none to be had."""
    if not path.exists() or storage_fault(why) == "busy":
        raise why
    uris = [f"file:{quote(str(path))}?mode=ro"]
    if not Path(f"{path}-wal").exists():
        # Without -shm a WAL database opens only as immutable; with no -wal nothing is
        # missed, and nobody can write a read-only or full disk meanwhile.
        uris.append(f"file:{quote(str(path))}?immutable=1")
    for uri in uris:
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=15, check_same_thread=False,
                                   isolation_level=None)
            conn.execute("PRAGMA busy_timeout=15000")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            continue
        db = sqlite_utils.Database(conn)
        if MIGRATIONS.pending(db):
            conn.close()
            raise why
        db.read_only_reason = str(why)  # type: ignore[attr-defined]
        return db
    raise why


def storage_fault(exc: BaseException) -> str | None:
    """What a storage error means: ``"full"`` (no space left), ``"read_only"``, ``"busy"``
    (the lock wait timed out) or ``"unavailable"`` (any other I/O or open failure, a damaged
    file); None when it is a bug (a constraint, a programming error), not the storage."""
    if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc).lower()
        if code == sqlite3.SQLITE_FULL or "disk is full" in text:
            return "full"
        if code == sqlite3.SQLITE_READONLY or "readonly" in text:
            return "read_only"
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
            return "busy"
        return "unavailable"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "full"
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return "read_only"
    return None


@contextmanager
def _immediate(db: sqlite_utils.Database) -> Iterator[None]:
    """A write transaction taken up front, so two writers queue instead of deadlocking."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (a full or read-only disk) must not leave this thread's connection
        # inside the transaction; SQLite may also have rolled back already. The original
        # error is the one to raise.
        if db.conn.in_transaction:
            try:
                db.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise


def _conversation(row: dict[str, Any]) -> Conversation:
    return Conversation(
        conversation_id=row["conversation_id"], channel=row["channel"], catalog=row["catalog"],
        shopper_id=row["shopper_id"], store_id=row["store_id"], state=row["state"],
        version=row["version"], created_at=row["created_at"], agent_id=row["agent_id"],
        looking_at=row["looking_at"], ctx=jsoncodec.loads(row["ctx"]),
    )


_SAVE_TURN = (
    "INSERT INTO turn_writes (conversation_id, expected_version, version, state, ctx, at, "
    "shopper_id, agent_id, seq, request, response, token_hash, channel, catalog, store_id, "
    "looking_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class Store:
    """Reads and writes everything the assistant keeps. Each write is one short transaction."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def _rows(self, sql: str, params: list[Any]) -> Iterator[dict[str, Any]]:
        """Rows as dicts, read with one statement (``Database.query`` wraps each read in a
        savepoint: two more statements)."""
        cur = self.db.execute(sql, params)
        names = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(names, row, strict=True))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with _immediate(self.db):
            yield

    # Conversations ------------------------------------------------------------------------
    # The statements of a turn are written out: sqlite-utils' Table helpers look the table
    # up in sqlite_master first (14 of a turn's 27 statements were such look-ups).
    def save_turn(self, conv: Conversation, expected_version: int, seq: int,
                  request: dict[str, Any], response: dict[str, Any], *,
                  token_hash: str | None = None) -> None:
        """Save a turn: the conversation's new state (if nobody else wrote since it was
        read at ``expected_version``; raises Conflict) and its transcript line, in one
        statement. With ``token_hash`` the conversation is new and is created with it."""
        params = [conv.conversation_id, expected_version, conv.version, conv.state,
                  jsoncodec.dumps(conv.ctx), now_iso(), conv.shopper_id, conv.agent_id, seq,
                  jsoncodec.dumps(request), jsoncodec.dumps(response), token_hash,
                  conv.channel, conv.catalog, conv.store_id, conv.looking_at]
        try:
            self.db.execute(_SAVE_TURN, params)
        except sqlite3.IntegrityError as exc:
            if "version conflict" not in str(exc):
                raise
            raise Conflict("another turn of this conversation was answered at the same "
                           "time; send this one again") from None

    def conversation_row(self, conversation_id: str) -> dict[str, Any]:
        for row in self._rows("SELECT * FROM conversations WHERE conversation_id = ?",
                              [conversation_id]):
            return row
        raise ConversationNotFound(f"there is no conversation {conversation_id!r}")

    def load_conversation(self, conversation_id: str) -> Conversation:
        """Raises ConversationNotFound."""
        return _conversation(self.conversation_row(conversation_id))

    def turns(self, conversation_id: str) -> list[dict[str, Any]]:
        return [
            {"seq": r["seq"], "at": r["at"], "request": jsoncodec.loads(r["request"]),
             **jsoncodec.loads(r["response"])}
            for r in self._rows("SELECT * FROM turns WHERE conversation_id = ? ORDER BY seq",
                                [conversation_id])
        ]

    def set_handoff_code(self, conversation_id: str, code: str | None) -> None:
        self.db.table("conversations").update(conversation_id, {"handoff_code": code})

    def conversation_by_code(self, code: str) -> str | None:
        row = self.db.execute("SELECT conversation_id FROM conversations WHERE handoff_code = ? "
                              "LIMIT 1", [code]).fetchone()
        return row[0] if row else None

    # Preferences --------------------------------------------------------------------------
    def stated_preferences(self, shopper_id: str) -> list[dict[str, Any]]:
        return list(self._rows("SELECT * FROM preferences WHERE shopper_id = ? "
                               "ORDER BY updated_at", [shopper_id]))

    def put_preference(self, shopper_id: str, attribute: str, value: str, polarity: str, *,
                       source: str = "stated", evidence: str = "", said: str = "",
                       conversation_id: str | None = None, strength: float = 1.0) -> None:
        now = now_iso()
        # Written out: sqlite-utils' upsert looks the table up first, inside the turn's
        # transaction. created_at stays when it was said before.
        self.db.execute(
            "INSERT INTO preferences (shopper_id, attribute, value, polarity, source, "
            "strength, evidence, said, conversation_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (shopper_id, attribute, value) DO UPDATE SET "
            "polarity = excluded.polarity, source = excluded.source, "
            "strength = excluded.strength, evidence = excluded.evidence, "
            "said = excluded.said, conversation_id = excluded.conversation_id, "
            "updated_at = excluded.updated_at",
            [shopper_id, attribute, value, polarity, source, strength, evidence, said,
             conversation_id, now, now])

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
        self.db.execute(
            "INSERT INTO events (shopper_id, type, product_id, catalog, query, at, "
            "conversation_id, recipient) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [shopper_id, type_, product_id, catalog, query, at or now_iso(), conversation_id,
             recipient])

    def events(self, shopper_id: str) -> list[dict[str, Any]]:
        return list(self._rows("SELECT * FROM events WHERE shopper_id = ? ORDER BY at",
                               [shopper_id]))

    # Recipients ---------------------------------------------------------------------------
    def recipients(self, shopper_id: str) -> list[dict[str, Any]]:
        return [{**r, "attributes": jsoncodec.loads(r["attributes"] or "{}")}
                for r in self._rows("SELECT * FROM recipients WHERE shopper_id = ?",
                                    [shopper_id])]

    def put_recipient(self, shopper_id: str, name: str, attributes: dict[str, str],
                      note: str = "") -> None:
        self.db.table("recipients").upsert({
            "shopper_id": shopper_id, "name": name, "attributes": jsoncodec.dumps(attributes),
            "note": note, "updated_at": now_iso()}, pk=("shopper_id", "name"))

    def recipient(self, shopper_id: str, name: str) -> dict[str, Any] | None:
        """One saved recipient with its attributes decoded, or None."""
        rows = list(self._rows("SELECT * FROM recipients WHERE shopper_id = ? AND name = ? "
                               "LIMIT 1", [shopper_id, name]))
        return {**rows[0], "attributes": jsoncodec.loads(rows[0]["attributes"] or "{}")} \
            if rows else None

    def delete_recipient(self, shopper_id: str, name: str) -> int:
        return self.db.execute("DELETE FROM recipients WHERE shopper_id = ? AND name = ?",
                               [shopper_id, name]).rowcount

    # Everything about one shopper ---------------------------------------------------------
    def export_shopper(self, shopper_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for table, column in SHOPPER_TABLES.items():
            out[table] = list(self.db[table].rows_where(f"{column} = ?", [shopper_id]))
        conv_ids = [c["conversation_id"] for c in out["conversations"]]
        for c in out["conversations"]:
            c.pop("token_hash", None)
            c["ctx"] = jsoncodec.loads(c["ctx"])
        out["turns"] = [t for cid in conv_ids for t in self.turns(cid)]
        return out

    def forget_shopper(self, shopper_id: str) -> dict[str, int]:
        """Delete every row about the shopper from every table; returns rows per table.

        Run it inside a transaction. Every table with a ``shopper_id`` column loses the
        shopper's rows, and every table with a ``conversation_id`` column loses the rows of
        the shopper's conversations: those that name them now and those their rows point to
        (a kiosk conversation they linked to and left keeps no shopper_id, but their link
        event names it). That covers the agents' audit log and any table added later that
        follows these names. Rate-limit counters keyed by their conversations go too.
        """
        columns = {t: set(self.db[t].columns_dict) for t in self.db.table_names()}
        conv_ids = {r[0] for r in self.db.execute(
            "SELECT conversation_id FROM conversations WHERE shopper_id = ?", [shopper_id])}
        for table, cols in columns.items():
            if table != "conversations" and {"shopper_id", "conversation_id"} <= cols:
                conv_ids |= {r[0] for r in self.db.execute(
                    f"SELECT DISTINCT conversation_id FROM [{table}] WHERE shopper_id = ? "
                    "AND conversation_id IS NOT NULL", [shopper_id])}
        ids = sorted(conv_ids)
        chunks = [ids[i:i + 500] for i in range(0, len(ids), 500)]  # SQLite's variable limit
        counts: dict[str, int] = {}
        # conversations last: turns point to it.
        for table in sorted(columns, key=lambda t: t == "conversations"):
            cols = columns[table]
            if "conversation_id" in cols:
                for chunk in chunks:
                    counts[table] = counts.get(table, 0) + self.db.execute(
                        f"DELETE FROM [{table}] WHERE conversation_id IN "
                        f"({', '.join('?' * len(chunk))})", chunk).rowcount
            if "shopper_id" in cols:
                counts[table] = counts.get(table, 0) + self.db.execute(
                    f"DELETE FROM [{table}] WHERE shopper_id = ?", [shopper_id]).rowcount
        if "throttle" in columns:
            for chunk in chunks:
                counts["throttle"] = counts.get("throttle", 0) + self.db.execute(
                    f"DELETE FROM throttle WHERE key IN ({', '.join('?' * len(chunk))})",
                    [f"link:{cid}" for cid in chunk]).rowcount
        return counts

    def scrub(self) -> bool:
        """Fold the write-ahead log into the database file and truncate it, so deleted rows
        survive in neither (with secure_delete they are zeroed in the file). Run it outside a
        transaction. Returns False when readers kept it from finishing; the log is then
        reused and overwritten as the server writes.
        """
        busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    def set_email(self, shopper_id: str, email: str) -> None:
        """Keep the shop's e-mail for the shopper (lower-cased), replacing an older one."""
        self.db.table("shopper_contacts").upsert({"shopper_id": shopper_id,
                                                  "email": email.strip().casefold(),
                                                  "updated_at": now_iso()}, pk="shopper_id")

    def shopper_by_email(self, email: str) -> str | None:
        row = self.db.execute("SELECT shopper_id FROM shopper_contacts WHERE email = ? "
                              "ORDER BY updated_at DESC LIMIT 1",
                              [email.strip().casefold()]).fetchone()
        return row[0] if row else None

    def shopper_known(self, shopper_id: str) -> bool:
        return any(
            self.db.execute(f"SELECT 1 FROM [{t}] WHERE [{c}] = ? LIMIT 1",
                            [shopper_id]).fetchone()
            for t, c in SHOPPER_TABLES.items())

    # Doors: linking a kiosk to a profile, handing a conversation to an agent --------------
    def create_link_code(self, shopper_id: str, code: str, expires_at: str) -> None:
        """Keep a one-time code that links a kiosk conversation to the shopper."""
        self.db.execute("DELETE FROM link_codes WHERE expires_at < ?", [now_iso()])
        self.db.table("link_codes").insert({"code": code, "shopper_id": shopper_id,
                                            "expires_at": expires_at}, replace=True)

    def use_link_code(self, code: str) -> str | None:
        """The shopper a live code names, deleting the code (it works once); else None."""
        rows = list(self.db.table("link_codes").rows_where("code = ?", [code], limit=1))
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
