"""The Flask app factory and the services every view shares."""

from __future__ import annotations

import gc
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils
from flask import Flask, Request, current_app
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SessionInterface
from werkzeug.sansio.response import Response

from assistant.engine import Assistant, Settings
from assistant.store import Store, WalCheckpointer, open_db
from catalog.catalog import (
    BUNDLED,
    Catalog,
    CatalogCorrupt,
    CatalogNotBuilt,
    ensure_catalog,
    load_catalog,
)
from catalog.embedder import CachedEmbedder, Embedder, SentenceTransformerEmbedder
from catalog.index import limit_threads as limit_faiss_threads
from catalog.onnx_model import check_texts_from, onnx_dir, query_embedder

from .routing import ShopperFlask

__all__ = ["Services", "build_services", "create_app", "read_server_timing", "services"]

log = logging.getLogger("shopper")
REOPEN_READ_ONLY_SECONDS = 5.0


@dataclass
class Services:
    """What the views need; built once per process by create_app (or injected by tests)."""

    data_dir: Path
    api_key: str
    assistant: Assistant | None = None
    checkpointer: WalCheckpointer | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    _local: threading.local = field(default_factory=threading.local)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "shopper.db"

    def db(self) -> sqlite_utils.Database:
        """This thread's connection (sqlite3 connections are not shared across threads).

        A connection opened read-only (the data dir was read-only or full) is reopened after
        a while, so writes come back by themselves once the disk does."""
        held: _ThreadDb | None = getattr(self._local, "held", None)
        if held is not None and getattr(held.db, "read_only_reason", None) \
                and time.monotonic() - held.opened > REOPEN_READ_ONLY_SECONDS:
            held.close()
            held = None
        if held is None:
            held = self._local.held = _ThreadDb(
                open_db(self.db_path, autocheckpoint=self.checkpointer is None))
        return held.db

    def store(self) -> Store:
        return Store(self.db())


class _ThreadDb:
    """One request thread's connection, closed when the thread ends.

    granian retires a request thread after 30 s idle and starts new ones when a rush comes,
    each opening its own connection. A Python 3.11 sqlite3 connection is a reference cycle
    (with its statement cache), so dropping it with the thread's locals did not close it:
    only a full run of the cyclic garbage collector would, which may not come for hours.
    Every burst after a quiet spell left its connections open (a server given 100 turns at
    once twice, 40 s apart, held 298 descriptors of shopper.db). This holder is in no cycle:
    it goes with the thread's locals and closes the connection then."""

    __slots__ = ("db", "opened")

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self.opened = time.monotonic()

    def close(self) -> None:
        try:
            self.db.conn.close()
        except Exception:
            pass  # closing at thread or interpreter exit: there is no one to tell

    def __del__(self) -> None:
        self.close()


def _api_key(data_dir: Path, configured: str | None) -> str:
    """The server key: from SHOPPER_API_KEY, else a random one kept in the data dir (never
    in the repo) so a developer can read it; it is never logged."""
    if configured:
        return configured
    path = data_dir / "api_key"
    if not path.exists():
        key = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker or server made it a moment ago
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(key)
            log.warning("SHOPPER_API_KEY is not set: generated a server key in %s", path)
            return key
    for _ in range(50):  # it may still be being written
        text = path.read_text().strip()
        if text:
            return text
        time.sleep(0.02)
    raise RuntimeError(f"{path} is empty: delete it and restart")


def _load_catalogs(data_dir: Path, embedder: Embedder, build: bool) -> dict[str, Catalog]:
    catalogs: dict[str, Catalog] = {}
    root = data_dir / "catalogs"
    names = {p.name for p in root.iterdir() if (p / "manifest.json").exists()} \
        if root.exists() else set()
    if build:
        for name in BUNDLED:
            catalogs[name] = ensure_catalog(data_dir, name, embedder, progress=True)
    for name in sorted(names - set(catalogs)):
        catalogs[name] = load_catalog(data_dir, name)
    return catalogs


def _limit_math_threads(n: int) -> None:
    """Cap numpy's BLAS pools (process-wide), OpenMP (for the calling thread) and faiss's
    OpenMP (in every thread that searches) at ``n`` threads. A worker answers one turn per
    request thread; threads of its own inside a matrix product only fight the other worker
    for the cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    limit_faiss_threads(n)


def build_services(config: Mapping[str, Any]) -> Services:
    """Open the data dir and load catalogs and the model (in a thread if BACKGROUND_LOAD)."""
    data_dir = Path(config["DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    svc = Services(data_dir=data_dir, api_key=_api_key(data_dir, config.get("API_KEY")))
    try:
        open_db(svc.db_path).conn.close()  # migrate once, before any request
    except sqlite3.Error as exc:
        # Keep serving what needs no database; each request that does answers 503 and
        # retries the database, so a freed disk needs no restart (and no crash loop).
        log.error("cannot open the database %s: %s", svc.db_path, exc)

    if config.get("MATH_THREADS"):
        _limit_math_threads(int(config["MATH_THREADS"]))
    if config.get("CHECKPOINT_S"):
        # The server's turns leave copying the write-ahead log to this thread.
        svc.checkpointer = WalCheckpointer(svc.db_path, float(config["CHECKPOINT_S"])).start()

    def load() -> None:
        try:
            # Catalogs are embedded by the full model (loaded only if one must be built);
            # shoppers' words by the int8 ONNX copy unless SHOPPER_EMBEDDER=torch.
            full = SentenceTransformerEmbedder(threads=config.get("TORCH_THREADS"))
            catalogs = _load_catalogs(data_dir, full, bool(config.get("IMPORT_BUNDLED")))
            if not catalogs:
                raise CatalogNotBuilt(f"no catalog is built in {data_dir}: run `shopper serve` "
                                      "without --no-import, or `shopper catalog import`")
            default = config.get("CATALOG") or ("fashion" if "fashion" in catalogs
                                                else sorted(catalogs)[0])
            if default not in catalogs:
                raise CatalogNotBuilt(f"catalog {default!r} is not built in {data_dir}")
            embedder = CachedEmbedder(query_embedder(
                config.get("EMBEDDER"), onnx_dir(data_dir, config.get("ONNX_DIR")), full,
                threads=config.get("ONNX_THREADS") or 1,
                check_texts=check_texts_from(catalogs)))
            embedder.embed(["warm up"])
            svc.assistant = Assistant(catalogs=catalogs, embedder=embedder, store=svc.store,
                                      default_catalog=default, settings=Settings())
            # What was loaded stays for the life of the worker: keep the cyclic collector
            # from scanning it at every full collection (a pause in some turn).
            gc.freeze()
            # A turn makes and drops thousands of small containers; at the default
            # threshold (700) the youngest generation was collected about every five turns
            # and its survivors were promoted and scanned again. At 20,000: 8 collections
            # in 1,000 turns instead of 214, 79 ms instead of 235 ms (scripts/bench_turn).
            gc.set_threshold(20_000, 20, 20)
            svc.ready.set()
            # After "ready", so start-up does not wait for it; a turn that needs these
            # vectors before they are made makes them itself (under the matcher's lock).
            threading.Thread(target=svc.assistant.warm, name="warm", daemon=True).start()
            log.info("ready: catalogs %s; queries by %s", ", ".join(
                f"{n} ({len(c)})" for n, c in catalogs.items()), embedder.name)
        except (CatalogNotBuilt, CatalogCorrupt, OSError, ValueError, RuntimeError) as exc:
            svc.error = str(exc)
            log.error("cannot serve: %s", exc)

    if config.get("BACKGROUND_LOAD"):
        threading.Thread(target=load, name="loader", daemon=True).start()
    else:
        load()
        if svc.error:
            raise RuntimeError(svc.error)
    return svc


class FastJSONProvider(DefaultJSONProvider):
    """Flask's JSON, written by orjson when nothing asks for more than compact output
    (assistant/jsoncodec.py says why). Dates, dataclasses and anything else orjson does not
    know natively go through Flask's own ``default``, so they come out as Flask writes them;
    on any refusal the standard library writes the response as before.

    ``response`` (what ``jsonify`` and returned dicts use) writes the body's bytes directly:
    Flask's own passes ``separators`` to ``dumps``, which would send every response to the
    standard library."""

    sort_keys = False
    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    _COMPACT = {"separators": (",", ":")}

    def _orjson(self, obj: Any, option: int = 0) -> bytes | None:
        """Compact JSON bytes by orjson, or None where it refuses the object."""
        try:
            return orjson.dumps(obj, default=self.default, option=self._OPTIONS | option)
        except (TypeError, orjson.JSONEncodeError):
            return None

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if not kwargs or kwargs == self._COMPACT:
            body = self._orjson(obj)
            if body is not None:
                return body.decode()
        return super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        if self.compact is False or (self.compact is None and self._app.debug):
            return super().response(*args, **kwargs)
        obj = self._prepare_response_obj(args, kwargs)
        body = self._orjson(obj, orjson.OPT_APPEND_NEWLINE)
        if body is None:
            body = f"{super().dumps(obj, **self._COMPACT)}\n".encode()
        # Flask's response class takes bytes; the sansio base it is typed as does not.
        return self._app.response_class(body, mimetype=self.mimetype)  # type: ignore[arg-type]


class _NoCookieSession(SessionInterface):
    """Flask's signed-cookie session is not used (the console keeps its sessions in the
    database): without this, every request built an itsdangerous signer to look for a
    cookie that is never there. ``flask.session`` is a NullSession, which refuses writes."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        return None


def create_app(config: Mapping[str, Any] | None = None, *,
               services: Services | None = None) -> Flask:
    """Build the app. ``config`` overrides settings (tests); otherwise SHOPPER_* variables."""
    app = ShopperFlask(__name__)
    app.json = FastJSONProvider(app)
    app.session_interface = _NoCookieSession()
    app.config.from_mapping(
        DATA_DIR=os.environ.get("SHOPPER_DATA_DIR", "var"),
        CATALOG=None,
        API_KEY=os.environ.get("SHOPPER_API_KEY") or None,
        IMPORT_BUNDLED=False,
        BACKGROUND_LOAD=False,
        MAX_CONTENT_LENGTH=64 * 1024,
        ANON_RATE_PER_MINUTE=60,
        ACTIVE_TURNS=2,
        QUEUED_TURNS=48,
        QUEUE_WAIT_S=3.0,
        REBALANCE_AFTER=0,
        CHECKPOINT_S=None,
        TORCH_THREADS=None,
        EMBEDDER=os.environ.get("SHOPPER_EMBEDDER") or None,
        ONNX_DIR=os.environ.get("SHOPPER_ONNX_DIR") or None,
        ONNX_THREADS=None,
        MATH_THREADS=None,
        JSON_SORT_KEYS=False,
        LOG_TEXT=os.environ.get("SHOPPER_LOG_TEXT", "") == "1",
        SERVER_TIMING=False,
    )
    if config is None:
        app.config.from_prefixed_env("SHOPPER")
    else:
        app.config.update(config)
    app.extensions["shopper"] = services or build_services(app.config)

    from . import api, console, handoff, kiosk, pages, security, widget

    app.register_blueprint(api.bp)
    if hasattr(pages, "bp"):
        app.register_blueprint(pages.bp)
    for door in (handoff.bp, widget.bp, kiosk.bp, console.bp):
        app.register_blueprint(door)
    api.register_error_handlers(app)
    security.install(app)
    if app.config.get("SERVER_TIMING"):
        app.wsgi_app = ServerTiming(app.wsgi_app)  # type: ignore[method-assign]
    return app


#: Where a view that waited for a turn slot leaves the seconds it waited (see ServerTiming).
SLOT_WAIT_KEY = "shopper.slot_wait_s"


class ServerTiming:
    """WSGI middleware that says on every answer, in a W3C ``Server-Timing`` header, what
    the request cost inside this worker: ``app`` the wall time from the request's arrival
    in the app to its answer's start, ``cpu`` the CPU its own thread spent meanwhile and
    ``wait`` the time it waited for a turn slot (admission control). A browser's devtools
    and most monitoring show them. Off by default (`shopper serve --server-timing`): the
    figures say how loaded the server is, which a shop may not want to tell everyone.
    ``bench_load`` turns it on to tell the server's own time from the load generator's."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()

        def timed_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None
                        ) -> Any:
            app_ms = (time.perf_counter() - t0) * 1000.0
            cpu_ms = (time.thread_time() - c0) * 1000.0
            wait_ms = environ.get(SLOT_WAIT_KEY, 0.0) * 1000.0
            headers.append(("Server-Timing", f"app;dur={app_ms:.2f}, cpu;dur={cpu_ms:.2f}, "
                                             f"wait;dur={wait_ms:.2f}"))
            return start_response(status, headers, exc_info)

        return self.app(environ, timed_start)


def read_server_timing(value: str) -> dict[str, float]:
    """The durations (ms) of a ``Server-Timing`` header, by name: what ServerTiming wrote,
    as a client reads it back (bench_load). Metrics without a duration are left out."""
    out: dict[str, float] = {}
    for metric in value.split(","):
        name, _, dur = metric.strip().partition(";dur=")
        try:
            out[name] = float(dur)
        except ValueError:
            continue
    return out


def services() -> Services:
    svc: Services = current_app.extensions["shopper"]
    return svc
