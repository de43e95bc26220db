"""Built catalogs: facets derived from the data, the index, rebuild only on change."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from catalog.catalog import Catalog, CatalogCorrupt, CatalogNotBuilt, ensure_catalog, load_catalog
from catalog.embedder import CachedEmbedder


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
