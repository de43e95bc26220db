"""Built catalogs: facets derived from the data, the index, rebuild only on change."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from catalog.catalog import Catalog, CatalogCorrupt, CatalogNotBuilt, ensure_catalog, load_catalog
from catalog.embedder import CachedEmbedder
from catalog.index import limit_threads


def test_facets_are_the_attributes_worth_asking(fashion: Catalog, myntra: Catalog) -> None:
    assert {"gender", "article_type", "colour", "usage"} <= set(fashion.facet_names)
    assert "year" not in fashion.facet_names  # the mapping says so
    assert "brand" not in myntra.facet_names  # hundreds of brands: too many to offer
    assert {"gender", "colour", "article_type"} <= set(myntra.facet_names)


def test_index_finds_what_the_words_mean(fashion: Catalog, embedder: CachedEmbedder) -> None:
    q = embedder.embed(["wrist watch for men"])[0]
    hits = fashion.index.search(q, 5)
    assert len(hits) == 5
    assert all(fashion.products[h.row].attributes["article_type"] == "Watches" for h in hits)
    rows = np.flatnonzero(fashion.codes["gender"] == fashion.code_of["gender"]["Women"])
    sub = fashion.index.search(q, 5, rows=rows)
    assert all(fashion.products[h.row].attributes["gender"] == "Women" for h in sub)


def _cpu_by_thread() -> dict[int, int]:
    """Clock ticks of CPU each thread of this process has used (Linux /proc)."""
    out = {}
    for task in os.listdir("/proc/self/task"):
        try:
            fields = open(f"/proc/self/task/{task}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        out[int(task)] = int(fields[11]) + int(fields[12])  # utime + stime
    return out


def test_scoring_in_a_request_thread_keeps_to_one_thread(fashion: Catalog) -> None:
    """What `serve --math-threads 1` promises holds in the threads that answer requests, not
    only in the one that set it: scoring a large subset uses no second, spinning thread."""
    limit_threads(1)
    q = fashion.index.rows(np.array([0]))[0]
    rows = np.resize(np.arange(len(fashion), dtype=np.int64), 40_000)  # rows may repeat
    seen: dict[str, object] = {}

    def request_thread() -> None:
        fashion.index.scores(q, rows)
        before = _cpu_by_thread()
        for _ in range(400):
            fashion.index.scores(q, rows)
        after = _cpu_by_thread()
        seen["tid"] = threading.get_native_id()
        seen["used"] = {t: after[t] - before.get(t, 0) for t in after}

    t = threading.Thread(target=request_thread)
    t.start()
    t.join()
    used: dict[int, int] = seen["used"]  # type: ignore[assignment]
    own = used.pop(seen["tid"])  # type: ignore[arg-type]
    assert own >= 20, "too little work to tell"
    helpers = {tid: ticks for tid, ticks in used.items() if ticks > own // 3}
    assert not helpers, f"other threads worked along: {helpers} ticks against {own}"


def test_durable_and_consumable_kinds(fashion: Catalog) -> None:
    kinds = {fashion.products[r].attributes["article_type"]: fashion.purchase_kind(r)
             for r in range(len(fashion))}
    assert kinds["Watches"] == "durable"
    assert kinds["Deodorant"] == "consumable"


def test_reuses_the_build_and_detects_damage(tmp_path: Path, built_data_dir: Path,
                                             embedder: CachedEmbedder) -> None:
    shutil.copytree(built_data_dir / "catalogs" / "myntra", tmp_path / "catalogs" / "myntra")
    before = (tmp_path / "catalogs" / "myntra" / "index.faiss").stat().st_mtime_ns
    cat = ensure_catalog(tmp_path, "myntra", embedder, every=8, progress=False)
    assert (tmp_path / "catalogs" / "myntra" / "index.faiss").stat().st_mtime_ns == before
    assert len(cat) > 1000
    (tmp_path / "catalogs" / "myntra" / "vectors.npy").write_bytes(b"garbage")
    with pytest.raises(CatalogCorrupt, match="rebuild"):
        load_catalog(tmp_path, "myntra")
    with pytest.raises(CatalogNotBuilt, match="shopper catalog import"):
        load_catalog(tmp_path, "nothing")


def test_a_bounded_cache_keeps_to_its_bytes_and_freezes_what_it_shares() -> None:
    from catalog.lru import BoundedLRU

    cache: BoundedLRU[tuple[np.ndarray, np.ndarray]] = BoundedLRU(100, max_bytes=3000)
    for i in range(10):
        got = cache.get(i, lambda: (np.zeros(100, dtype=np.int64), np.ones(25)))  # 1,000 B
        assert not got[0].flags.writeable and not got[1].flags.writeable
    assert len(cache) == 3 and cache.nbytes == 3000  # the 3 most recent
    assert cache.get(9, lambda: pytest.fail("9 was kept")) is got
    big = cache.get("big", lambda: (np.zeros(1000), np.zeros(1)))  # larger than all of it
    assert len(big[0]) == 1000 and "big" not in cache._items and len(cache) == 3
