"""What every benchmark shares: percentiles, tables, the machine, process memory, the real
server in a subprocess, and simulated shoppers who hold whole conversations."""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

__all__ = [
    "REPO", "ServerProcess", "Shopper", "catalogs_built", "final_json", "machine",
    "percentile", "proc_memory", "scratch_data_dir", "summary", "table",
]


# Figures ----------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(seconds: Sequence[float]) -> dict[str, Any]:
    """n, mean, p50, p95, p99 and max of durations, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {"n": 0, "mean_ms": None, "p50_ms": None, "p95_ms": None, "p99_ms": None,
                "max_ms": None}
    return {"n": len(ms), "mean_ms": round(sum(ms) / len(ms), 2),
            "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2)}


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain fixed-width table."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value)


def machine() -> dict[str, Any]:
    """The machine a figure ran on: cores, memory, CPU model, load, date."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem_kb / 2**20, 1),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def machine_cpu() -> list[int]:
    """The machine's CPU time counters so far (/proc/stat, all cores; empty if unreadable)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return []
    return [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal


def machine_cpu_since(before: list[int]) -> dict[str, Any]:
    """Share of the machine's CPU time since ``before`` that was busy (every process on it)
    and that the hypervisor stole (a host busy with other guests shows here)."""
    after = machine_cpu()
    if not before or not after:
        return {"busy_pct": None, "steal_pct": None, "iowait_pct": None,
                "cores": os.cpu_count()}
    d = [a - b for a, b in zip(after, before, strict=True)]
    total = sum(d) or 1
    user, nice, system, idle, iowait, irq, softirq, steal = d
    return {"busy_pct": round(100 * (user + nice + system + irq + softirq) / total, 1),
            "steal_pct": round(100 * steal / total, 2),
            "iowait_pct": round(100 * iowait / total, 2), "cores": os.cpu_count()}


def final_json(figures: dict[str, Any]) -> str:
    """The last line every benchmark prints."""
    return json.dumps(figures, sort_keys=True, default=str)


# Process memory ---------------------------------------------------------------------------
_MEM_KEYS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


def proc_memory(pid: int | str = "self") -> dict[str, float]:
    """VmHWM (peak resident), VmRSS, RssAnon, RssFile of a process, in MiB ({} if gone)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in _MEM_KEYS:
                out[key] = round(int(rest.split()[0]) / 1024.0, 1)
    except (OSError, ValueError, IndexError):
        return {}
    return out


def children(pid: int) -> list[int]:
    """Direct children of a process (the server's workers of its main process)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return sorted(kids)


# The real server --------------------------------------------------------------------------
def catalogs_built(data_dir: Path) -> list[str]:
    return sorted(p.parent.name for p in (data_dir / "catalogs").glob("*/manifest.json"))


def scratch_data_dir(data_dir: Path) -> Path:
    """A fresh data dir whose ``catalogs`` and ``models`` are links to ``data_dir``'s: the
    server serves the built indexes and the exported ONNX model (exporting it there once)
    but writes its conversations to an empty SQLite file."""
    from assistant.store import open_db

    tmp = Path(tempfile.mkdtemp(prefix="shopper-bench-"))
    (tmp / "catalogs").symlink_to((data_dir / "catalogs").resolve(), target_is_directory=True)
    (data_dir / "models").mkdir(exist_ok=True)
    (tmp / "models").symlink_to((data_dir / "models").resolve(), target_is_directory=True)
    # Migrate here: two workers migrating a fresh database at once can fail to boot
    # ("database is locked", see docs/performance.md); that is not what is measured.
    open_db(tmp / "shopper.db").conn.close()
    return tmp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """``python -m web.cli serve`` (granian) on a free loopback port."""

    data_dir: Path
    workers: int = 2
    extra_args: Sequence[str] = ()
    api_key: str = "bench-server-key"
    module: str = "web.cli"
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    log_path: Path | None = None
    _cpu_by_pid: dict[int, float] = field(default_factory=dict)
    _cpu_seen: float = 0.0
    cpu_split: dict[int, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="shopper-bench-server-", suffix=".log")[1])
        env = {**os.environ, "SHOPPER_API_KEY": self.api_key, "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **self.env}
        cmd = [sys.executable, "-m", self.module, "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--data-dir", str(self.data_dir), "--no-import",
               "--workers", str(self.workers), *self.extra_args]
        self.started_at = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=REPO)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 300.0) -> dict[str, float]:
        """Poll /healthz; returns seconds from start to the first 200 and to every worker
        having logged that it is ready. Raises RuntimeError with the log's tail."""
        assert self.proc is not None
        first_200: float | None = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early:\n" + self.log_text()[-3000:])
            if first_200 is None:
                try:
                    with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                        if r.status == 200:
                            first_200 = time.monotonic() - self.started_at
                except (urllib.error.URLError, OSError):
                    pass
            if first_200 is not None and \
                    self.log_text().count("ready: catalogs") >= self.workers:
                return {"healthz_200_s": round(first_200, 2),
                        "all_workers_ready_s": round(time.monotonic() - self.started_at, 2)}
            time.sleep(0.1)
        raise RuntimeError("server not ready in time:\n" + self.log_text()[-3000:])

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *children(self.proc.pid)]

    def memory(self) -> dict[str, Any]:
        """Peak and current resident memory of the master and each worker, in MiB."""
        procs = {str(pid): proc_memory(pid) for pid in self.pids()}
        return {"processes": procs,
                "sum_VmHWM_mib": round(sum(m.get("VmHWM", 0.0) for m in procs.values()), 1),
                "sum_VmRSS_mib": round(sum(m.get("VmRSS", 0.0) for m in procs.values()), 1),
                "sum_RssAnon_mib": round(sum(m.get("RssAnon", 0.0) for m in procs.values()),
                                         1)}

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the master and its live workers used since the last
        call (the first call returns the total so far)."""
        ticks = os.sysconf("SC_CLK_TCK")
        before = dict(self._cpu_by_pid)
        for pid in self.pids():
            try:
                text = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2:].split()
            self._cpu_by_pid[pid] = (int(fields[11]) + int(fields[12])) / ticks
        # each process's CPU seconds since the last call: shows how evenly the workers share
        self.cpu_split = {pid: round(t - before.get(pid, 0.0), 1)
                          for pid, t in self._cpu_by_pid.items()}
        total = sum(self._cpu_by_pid.values())
        used, self._cpu_seen = total - self._cpu_seen, total
        return used

    def stop(self) -> None:
        """SIGTERM the master (granian stops its workers); SIGKILL what is left."""
        if self.proc is None:
            return
        kids = children(self.proc.pid) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def remove_scratch(path: Path) -> None:
    if path.name.startswith("shopper-bench-") and path.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(path, ignore_errors=True)


# Simulated shoppers -----------------------------------------------------------------------
ARTICLES = ["sneakers", "running shoes", "a t-shirt", "a shirt", "a watch", "a kurta", "a top",
            "a handbag", "heels", "sunglasses", "a wallet", "flip flops", "sandals", "a belt",
            "a backpack", "jeans", "shorts", "trousers", "a dress", "a saree", "earrings",
            "a perfume", "track pants", "a sweatshirt", "a jacket", "a cap", "office shoes",
            "a deodorant", "a lipstick", "socks"]
WHO = ["for my wife", "for my husband", "for my son", "for my daughter", "for me",
       "for a friend", "for my dad", "for my mum", "", "", ""]
EXTRAS = ["", "", "", " in black", " in blue", " for the gym", " for a party",
          " for the office", ", not black", ", not white", " for summer", " something casual"]
VAGUE = ["something for my wife", "something for my husband", "a gift for my daughter",
         "something casual", "something for the gym", "something ethnic for a festival",
         "I need something for the office", "a present for my son"]
REFINE = ["in blue", "in black please", "not black", "something in white", "more formal",
          "for the gym", "for casual wear", "in red", "something for summer", "not white",
          "show me green ones", "for a party"]
UNSURE = ["not sure, show me more", "no preference", "any is fine", "just show me"]
MYNTRA_OPENINGS = ["a shirt for my husband under 1500 rupees", "a dress for my wife",
                   "jeans for men", "a kurta for a festival", "a t-shirt under 800",
                   "a jacket for my son", "a top for my daughter", "trousers for the office"]


def _opening(rng: random.Random, catalog: str) -> str:
    if catalog == "myntra":
        return rng.choice(MYNTRA_OPENINGS)
    r = rng.random()
    if r < 0.25:
        return rng.choice(VAGUE)
    if r < 0.5:
        return rng.choice(ARTICLES)
    text = f"{rng.choice(ARTICLES)} {rng.choice(WHO)}".strip() + rng.choice(EXTRAS)
    return text if rng.random() < 0.5 else f"I need {text}"


@dataclass
class Shopper:
    """A simulated shopper: opens in words, then mostly taps offered options, sometimes
    types, pages for more, likes or dislikes a pick, refines, and ends after 3-9 turns."""

    rng: random.Random
    catalog: str = "fashion"
    turns_left: int = 0
    finished: bool = False

    def __post_init__(self) -> None:
        self.turns_left = self.rng.randint(2, 8)  # after the opening

    def opening(self) -> dict[str, Any]:
        return {"channel": self.rng.choice(["web", "web", "web", "kiosk"]),
                "catalog": self.catalog, "text": _opening(self.rng, self.catalog)}

    def next(self, turn: dict[str, Any]) -> dict[str, Any] | None:
        """The next request body given the last Turn, or None when this shopper is done."""
        rng = self.rng
        if self.finished or turn.get("state") == "done":
            return None
        if self.turns_left <= 0:
            self.finished = True
            return {"action": "done"} if rng.random() < 0.4 else None
        self.turns_left -= 1
        q = turn.get("question")
        picks = turn.get("picks") or []
        if q and q.get("options"):
            r = rng.random()
            options = q["options"]
            if r < 0.72:
                weights = [max(int(o.get("count", 1)), 1) for o in options]
                o = rng.choices(options, weights)[0]
                return {"answer": {"attribute": q["attribute"], "value": o["value"]}}
            if r < 0.87:
                o = rng.choice(options)
                return {"text": rng.choice(["{}", "{} please", "I think {}", "{}, thanks"])
                        .format(str(o.get("label", o["value"])).lower())}
            if r < 0.93:
                return {"answer": {"attribute": q["attribute"], "value": None}}
            return {"text": rng.choice(UNSURE)}
        r = rng.random()
        if picks and r < 0.25:
            kind = rng.choice(["like", "like", "dislike", "not_interested", "already_own"])
            return {"feedback": {"product_id": rng.choice(picks)["product_id"], "kind": kind}}
        if r < 0.45:
            return {"action": "more"}
        if r < 0.50:
            return {"action": "cheaper"}
        if r < 0.56:
            self.turns_left = rng.randint(1, 4)
            return {"action": "start_over"} if rng.random() < 0.3 else \
                {"text": _opening(rng, self.catalog)}
        return {"text": rng.choice(REFINE)}


def describe(body: dict[str, Any]) -> str:
    """A request body in a few words, for the profile's example."""
    if "text" in body:
        return repr(body["text"])
    if "answer" in body:
        return f"tap {body['answer']['attribute']}={body['answer']['value']}"
    if "feedback" in body:
        return f"feedback {body['feedback']['kind']}"
    return f"action {body.get('action')}"
