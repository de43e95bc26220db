"""One turn against its floor, in one process.

The floor is what no turn can beat: encode one short query with the model the turn uses
(``--embedder``: the int8 ONNX copy or the full torch model) and search the fashion index
(k=10). A full turn goes through the Flask test client: routing, auth, loading
the conversation from SQLite, understanding, the hard filter, cosine over the candidates,
the next question, MMR picks with reasons, the message, and the write. Shoppers hold real
conversations (typed openings, taps, typed answers, more, feedback, refinements). One floor
sample is taken right after each measured turn, so background load hits both alike.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .common import (
    Shopper,
    catalogs_built,
    describe,
    final_json,
    machine,
    proc_memory,
    summary,
    table,
)

KEY = "bench-turn-key"
TARGET_MEDIAN, TARGET_P99 = 1.5, 3.0


class CountingEmbedder:
    """Counts the model calls behind the cache (a cache hit never reaches this)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dimensions = inner.dimensions
        self.name = inner.name
        self.calls = 0
        self.texts = 0

    def embed(self, texts: Sequence[str], *, batch_size: int = 64,
              progress: bool = False) -> NDArray[np.float32]:
        self.calls += 1
        self.texts += len(texts)
        out: NDArray[np.float32] = self.inner.embed(texts, batch_size=batch_size,
                                                    progress=progress)
        return out


def build_app(data_dir: Path, torch_threads: int | None, embedder_kind: str | None = None,
              onnx_threads: int = 1) -> tuple[Any, Any, Any]:
    """The app over the built catalogs of ``data_dir`` and a fresh SQLite file, with the
    query embedder the server would pick for ``embedder_kind`` (onnx, torch, None)."""
    from assistant.engine import Assistant
    from catalog.catalog import load_catalog
    from catalog.embedder import CachedEmbedder, SentenceTransformerEmbedder
    from catalog.onnx_model import check_texts_from, onnx_dir, query_embedder
    from web import Services, create_app

    names = catalogs_built(data_dir)
    if "fashion" not in names:
        raise SystemExit(f"no built fashion catalog in {data_dir}/catalogs: build it first "
                         "(see docs/performance.md)")
    catalogs = {n: load_catalog(data_dir, n) for n in names}
    query = query_embedder(embedder_kind, onnx_dir(data_dir, os.environ.get("SHOPPER_ONNX_DIR")),
                           SentenceTransformerEmbedder(threads=torch_threads),
                           threads=onnx_threads, check_texts=check_texts_from(catalogs))
    counting = CountingEmbedder(query)
    embedder = CachedEmbedder(counting)
    db_dir = Path(tempfile.mkdtemp(prefix="shopper-bench-turn-"))
    svc = Services(data_dir=db_dir, api_key=KEY)
    embedder.embed(["warm up"])
    svc.assistant = Assistant(catalogs=catalogs, embedder=embedder, store=svc.store,
                              default_catalog="fashion")
    svc.ready.set()
    app = create_app({"TESTING": True, "DATA_DIR": str(db_dir), "API_KEY": KEY,
                      "ANON_RATE_PER_MINUTE": 10**9}, services=svc)
    return app, svc, counting


class Driver:
    """Runs simulated conversations through the test client, one request at a time."""

    def __init__(self, client: Any, seed: int) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.errors: list[str] = []
        self.kinds: dict[str, int] = {}
        self.example: list[str] = []

    def conversations(self) -> Any:
        """Yields (kind, seconds) for every request of endless conversations."""
        while True:
            shopper = Shopper(random.Random(self.rng.random()))
            body = shopper.opening()
            t0 = time.perf_counter()
            r = self.client.post("/api/v1/conversations", json=body)
            dt = time.perf_counter() - t0
            if r.status_code != 201:
                self.errors.append(f"create {r.status_code} {r.get_json()}")
                continue
            turn = r.get_json()
            headers = {"Authorization": f"Bearer {turn['token']}"}
            path = f"/api/v1/conversations/{turn['conversation_id']}/turns"
            log = [describe(body)]
            yield "typed", dt
            while (nxt := shopper.next(turn)) is not None:
                t0 = time.perf_counter()
                r = self.client.post(path, json=nxt, headers=headers)
                dt = time.perf_counter() - t0
                if r.status_code != 200:
                    self.errors.append(f"turn {describe(nxt)}: {r.status_code} "
                                       f"{r.get_json()}")
                    break
                turn = r.get_json()
                log.append(describe(nxt))
                kind = ("tap" if "answer" in nxt else "typed" if "text" in nxt else
                        "feedback" if "feedback" in nxt else "action")
                yield kind, dt
            if len(log) > len(self.example):
                self.example = log


def _queries(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [Shopper(random.Random(rng.random())).opening()["text"] for _ in range(n)]


def run(data_dir: Path, turns: int, warmup: int, seed: int, torch_threads: int | None,
        profile_turns: int, embedder_kind: str | None = None,
        onnx_threads: int = 1) -> dict[str, Any]:
    t_load = time.perf_counter()
    app, svc, counting = build_app(data_dir, torch_threads, embedder_kind, onnx_threads)
    load_s = time.perf_counter() - t_load
    fashion = svc.assistant.catalogs["fashion"]
    inner = counting.inner
    client = app.test_client()
    driver = Driver(client, seed)
    stream = driver.conversations()
    queries = _queries(turns + warmup, seed + 1)

    encode_s: list[float] = []

    def floor_once(q: str) -> float:
        t0 = time.perf_counter()
        vec = inner.embed([q])[0]
        encode_s.append(time.perf_counter() - t0)
        fashion.index.search(vec, 10)
        return time.perf_counter() - t0

    for i in range(warmup):
        next(stream)
        floor_once(queries[i])
    calls0 = counting.calls
    del encode_s[:]
    turn_s: list[float] = []
    floor_s: list[float] = []
    by_kind: dict[str, list[float]] = {}
    started = time.perf_counter()
    for i in range(turns):
        kind, dt = next(stream)
        turn_s.append(dt)
        by_kind.setdefault(kind, []).append(dt)
        floor_s.append(floor_once(queries[warmup + i]))
    wall = time.perf_counter() - started
    model_calls = counting.calls - calls0  # the floor calls the model directly, uncounted

    hot: list[tuple[str, float, float]] = []
    prof_text = ""
    if profile_turns:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(profile_turns):
            next(stream)
        prof.disable()
        hot, prof_text = _hotspots(prof, profile_turns)

    t, f = summary(turn_s), summary(floor_s)
    figures: dict[str, Any] = {
        "benchmark": "turn", "machine": machine(), "data_dir": str(data_dir),
        "embedder": inner.name, "torch_threads": torch_threads,
        "onnx_threads": onnx_threads if "onnx" in inner.name else None,
        "blas_threads": _blas_threads(),
        "turns": turns, "warmup": warmup,
        "floor": f, "floor_encode": summary(encode_s), "turn": t,
        "ratio_median": round(t["p50_ms"] / f["p50_ms"], 2),
        "ratio_p99": round(t["p99_ms"] / f["p50_ms"], 2),
        "ratio_p99_to_floor_p99": round(t["p99_ms"] / f["p99_ms"], 2),
        "targets": {"median": TARGET_MEDIAN, "p99": TARGET_P99},
        "turn_by_kind": {k: summary(v) for k, v in by_kind.items()},
        "model_calls_per_turn": round(model_calls / turns, 2),
        "errors": len(driver.errors), "error_examples": driver.errors[:3],
        "app_load_s": round(load_s, 2), "wall_s": round(wall, 1),
        "rss": proc_memory(),
        "example_conversation": driver.example[:10],
        "profile_ms_per_turn": {name: {"cum": cum, "own": own} for name, cum, own in hot},
    }
    figures["meets_targets"] = (figures["ratio_median"] <= TARGET_MEDIAN
                                and figures["ratio_p99"] <= TARGET_P99)
    figures["_profile_text"] = prof_text
    figures["_db_dir"] = str(svc.data_dir)
    return figures


def _blas_threads() -> dict[str, int] | None:
    """Threads of each BLAS/OpenMP library loaded (numpy's OpenBLAS, faiss's, torch's)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return {f"{i['internal_api']}:{Path(i['filepath']).name}": int(i["num_threads"])
            for i in threadpool_info()}


_WATCH = [
    ("flask test client request", "test.py", "open"),
    ("view: add_turn", "web/api.py", "add_turn"),
    ("view: create_conversation", "web/api.py", "create_conversation"),
    ("engine: _interpret (understanding)", "engine.py", "_interpret"),
    ("engine: _respond (plan)", "engine.py", "_respond"),
    ("model: SentenceTransformer.encode", "sentence_transformer/model.py", "encode"),
    ("model: onnxruntime InferenceSession.run", "onnxruntime_inference_collection.py", "run"),
    ("index: FaissIndex.scores (cosine)", "catalog/index.py", "scores"),
    ("ranking: hard_mask", "ranking.py", "hard_mask"),
    ("ranking: candidates", "ranking.py", "candidates"),
    ("questions: choose_question", "questions.py", "choose_question"),
    ("ranking: rank (MMR + reasons)", "ranking.py", "rank"),
    ("engine: constraints (profile)", "engine.py", "constraints"),
    ("messages: compose_message", "messages.py", "compose_message"),
    ("store: load_conversation", "store.py", "load_conversation"),
    ("store: conversation_row (auth)", "store.py", "conversation_row"),
    ("store: save_turn", "store.py", "save_turn"),
    ("store: transaction (BEGIN/COMMIT)", "store.py", "_immediate"),
    ("machine: trigger", "machine.py", "trigger"),
    ("json.dumps", "json/__init__.py", "dumps"),
]


def _hotspots(prof: cProfile.Profile, n: int) -> tuple[list[tuple[str, float, float]], str]:
    stats = pstats.Stats(prof)
    raw = stats.stats  # type: ignore[attr-defined]
    out = []
    for label, file_part, func in _WATCH:
        cum = own = 0.0
        for (filename, _line, name), (_cc, _nc, tt, ct, _callers) in raw.items():
            if name == func and filename.replace(os.sep, "/").endswith(file_part):
                cum += ct
                own += tt
        if cum:
            out.append((label, round(cum * 1000 / n, 2), round(own * 1000 / n, 2)))
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
    text = "\n".join(line for line in buf.getvalue().splitlines()
                     if line.strip() and not line.startswith(("   Ordered", "Ordered")))
    return out, text


def report(fig: dict[str, Any]) -> str:
    f, t = fig["floor"], fig["turn"]
    rows = [[f"floor: encode ({fig['embedder']}) + search fashion (k=10)", f["n"], f["p50_ms"],
             f["p95_ms"], f["p99_ms"], "-"],
            ["  of which: encode", fig["floor_encode"]["n"], fig["floor_encode"]["p50_ms"],
             fig["floor_encode"]["p95_ms"], fig["floor_encode"]["p99_ms"], ""],
            ["full turn (Flask test client)", t["n"], t["p50_ms"], t["p95_ms"], t["p99_ms"],
             f"median {fig['ratio_median']}x, p99 {fig['ratio_p99']}x floor"]]
    for kind, s in sorted(fig["turn_by_kind"].items()):
        rows.append([f"  turns that are: {kind}", s["n"], s["p50_ms"], s["p95_ms"],
                     s["p99_ms"], ""])
    lines = [table(rows, ["what", "n", "p50 ms", "p95 ms", "p99 ms", "vs floor"]),
             f"targets: median <= {TARGET_MEDIAN}x floor, p99 <= {TARGET_P99}x floor "
             f"(floor median): {'met' if fig['meets_targets'] else 'NOT met'}",
             f"model calls per turn (cache misses): {fig['model_calls_per_turn']}; "
             f"errors: {fig['errors']}; query embedder: {fig['embedder']}; torch threads: "
             f"{fig['torch_threads']}; onnx threads: {fig['onnx_threads']}; thread pools: "
             f"{fig['blas_threads']}",
             f"example conversation: {' -> '.join(fig['example_conversation'])}"]
    if fig["profile_ms_per_turn"]:
        lines.append("")
        lines.append(table([[k, v["cum"], v["own"]] for k, v in
                            fig["profile_ms_per_turn"].items()],
                           ["profiled (cProfile; inflates Python time)", "cum ms/turn",
                            "own ms/turn"]))
        lines.append(fig["_profile_text"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="One turn against its floor (encode + search).")
    p.add_argument("--data-dir", default=os.environ.get("SHOPPER_DATA_DIR", "./var"),
                   help="where the catalogs are built (default ./var); the benchmark's "
                        "conversations go to a scratch SQLite file")
    p.add_argument("--turns", type=int, default=500)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--torch-threads", type=int, default=1,
                   help="as `shopper serve` sets per worker (default 1)")
    p.add_argument("--embedder", choices=("onnx", "torch"),
                   default=os.environ.get("SHOPPER_EMBEDDER") or None,
                   help="what encodes queries, in the turn and the floor alike (default "
                        "$SHOPPER_EMBEDDER, else as the server: onnx when onnxruntime is "
                        "installed)")
    p.add_argument("--onnx-threads", type=int, default=1,
                   help="as `shopper serve` sets per worker (default 1)")
    p.add_argument("--profile", type=int, default=100, metavar="N",
                   help="then profile N more turns with cProfile (0: do not)")
    p.add_argument("--math-threads", type=int, default=1,
                   help="BLAS/OpenMP threads, as `shopper serve --math-threads` sets per worker "
                        "(default 1; 0 leaves the libraries' own default, all cores)")
    args = p.parse_args(argv)
    if args.math_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.math_threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    fig = run(Path(args.data_dir).resolve(), args.turns, args.warmup, args.seed,
              args.torch_threads, args.profile, args.embedder, args.onnx_threads)
    print(report(fig))
    fig.pop("_profile_text", None)
    shutil.rmtree(fig.pop("_db_dir"), ignore_errors=True)
    print(final_json(fig))
    return 0 if fig["errors"] == 0 else 1
