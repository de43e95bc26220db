"""The production server under load: concurrent simulated shoppers over loopback HTTP.

Starts ``python -m web.cli serve --workers 2 --no-import`` on a free 127.0.0.1 port and drives
it from this process with N threads, each a shopper holding whole conversations one request
at a time (no think time, http.client with keep-alive), for a bounded time. A 503 must carry
Retry-After and a problem+json body; the shopper waits that long and sends the same turn
again. 503s are counted apart from errors. Afterwards every conversation is read back and its
stored turns compared with the turns answered 200/201: none may be lost.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    ServerProcess,
    Shopper,
    catalogs_built,
    final_json,
    machine,
    remove_scratch,
    scratch_data_dir,
    summary,
    table,
)

API_KEY = "bench-load-key"


@dataclass
class Conv:
    conversation_id: str
    token: str
    answered: int = 1  # the opening (201)
    doubtful: int = 0  # sent, but no answer came back (timeout, reset)


@dataclass
class Phase:
    """What N shoppers saw in one run."""

    shoppers: int
    seconds: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: list[float] = field(default_factory=list)          # latencies of 200/201
    ok_in_window: int = 0
    shed: list[float] = field(default_factory=list)        # latencies of proper 503s
    bad_shed: int = 0                                      # 503 without Retry-After/problem
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    convs: list[Conv] = field(default_factory=list)
    retry_after: set[str] = field(default_factory=set)

    def error(self, kind: str, example: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            if len(self.error_examples) < 5:
                self.error_examples.append(example[:300])


class Connection:
    """One shopper's keep-alive connection; reopened when idle past the server's keep-alive."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.last = 0.0

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None or time.monotonic() - self.last > 1.0:
            self.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=hdrs)
            resp = self.conn.getresponse()
            raw = resp.read()
        except BaseException:
            self.close()
            raise
        self.last = time.monotonic()
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _shed_ok(headers: dict[str, str], raw: bytes) -> bool:
    """A proper 503: Retry-After and an RFC 9457 problem body."""
    if "retry-after" not in headers or \
            not headers.get("content-type", "").startswith("application/problem+json"):
        return False
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == 503 and "title" in body


def _shopper_loop(ph: Phase, port: int, seed: int, deadline: float, timeout: float,
                  myntra_share: float, catalogs: list[str]) -> None:
    rng = random.Random(seed)
    conn = Connection(port, timeout)
    server = {"Authorization": f"Bearer {API_KEY}"}

    def send(method: str, path: str, body: Any, headers: dict[str, str], conv: Conv | None
             ) -> tuple[int, bytes] | None:
        """Send until answered (waiting out 503s); None when time is up or it failed."""
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                status, hdrs, raw = conn.request(method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                if conv is not None:
                    with ph.lock:
                        conv.doubtful += 1
                ph.error(type(exc).__name__, f"{method} {path}: {exc!r}")
                return None
            dt = time.monotonic() - t0
            if status == 503:
                if _shed_ok(hdrs, raw):
                    with ph.lock:
                        ph.shed.append(dt)
                        ph.retry_after.add(hdrs["retry-after"])
                    wait = min(float(hdrs["retry-after"]), max(deadline - time.monotonic(), 0))
                    time.sleep(wait * rng.uniform(0.8, 1.2))
                    continue
                with ph.lock:
                    ph.bad_shed += 1
                ph.error("503 without Retry-After/problem+json", raw.decode(errors="replace"))
                return None
            if status in (200, 201):
                with ph.lock:
                    ph.ok.append(dt)
                    if time.monotonic() <= deadline:
                        ph.ok_in_window += 1
                return status, raw
            ph.error(f"HTTP {status}", f"{method} {path} {body}: {raw[:200]!r}")
            return None
        return None

    while time.monotonic() < deadline:
        catalog = "myntra" if "myntra" in catalogs and rng.random() < myntra_share \
            else "fashion"
        shopper = Shopper(random.Random(rng.random()), catalog=catalog)
        body = shopper.opening()
        if rng.random() < 0.25:
            body["shopper_id"] = f"bench-{seed}-{rng.randrange(10**6)}"
        got = send("POST", "/api/v1/conversations", body, server, None)
        if got is None:
            continue
        turn = json.loads(got[1])
        conv = Conv(turn["conversation_id"], turn["token"])
        with ph.lock:
            ph.convs.append(conv)
        path = f"/api/v1/conversations/{conv.conversation_id}/turns"
        headers = {"Authorization": f"Bearer {conv.token}"}
        while time.monotonic() < deadline and (nxt := shopper.next(turn)) is not None:
            got = send("POST", path, nxt, headers, conv)
            if got is None:
                break
            with ph.lock:
                conv.answered += 1
            turn = json.loads(got[1])
    conn.close()


def _verify(port: int, convs: list[Conv], timeout: float) -> dict[str, Any]:
    """Read every conversation back: stored turns must equal the turns answered 200/201
    (plus at most the turns whose answer never came back)."""
    lost: list[str] = []
    extra: list[str] = []
    failed: list[str] = []
    local = threading.local()

    def check(c: Conv) -> None:
        conn = getattr(local, "conn", None) or Connection(port, timeout)
        local.conn = conn
        for _ in range(5):
            try:
                status, _h, raw = conn.request(
                    "GET", f"/api/v1/conversations/{c.conversation_id}",
                    headers={"Authorization": f"Bearer {API_KEY}"})
            except (OSError, http.client.HTTPException) as exc:
                status, raw = 0, repr(exc).encode()
            if status != 503:
                break
            time.sleep(1)
        if status != 200:
            failed.append(f"{c.conversation_id}: {status} {raw[:120]!r}")
            return
        stored = len(json.loads(raw)["turns"])
        if stored < c.answered:
            lost.append(f"{c.conversation_id}: answered {c.answered}, stored {stored}")
        elif stored > c.answered + c.doubtful:
            extra.append(f"{c.conversation_id}: answered {c.answered}, stored {stored}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check, convs))
    return {"conversations": len(convs), "lost_turn_conversations": len(lost),
            "extra_turn_conversations": len(extra), "read_back_failures": len(failed),
            "examples": (lost + extra + failed)[:5]}


def run_phase(server: ServerProcess, shoppers: int, seconds: float, timeout: float,
              myntra_share: float, catalogs: list[str], seed: int) -> dict[str, Any]:
    ph = Phase(shoppers, seconds)
    start = time.monotonic()
    deadline = start + seconds
    threads = [threading.Thread(target=_shopper_loop, daemon=True,
                                args=(ph, server.port, seed * 100003 + i, deadline, timeout,
                                      myntra_share, catalogs))
               for i in range(shoppers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + timeout + 30)
    drained = time.monotonic() - start
    stuck = sum(t.is_alive() for t in threads)
    memory = server.memory()
    check = _verify(server.port, list(ph.convs), timeout)
    turns = [c.answered for c in ph.convs]
    return {
        "shoppers": shoppers, "seconds": seconds, "drained_s": round(drained, 1),
        "turns_ok": len(ph.ok), "turns_per_s": round(ph.ok_in_window / seconds, 1),
        "latency_ok": summary(ph.ok),
        "shed_503": len(ph.shed), "latency_503": summary(ph.shed),
        "retry_after_values": sorted(ph.retry_after),
        "bad_503": ph.bad_shed, "errors": sum(ph.errors.values()),
        "errors_by_kind": ph.errors, "error_examples": ph.error_examples,
        "stuck_shoppers": stuck,
        "conversations": len(ph.convs),
        "turns_per_conversation": round(sum(turns) / len(turns), 2) if turns else 0,
        "verify": check, "server_memory": memory,
    }


def report(fig: dict[str, Any]) -> str:
    rows = []
    for ph in fig["phases"]:
        lat = ph["latency_ok"]
        rows.append([ph["shoppers"], ph["seconds"], ph["turns_ok"], ph["turns_per_s"],
                     lat["p50_ms"], lat["p95_ms"], lat["p99_ms"], ph["shed_503"],
                     ph["errors"], ph["verify"]["conversations"],
                     ph["verify"]["lost_turn_conversations"],
                     ph["server_memory"]["sum_VmHWM_mib"]])
    lines = [
        f"server: {fig['server_cmd']}",
        f"start-up: /healthz 200 after {fig['startup']['healthz_200_s']} s, all workers "
        f"ready after {fig['startup']['all_workers_ready_s']} s",
        table(rows, ["shoppers", "s", "turns ok", "turns/s", "p50 ms", "p95 ms", "p99 ms",
                     "503s", "errors", "convs", "lost", "peak RSS MiB (sum)"]),
    ]
    for ph in fig["phases"]:
        per = ", ".join(f"pid {pid}: peak {m.get('VmHWM')} MiB (anon {m.get('RssAnon')})"
                        for pid, m in ph["server_memory"]["processes"].items())
        lines.append(f"{ph['shoppers']} shoppers: {per}")
        if ph["shed_503"]:
            lines.append(f"  503 answered in p50 {ph['latency_503']['p50_ms']} ms, "
                         f"Retry-After {ph['retry_after_values']}")
        if ph["errors"] or ph["bad_503"]:
            lines.append(f"  errors: {ph['errors_by_kind']} e.g. {ph['error_examples'][:2]}")
        v = ph["verify"]
        if v["lost_turn_conversations"] or v["extra_turn_conversations"] or \
                v["read_back_failures"]:
            lines.append(f"  read-back: {v}")
    lines.append(f"server log: {fig['server_log_errors']} error lines")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The production server under concurrent shoppers.")
    p.add_argument("--data-dir", default=os.environ.get("SHOPPER_DATA_DIR", "./var"),
                   help="where the catalogs are built (default ./var)")
    p.add_argument("--in-place", action="store_true",
                   help="let the server write conversations into DATA_DIR/shopper.db; by "
                        "default it serves DATA_DIR's catalogs with a scratch database")
    p.add_argument("--seconds", type=float, default=60.0, help="per phase (default 60)")
    p.add_argument("--shoppers", default="64,256",
                   help="concurrent shoppers per phase, comma-separated (default 64,256)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra `shopper serve` argument, e.g. --server-arg=--threads=32")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the server, e.g. OPENBLAS_NUM_THREADS=1")
    p.add_argument("--timeout", type=float, default=30.0, help="per request (default 30 s)")
    p.add_argument("--myntra-share", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)

    data_dir = Path(args.data_dir).resolve()
    catalogs = catalogs_built(data_dir)
    if "fashion" not in catalogs:
        raise SystemExit(f"no built fashion catalog in {data_dir}/catalogs")
    serve_dir = data_dir if args.in_place else scratch_data_dir(data_dir)
    env = dict(x.split("=", 1) for x in args.server_env)
    module = "web.cli"
    server = ServerProcess(serve_dir, workers=args.workers, extra_args=args.server_arg,
                           api_key=API_KEY, module=module, env=env)
    fig: dict[str, Any] = {"benchmark": "load", "machine": machine(),
                           "data_dir": str(data_dir), "in_place": args.in_place,
                           "workers": args.workers, "server_args": args.server_arg,
                           "server_env": env, "server_module": module}
    try:
        server.start()
        fig["startup"] = server.wait_ready()
        fig["server_cmd"] = (" ".join(f"{k}={v}" for k, v in env.items()) +
                             f" python -m {module} serve --workers {args.workers} --no-import "
                             + " ".join(args.server_arg)).strip()
        fig["phases"] = []
        for i, n in enumerate(int(x) for x in args.shoppers.split(",") if x.strip()):
            fig["phases"].append(run_phase(server, n, args.seconds, args.timeout,
                                           args.myntra_share, catalogs, args.seed + i))
        log = server.log_text()
        fig["server_log"] = str(server.log_path)
        fig["server_log_errors"] = sum(1 for line in log.splitlines()
                                       if " ERROR " in line or "Traceback" in line
                                       or "WORKER TIMEOUT" in line)
    finally:
        server.stop()
        if not args.in_place:
            remove_scratch(serve_dir)
    print(report(fig))
    print(final_json(fig))
    ok = all(ph["errors"] == 0 and ph["verify"]["lost_turn_conversations"] == 0
             for ph in fig["phases"])
    return 0 if ok else 1
