"""The production server under load: concurrent simulated shoppers over loopback HTTP.

Starts ``python -m web.cli serve --workers 2 --no-import`` on a free 127.0.0.1 port and drives
it from this process: N shoppers, each holding whole conversations one request at a time over
its own keep-alive connection, for a bounded time. The shoppers run as asyncio tasks on one
event loop with a small HTTP/1.1 client (about 0.1 ms of CPU a request), because the load
generator shares the server's two cores: a thread per shopper with http.client cost several
times that, CPU the server then did not have.

Two ways to drive (``--rate``):

- closed loop (rate 0): every shopper sends its next turn the moment the last one is
  answered. This measures capacity; latency is then shoppers / throughput (Little's law).
- paced (``--rate R``): shoppers take turns at R turns/s in all, each waiting a random
  think time (exponential, mean N/R) after the turn was *scheduled*, not after it was
  answered, so a slow answer does not slow the load down (no coordinated omission). A shopper
  cannot send a turn before the last one is answered; ``behind_schedule`` says how late turns
  went out, and latency is counted both from the send and from the schedule.

Before the phases, a warm-up (``--warmup``, 15 s of 32 shoppers at 100 turns/s) lets each
fresh worker encode the texts it has not seen yet and fill its caches; it is reported on its
own line and not counted in any phase.

The server runs with ``--server-timing`` (``--no-server-timing`` for a server older than it),
so each answer also says how long it was in its worker and how much of that it waited for a
turn slot; with how late this generator woke for a scheduled turn, that tells the server's
share of the latency from the generator's own (both share the two cores).

A 503 must carry Retry-After and a problem+json body; the shopper waits that long and sends the
same turn again. 503s are counted apart from errors. Afterwards every conversation is read back
and its stored turns compared with the turns answered 200/201: none may be lost.
"""

from __future__ import annotations

import argparse
import asyncio
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

from web import read_server_timing

from .common import (
    ServerProcess,
    Shopper,
    catalogs_built,
    final_json,
    machine,
    machine_cpu,
    machine_cpu_since,
    remove_scratch,
    scratch_data_dir,
    summary,
    table,
)

API_KEY = "bench-load-key"
WARMUP_SHOPPERS, WARMUP_RATE = 32, 100.0  # the warm-up before the phases (--warmup)


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
    rate: float = 0.0                                      # offered turns/s; 0 = closed loop
    ok: list[float] = field(default_factory=list)          # latencies of 200/201 (from send)
    ok_scheduled: list[float] = field(default_factory=list)  # the same, from the schedule
    ok_at: list[float] = field(default_factory=list)       # when each came back (monotonic)
    start: float = 0.0
    behind: list[float] = field(default_factory=list)      # send time - scheduled time
    ok_in_window: int = 0
    shed: list[float] = field(default_factory=list)        # latencies of proper 503s
    bad_shed: int = 0                                      # 503 without Retry-After/problem
    reconnects: int = 0                                    # answers with Connection: close
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    convs: list[Conv] = field(default_factory=list)
    retry_after: set[str] = field(default_factory=set)
    kinds: dict[str, int] = field(default_factory=dict)
    # What the server said each 200/201 cost inside its worker (Server-Timing), in seconds:
    in_app: list[float] = field(default_factory=list)       # arrival in the app to answer
    app_cpu: list[float] = field(default_factory=list)      # the request thread's CPU
    slot_wait: list[float] = field(default_factory=list)    # waiting for a turn slot
    loop_lag: list[float] = field(default_factory=list)     # this generator waking late

    def error(self, kind: str, example: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_examples) < 5:
            self.error_examples.append(example[:300])


class HttpError(Exception):
    """The connection broke or the answer was not HTTP."""


class AsyncConnection:
    """One shopper's keep-alive HTTP/1.1 connection on the event loop. Reopened when it was
    idle for a second: a server may close a keep-alive connection that sat idle (gunicorn did
    after 2 s), and a request written into a connection the server is closing comes back with
    nothing."""

    IDLE_S = 1.0

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last = 0.0

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None
                      ) -> tuple[int, dict[str, str], bytes]:
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}",
                "Accept: application/json"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + data
        try:
            return await asyncio.wait_for(self._exchange(raw), self.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ValueError, HttpError) as exc:
            self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is not None and time.monotonic() - self.last > self.IDLE_S:
            self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"not an HTTP answer: {lines[0][:80]!r}")
        status = int(parts[1])
        hdrs: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            payload = b"".join(chunks)
        else:
            payload = await self.reader.readexactly(int(hdrs.get("content-length", "0")))
        self.last = time.monotonic()
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Connection:
    """A blocking keep-alive connection (http.client), for reading conversations back."""

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


def _server_timing(ph: Phase, value: str) -> None:
    """Keep the app, cpu and wait durations of a ``Server-Timing`` header (in seconds)."""
    dur = read_server_timing(value)
    if {"app", "cpu", "wait"} <= dur.keys():
        ph.in_app.append(dur["app"] / 1000.0)
        ph.app_cpu.append(dur["cpu"] / 1000.0)
        ph.slot_wait.append(dur["wait"] / 1000.0)


def _kind(body: dict[str, Any]) -> str:
    return ("tap" if "answer" in body else "typed" if "text" in body else
            "feedback" if "feedback" in body else "action")


async def _shopper_loop(ph: Phase, port: int, seed: int, start: float, deadline: float,
                        timeout: float, myntra_share: float, catalogs: list[str]) -> None:
    rng = random.Random(seed)
    conn = AsyncConnection(port, timeout)
    server = {"Authorization": f"Bearer {API_KEY}"}
    mean_think = ph.shoppers / ph.rate if ph.rate else 0.0
    # Paced shoppers start spread over one think time, not all at once.
    schedule = start + (rng.uniform(0, mean_think) if mean_think else 0.0)

    async def send(method: str, path: str, body: Any, headers: dict[str, str],
                   conv: Conv | None) -> tuple[int, bytes] | None:
        """Send until answered (waiting out 503s); None when time is up or it failed."""
        nonlocal schedule
        if mean_think:
            schedule += rng.expovariate(1.0 / mean_think)
            now = time.monotonic()
            if schedule > now:
                await asyncio.sleep(schedule - now)
                ph.loop_lag.append(time.monotonic() - schedule)
            elif now - schedule > 2.0:
                schedule = now - 2.0  # never more than 2 s of turns owed at once
        scheduled = schedule if mean_think else None
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            if scheduled is not None:
                ph.behind.append(max(t0 - scheduled, 0.0))
            try:
                status, hdrs, raw = await conn.request(method, path, body, headers)
            except HttpError as exc:
                if conv is not None:
                    conv.doubtful += 1
                ph.error(str(exc).split(":", 1)[0], f"{method} {path}: {exc}")
                return None
            t1 = time.monotonic()
            if hdrs.get("connection", "").lower() == "close":
                ph.reconnects += 1  # a crowded worker handing the connection on
            if status == 503:
                if _shed_ok(hdrs, raw):
                    ph.shed.append(t1 - t0)
                    ph.retry_after.add(hdrs["retry-after"])
                    wait = min(float(hdrs["retry-after"]), max(deadline - t1, 0))
                    await asyncio.sleep(wait * rng.uniform(0.8, 1.2))
                    scheduled = None  # the retry's latency is not the schedule's
                    continue
                ph.bad_shed += 1
                ph.error("503 without Retry-After/problem+json", raw.decode(errors="replace"))
                return None
            if status in (200, 201):
                ph.ok.append(t1 - t0)
                ph.ok_at.append(t1)
                if "server-timing" in hdrs:
                    _server_timing(ph, hdrs["server-timing"])
                if scheduled is not None:
                    ph.ok_scheduled.append(t1 - min(scheduled, t0))
                if t1 <= deadline:
                    ph.ok_in_window += 1
                    kind = _kind(body) if method == "POST" else "read"
                    ph.kinds[kind] = ph.kinds.get(kind, 0) + 1
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
        got = await send("POST", "/api/v1/conversations", body, server, None)
        if got is None:
            continue
        turn = json.loads(got[1])
        conv = Conv(turn["conversation_id"], turn["token"])
        ph.convs.append(conv)
        path = f"/api/v1/conversations/{conv.conversation_id}/turns"
        headers = {"Authorization": f"Bearer {conv.token}"}
        while time.monotonic() < deadline and (nxt := shopper.next(turn)) is not None:
            got = await send("POST", path, nxt, headers, conv)
            if got is None:
                break
            conv.answered += 1
            turn = json.loads(got[1])
    conn.close()


async def _drive(ph: Phase, port: int, seed: int, timeout: float, myntra_share: float,
                 catalogs: list[str]) -> None:
    start = ph.start = time.monotonic()
    deadline = start + ph.seconds
    await asyncio.gather(*(
        _shopper_loop(ph, port, seed * 100003 + i, start, deadline, timeout, myntra_share,
                      catalogs) for i in range(ph.shoppers)))


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
              myntra_share: float, catalogs: list[str], seed: int,
              rate: float = 0.0) -> dict[str, Any]:
    ph = Phase(shoppers, seconds, rate)
    server.cpu_seconds()  # the server's CPU is counted from here
    machine0 = machine_cpu()
    cpu0, start = time.process_time(), time.monotonic()
    asyncio.run(asyncio.wait_for(_drive(ph, server.port, seed, timeout, myntra_share, catalogs),
                                 seconds + timeout + 30))
    drained = time.monotonic() - start
    client_cpu = time.process_time() - cpu0
    server_cpu = server.cpu_seconds()
    machine_use = machine_cpu_since(machine0)
    memory = server.memory()
    check = _verify(server.port, list(ph.convs), timeout)
    turns = [c.answered for c in ph.convs]
    requests = len(ph.ok) + len(ph.shed)
    return {
        "shoppers": shoppers, "seconds": seconds, "drained_s": round(drained, 1),
        "mode": f"paced at {rate:g} turns/s" if rate else "closed loop",
        "offered_turns_per_s": rate or None,
        "turns_ok": len(ph.ok), "turns_per_s": round(ph.ok_in_window / seconds, 1),
        "turn_kinds": ph.kinds,
        "latency_ok": summary(ph.ok),
        "latency_from_schedule": summary(ph.ok_scheduled) if rate else None,
        "behind_schedule": summary(ph.behind) if rate else None,
        # The same answers as the server timed them (none without --server-timing), and how
        # late this generator woke for a scheduled turn: what of the latency is the server's.
        "in_server": {"app": summary(ph.in_app), "cpu": summary(ph.app_cpu),
                      "slot_wait": summary(ph.slot_wait)},
        "generator_lag": summary(ph.loop_lag) if rate else None,
        "shed_503": len(ph.shed), "latency_503": summary(ph.shed),
        "retry_after_values": sorted(ph.retry_after),
        "bad_503": ph.bad_shed, "errors": sum(ph.errors.values()),
        "reconnects_asked": ph.reconnects,
        "errors_by_kind": ph.errors, "error_examples": ph.error_examples,
        "conversations": len(ph.convs),
        "turns_per_conversation": round(sum(turns) / len(turns), 2) if turns else 0,
        "cpu": {"server_s": round(server_cpu, 1), "client_s": round(client_cpu, 1),
                "server_s_by_pid": {str(k): v for k, v in server.cpu_split.items()},
                "server_ms_per_request": round(1000 * server_cpu / requests, 2)
                if requests else None,
                "client_ms_per_request": round(1000 * client_cpu / requests, 2)
                if requests else None},
        "verify": check, "server_memory": memory,
        # The whole machine while the phase ran (every process, not only ours), and the p99
        # of each 10 s: a run that went bad shows when, and whether the host took the CPU.
        "machine_cpu": machine_use,
        "p99_by_10s_ms": _p99_by_window(ph, 10.0),
    }


def _p99_by_window(ph: Phase, window: float) -> list[float | None]:
    """The p99 latency of the answers that came back in each ``window`` seconds."""
    buckets: list[list[float]] = [[] for _ in range(max(int(ph.seconds // window), 1))]
    for latency, at in zip(ph.ok, ph.ok_at, strict=True):
        i = int((at - ph.start) // window)
        if 0 <= i < len(buckets):
            buckets[i].append(latency)
    return [summary(b)["p99_ms"] if b else None for b in buckets]


def report(fig: dict[str, Any]) -> str:
    rows = []
    for ph in fig["phases"]:
        lat = ph["latency_ok"]
        rows.append([ph["shoppers"], ph["mode"], ph["turns_ok"], ph["turns_per_s"],
                     lat["p50_ms"], lat["p95_ms"], lat["p99_ms"], ph["shed_503"],
                     ph["errors"], ph["verify"]["conversations"],
                     ph["verify"]["lost_turn_conversations"],
                     ph["cpu"]["server_ms_per_request"], ph["cpu"]["client_ms_per_request"],
                     ph["server_memory"]["sum_VmHWM_mib"]])
    lines = [
        f"server: {fig['server_cmd']}",
        f"start-up: /healthz 200 after {fig['startup']['healthz_200_s']} s, all workers "
        f"ready after {fig['startup']['all_workers_ready_s']} s",
        table(rows, ["shoppers", "mode", "turns ok", "turns/s", "p50 ms", "p95 ms", "p99 ms",
                     "503s", "errors", "convs", "lost", "server CPU ms/req",
                     "client CPU ms/req", "peak RSS MiB (sum)"]),
    ]
    for ph in fig["phases"]:
        split = ph["cpu"]["server_s_by_pid"]
        per = ", ".join(f"pid {pid}: peak {m.get('VmHWM')} MiB (anon {m.get('RssAnon')}), "
                        f"{split.get(pid, '?')} s CPU"
                        for pid, m in ph["server_memory"]["processes"].items())
        lines.append(f"{ph['shoppers']} shoppers, {ph['mode']}: {per}; turns {ph['turn_kinds']}; "
                     f"{ph['reconnects_asked']} answers asked to reconnect")
        use = ph["machine_cpu"]
        lines.append(f"  p99 by 10 s (ms): {ph['p99_by_10s_ms']}; the machine meanwhile: "
                     f"{use['busy_pct']} % busy of {use['cores']} cores, steal "
                     f"{use['steal_pct']} %")
        if ph["latency_from_schedule"]:
            lines.append(f"  from the schedule: p50 {ph['latency_from_schedule']['p50_ms']} ms, "
                         f"p99 {ph['latency_from_schedule']['p99_ms']} ms; sent behind "
                         f"schedule p99 {ph['behind_schedule']['p99_ms']} ms")
        srv = ph["in_server"]
        if srv["app"]["n"]:
            lag = ph["generator_lag"]
            lines.append(f"  in the worker (Server-Timing): p50 {srv['app']['p50_ms']} ms, p99 "
                         f"{srv['app']['p99_ms']} ms, of which waiting for a turn slot p99 "
                         f"{srv['slot_wait']['p99_ms']} ms; the request thread's CPU p50 "
                         f"{srv['cpu']['p50_ms']} ms, p99 {srv['cpu']['p99_ms']} ms"
                         + (f"; the generator woke late p99 {lag['p99_ms']} ms" if lag else ""))
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


def _phases(spec: str) -> list[tuple[int, float]]:
    """"64@500,64,256" -> [(64, 500.0), (64, 0.0), (256, 0.0)]."""
    out = []
    for part in (x.strip() for x in spec.split(",")):
        if part:
            n, _, rate = part.partition("@")
            out.append((int(n), float(rate or 0)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The production server under concurrent shoppers.")
    p.add_argument("--data-dir", default=os.environ.get("SHOPPER_DATA_DIR", "./var"),
                   help="where the catalogs are built (default ./var)")
    p.add_argument("--in-place", action="store_true",
                   help="let the server write conversations into DATA_DIR/shopper.db; by "
                        "default it serves DATA_DIR's catalogs with a scratch database")
    p.add_argument("--seconds", type=float, default=60.0, help="per phase (default 60)")
    p.add_argument("--shoppers", default="64@500,64@250,64,256",
                   help="phases, comma-separated: N shoppers closed loop, or N@R paced at R "
                        "turns/s in all (default 64@500,64@250,64,256)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--warmup", type=float, default=15.0,
                   help=f"seconds of {WARMUP_SHOPPERS} shoppers at {WARMUP_RATE:g} turns/s "
                        "before the phases, not counted (default 15): a fresh worker encodes "
                        "texts it has not seen and fills its caches, which is start-up, not the "
                        "steady state; 0 to skip")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra `shopper serve` argument, e.g. --server-arg=--threads=32")
    p.add_argument("--no-server-timing", action="store_true",
                   help="do not ask the server for its Server-Timing header (a server before "
                        "it was added has no --server-timing)")
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
    if not args.no_server_timing:
        args.server_arg = ["--server-timing", *args.server_arg]
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
        if args.warmup > 0:
            w = run_phase(server, WARMUP_SHOPPERS, args.warmup, args.timeout,
                          args.myntra_share, catalogs, args.seed + 1000, WARMUP_RATE)
            fig["warmup"] = {"seconds": args.warmup, "shoppers": WARMUP_SHOPPERS,
                             "rate": WARMUP_RATE, "turns_ok": w["turns_ok"],
                             "errors": w["errors"], "p99_ms": w["latency_ok"]["p99_ms"]}
        fig["phases"] = []
        for i, (n, rate) in enumerate(_phases(args.shoppers)):
            fig["phases"].append(run_phase(server, n, args.seconds, args.timeout,
                                           args.myntra_share, catalogs, args.seed + i, rate))
        log = server.log_text()
        fig["server_log"] = str(server.log_path)
        fig["server_log_errors"] = sum(1 for line in log.splitlines()
                                       if " ERROR " in line or "Traceback" in line
                                       or "WORKER TIMEOUT" in line)
    finally:
        server.stop()
        if not args.in_place:
            remove_scratch(serve_dir)
    if "warmup" in fig:
        wu = fig["warmup"]
        print(f"warm-up (not counted): {wu['seconds']:g} s of {wu['shoppers']} shoppers at "
              f"{wu['rate']:g} turns/s, "
              f"{wu['turns_ok']} turns, p99 {wu['p99_ms']} ms, {wu['errors']} errors")
    print(report(fig))
    print(final_json(fig))
    ok = all(ph["errors"] == 0 and ph["verify"]["lost_turn_conversations"] == 0
             for ph in fig["phases"]) and fig.get("warmup", {}).get("errors", 0) == 0
    return 0 if ok else 1
