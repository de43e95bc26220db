"""The `shopper` command: serve, catalogs, agents and the audit log."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["ACCESS_LOG_FORMAT", "check_catalogs", "log_text", "main", "worker_app"]


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("SHOPPER_DATA_DIR") or "var").resolve()


#: The access log (granian's atoms) without query strings (``/api/v1/search?q=...`` holds
#: what shoppers typed) and without the referrer (the shop's page address may hold it too).
ACCESS_LOG_FORMAT = ('%(addr)s [%(time)s] "%(method)s %(path)s %(protocol)s" %(status)d '
                     '%(dt_ms).1fms "%(header{user-agent})s"')
#: With SHOPPER_LOG_TEXT=1 (debugging only): the query string and the referrer too.
ACCESS_LOG_FORMAT_WITH_TEXT = ('%(addr)s [%(time)s] "%(method)s %(path)s?%(query_string)s '
                               '%(protocol)s" %(status)d %(dt_ms).1fms "%(header{referer})s" '
                               '"%(header{user-agent})s"')
#: Every log line of the server (its own, each worker's and the app's) in one shape.
LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
#: How `shopper serve` hands its settings to the workers it starts (JSON).
SERVE_CONFIG_ENV = "SHOPPER_SERVE_CONFIG"


def log_text() -> bool:
    """Whether logs may carry what shoppers typed (SHOPPER_LOG_TEXT=1; off by default)."""
    return os.environ.get("SHOPPER_LOG_TEXT", "") == "1"


def check_catalogs(data_dir: Path, default: str | None, will_import: bool) -> str | None:
    """Why the server could not serve from this data dir (a catalog missing or damaged, with
    the command that fixes it), or None. Bundled catalogs are skipped when the server will
    (re)build them itself."""
    from catalog.catalog import BUNDLED, CatalogCorrupt, CatalogNotBuilt, check_catalog

    root = data_dir / "catalogs"
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                   ) if root.is_dir() else []
    if not will_import:
        if not names:
            return (f"no catalog is built in {data_dir}: run `shopper serve` without "
                    "--no-import (it builds the bundled ones), or `shopper catalog import`")
        if default and default not in names:
            return (f"catalog {default!r} is not built in {data_dir}; built here: "
                    f"{', '.join(names)}")
    for name in names:
        if will_import and name in BUNDLED:
            continue
        try:
            check_catalog(data_dir, name)
        except (CatalogNotBuilt, CatalogCorrupt) as exc:
            return str(exc)
    return None


class _ThreadsAreIntended(logging.Filter):
    """Drops granian's start-up warning that --threads (128) is high for two cores: the
    threads mostly wait in the app's admission control, which needs one per request in
    flight to answer 503 at once past its bounds (README, "Under a rush")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Python threads, which seems quite high" not in record.getMessage()


def _log_config() -> dict[str, Any]:
    """logging.config's dict for the server and its workers: granian's lines, the access
    log and the app's own loggers ("shopper.*") on standard output, one format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"format": LOG_FORMAT},
                       "access": {"format": "%(message)s"}},
        "filters": {"threads": {"()": _ThreadsAreIntended}},
        "handlers": {
            "out": {"class": "logging.StreamHandler", "formatter": "line",
                    "stream": "ext://sys.stdout"},
            "access": {"class": "logging.StreamHandler", "formatter": "access",
                       "stream": "ext://sys.stdout"},
        },
        "root": {"handlers": ["out"], "level": "INFO"},
        "loggers": {
            "_granian": {"handlers": ["out"], "level": "INFO", "propagate": False,
                         "filters": ["threads"]},
            "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def worker_app() -> Any:
    """The app of one server worker, built from the settings `shopper serve` put in the
    environment (granian calls this in each worker it starts, before the worker's threads)."""
    from web import create_app

    config = json.loads(os.environ[SERVE_CONFIG_ENV])
    if config.get("PIN_WORKERS"):
        from web.cores import claim_core

        claim_core(int(config["WORKERS"]))
    return create_app(config)


def _serve(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces

    from assistant.store import CHECKPOINT_INTERVAL_S

    data_dir = _data_dir(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # A missing or damaged index does not heal by waiting: say what to run and stop, before
    # any worker starts (a supervisor shows this line; /healthz would only say "not ready").
    why = check_catalogs(data_dir, args.catalog, not args.no_import)
    if why:
        print(f"shopper: cannot serve: {why}", file=sys.stderr, flush=True)
        return 2
    os.environ[SERVE_CONFIG_ENV] = json.dumps({
        "DATA_DIR": str(data_dir),
        "CATALOG": args.catalog,
        "API_KEY": os.environ.get("SHOPPER_API_KEY") or None,
        "IMPORT_BUNDLED": not args.no_import,
        "BACKGROUND_LOAD": True,
        "TORCH_THREADS": args.torch_threads,
        "EMBEDDER": args.embedder,
        "ONNX_DIR": os.environ.get("SHOPPER_ONNX_DIR") or None,
        "ONNX_THREADS": args.onnx_threads,
        "MATH_THREADS": args.math_threads,
        "ACTIVE_TURNS": args.active_turns,
        "QUEUED_TURNS": args.queued_turns,
        "QUEUE_WAIT_S": args.queue_wait,
        "REBALANCE_AFTER": args.rebalance_after,
        "ANON_RATE_PER_MINUTE": args.anon_conversations_per_minute,
        "CHECKPOINT_S": CHECKPOINT_INTERVAL_S,
        "LOG_TEXT": log_text(),
        "SERVER_TIMING": args.server_timing,
        "WORKERS": args.workers,
        "PIN_WORKERS": not args.no_pin_workers,
    })

    # What every worker imports anyway is imported once here, before the fork. Not
    # onnxruntime: imported before the fork, a worker then hangs on its way out until the
    # kill timeout (20 s on every stop).
    import tokenizers  # noqa: F401

    from web import api, console, handoff, kiosk, pages, security, widget  # noqa: F401

    print(f"personal-shopper: serving on http://{args.host}:{args.port}/ (data in {data_dir})",
          flush=True)
    if not (data_dir / "catalogs" / "fashion" / "manifest.json").exists() and not args.no_import:
        print("First start: importing and embedding the bundled catalogs takes a few minutes;"
              " /healthz answers 503 until then.", flush=True)
    # granian: HTTP parsed and written in Rust, the app called from a pool of Python threads
    # per worker. Every request in flight has a thread (backpressure = threads), so a turn
    # waits in the app's admission control, which is bounded and answers 503 past its
    # bounds, not in the server, which is not.
    Granian(
        "web.cli:worker_app", factory=True, address=args.host, port=args.port,
        interface=Interfaces.WSGI, http=HTTPModes.http1, workers=args.workers,
        blocking_threads=args.threads, backpressure=args.threads, backlog=256,
        respawn_failed_workers=True, respawn_interval=1.0, workers_kill_timeout=20,
        log_dictconfig=_log_config(), log_access=args.access_log,
        log_access_format=ACCESS_LOG_FORMAT_WITH_TEXT if log_text() else ACCESS_LOG_FORMAT,
    ).serve()
    return 0


def _catalog_import(args: argparse.Namespace) -> int:
    from catalog.catalog import ensure_catalog
    from catalog.embedder import SentenceTransformerEmbedder
    from catalog.importers import ImportError_

    data_dir = _data_dir(args.data_dir)
    try:
        cat = ensure_catalog(data_dir, args.name, SentenceTransformerEmbedder(),
                             mapping_path=Path(args.mapping), source=Path(args.file),
                             limit=args.limit, progress=True, force=args.force)
    except (ImportError_, ValueError, FileNotFoundError) as exc:
        print(f"shopper: cannot import {args.file}: {exc}", file=sys.stderr)
        return 2
    print(f"catalog {cat.name}: {len(cat)} products in {data_dir / 'catalogs' / cat.name}")
    for f in cat.facets:
        print(f"  {f.name:16} {'asked' if f.facet else 'not asked':10} {f.why}")
    return 0


def _catalog_list(args: argparse.Namespace) -> int:
    root = _data_dir(args.data_dir) / "catalogs"
    for manifest in sorted(root.glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        print(f"{m['name']:12} {m['products']:>8} products  built {m['built_at']}")
    return 0


def _catalog_rebuild(args: argparse.Namespace) -> int:
    from catalog.catalog import BUNDLED, ensure_catalog
    from catalog.embedder import SentenceTransformerEmbedder

    if args.name not in BUNDLED:
        print("shopper: rebuild a shop's own catalog with `shopper catalog import ... --force`",
              file=sys.stderr)
        return 2
    ensure_catalog(_data_dir(args.data_dir), args.name, SentenceTransformerEmbedder(),
                   force=True)
    return 0


def _agent_store(data_dir: str | None) -> Any:
    from assistant.agents import AgentStore
    from assistant.store import open_db

    path = _data_dir(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return AgentStore(open_db(path / "shopper.db"))


def _agents_add(args: argparse.Namespace) -> int:
    import getpass

    from assistant.errors import InvalidInput

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            print("shopper: the passwords differ", file=sys.stderr)
            return 2
    try:
        _agent_store(args.data_dir).add_agent(args.name, password, is_admin=args.admin)
    except InvalidInput as exc:
        print(f"shopper: {exc.detail}", file=sys.stderr)
        return 2
    print(f"agent {args.name} saved{' (admin)' if args.admin else ''}")
    return 0


def _agents_list(args: argparse.Namespace) -> int:
    for a in _agent_store(args.data_dir).agents():
        print(f"{a['name']:24} {'admin' if a['is_admin'] else 'agent':6} since {a['created_at']}")
    return 0


def _agents_remove(args: argparse.Namespace) -> int:
    if not _agent_store(args.data_dir).remove_agent(args.name):
        print(f"shopper: there is no agent {args.name!r}", file=sys.stderr)
        return 1
    print(f"agent {args.name} removed")
    return 0


def _audit(args: argparse.Namespace) -> int:
    rows = _agent_store(args.data_dir).audit_log(shopper_id=args.shopper, agent=args.agent,
                                                 limit=args.limit)
    for r in rows:
        if args.json:
            print(json.dumps(r, ensure_ascii=False))
        else:
            who = r["shopper_id"] or "-"
            detail = json.dumps(r["detail"], ensure_ascii=False) if r["detail"] else ""
            print(f"{r['at']}  {r['agent'] or '-':16} {r['action']:20} {who:20} "
                  f"{r['conversation_id'] or '-':24} {detail}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shopper", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the server (granian)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir")
    serve.add_argument("--catalog", help="the default catalog (default: fashion)")
    serve.add_argument("--workers", type=int, default=int(os.environ.get("SHOPPER_WORKERS", 2)))
    serve.add_argument("--no-pin-workers", action="store_true",
                       help="leave the workers' threads to the kernel's scheduler; by default "
                            "each of two or more workers takes a core of its own, when there "
                            "are enough")
    serve.add_argument("--threads", type=int, default=128,
                       help="threads per worker; more than --active-turns + --queued-turns, "
                            "so a rush waits where the wait is bounded (default 128)")
    serve.add_argument("--torch-threads", type=int, default=1)
    serve.add_argument("--embedder", choices=("onnx", "torch"),
                       default=os.environ.get("SHOPPER_EMBEDDER") or None,
                       help="what encodes shoppers' words (default $SHOPPER_EMBEDDER, else onnx "
                            "when onnxruntime is installed)")
    serve.add_argument("--onnx-threads", type=int, default=1,
                       help="onnxruntime threads per worker (default 1)")
    serve.add_argument("--math-threads", type=int, default=1,
                       help="BLAS/OpenMP threads per worker for numpy and faiss (default 1: "
                            "the workers are the parallelism)")
    serve.add_argument("--active-turns", type=int, default=2,
                       help="turns computed at once per worker (default 2: a worker has one "
                            "interpreter lock, and more turns at once only take it in turns)")
    serve.add_argument("--queued-turns", type=int, default=48,
                       help="turns waiting for a slot per worker; beyond, 503 at once "
                            "(default 48)")
    serve.add_argument("--queue-wait", type=float, default=3.0,
                       help="longest wait for a slot in seconds, then 503 (default 3)")
    serve.add_argument("--rebalance-after", type=int, default=250, metavar="N",
                       help="a worker answers with 'Connection: close' each time its turns "
                            "have seen N turns waiting behind them, so keep-alive "
                            "connections move from a crowded worker (default 250; 0: never)")
    serve.add_argument("--anon-conversations-per-minute", type=int,
                       default=int(os.environ.get("SHOPPER_ANON_RATE_PER_MINUTE", 60)),
                       help="new conversations without a shopper id one address may start a "
                            "minute, per worker; then 429 (default 60, or "
                            "$SHOPPER_ANON_RATE_PER_MINUTE; raise it behind a proxy whose "
                            "address every shopper shares)")
    serve.add_argument("--no-import", action="store_true",
                       help="serve the catalogs already built in the data dir; import nothing")
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument("--server-timing", action="store_true",
                       help="say on every answer what it cost in the worker (a Server-Timing "
                            "header: app, cpu and wait for a turn slot, in ms); off by default")
    serve.set_defaults(func=_serve)

    cat = sub.add_parser("catalog", help="import and list catalogs")
    cat_sub = cat.add_subparsers(dest="catalog_command", required=True)
    imp = cat_sub.add_parser("import", help="import a CSV or JSONL file through a mapping")
    imp.add_argument("file")
    imp.add_argument("--name", required=True)
    imp.add_argument("--mapping", required=True, help="a JSON column mapping")
    imp.add_argument("--data-dir")
    imp.add_argument("--limit", type=int)
    imp.add_argument("--force", action="store_true", help="rebuild even if unchanged")
    imp.set_defaults(func=_catalog_import)
    lst = cat_sub.add_parser("list", help="list built catalogs")
    lst.add_argument("--data-dir")
    lst.set_defaults(func=_catalog_list)
    reb = cat_sub.add_parser("rebuild", help="rebuild a bundled catalog's index")
    reb.add_argument("--name", required=True)
    reb.add_argument("--data-dir")
    reb.set_defaults(func=_catalog_rebuild)

    agents = sub.add_parser("agents", help="support agents who use the console")
    agents_sub = agents.add_subparsers(dest="agents_command", required=True)
    add = agents_sub.add_parser("add", help="create an agent (or set a new password)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true",
                     help="may open other agents' conversations")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    add.add_argument("--data-dir")
    add.set_defaults(func=_agents_add)
    lst_agents = agents_sub.add_parser("list", help="list agents")
    lst_agents.add_argument("--data-dir")
    lst_agents.set_defaults(func=_agents_list)
    rm = agents_sub.add_parser("remove", help="remove an agent and end its sessions")
    rm.add_argument("name")
    rm.add_argument("--data-dir")
    rm.set_defaults(func=_agents_remove)

    audit = sub.add_parser("audit", help="read the audit log of agents' look-ups and changes")
    audit.add_argument("--shopper", help="only entries about this shopper id")
    audit.add_argument("--agent", help="only entries by this agent")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--json", action="store_true", help="one JSON object a line")
    audit.add_argument("--data-dir")
    audit.set_defaults(func=_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
