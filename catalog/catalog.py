"""A built catalog: products, attribute codes for fast filtering, facets, vectors and index.

``ensure_catalog`` imports and embeds a catalog once and saves it in the data dir; later
starts load it in well under a second unless the source file or mapping changed.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from .embedder import Embedder
from .facets import FacetStats, derive_facets
from .importers import import_products
from .index import FaissIndex
from .lru import BoundedLRU
from .products import (
    AttributeSpec,
    Mapping,
    Product,
    ProductList,
    load_mapping,
    mapping_from_dict,
)

__all__ = [
    "BUNDLED",
    "Catalog",
    "CatalogCorrupt",
    "CatalogNotBuilt",
    "bundled_mapping",
    "check_catalog",
    "ensure_catalog",
    "load_catalog",
    "maker_key",
    "maker_words",
    "product_text",
    "rebuild_command",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 3
DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLED = ("fashion", "myntra")
DEFAULT_DURABLE_WINDOW_DAYS = 180
DEFAULT_REPLENISH_DAYS = 60


class CatalogNotBuilt(FileNotFoundError):
    """The catalog has no built index in the data dir."""


class CatalogCorrupt(ValueError):
    """A built catalog's files are unreadable or disagree with each other."""


def bundled_mapping(name: str) -> Mapping:
    """The mapping of a bundled catalog (``fashion`` or ``myntra``)."""
    return load_mapping(DATA_DIR / f"{name}.mapping.json", default_name=name)


def product_text(product: Product, specs: Sequence[AttributeSpec]) -> str:
    """The text embedded for a product: title, the attributes that describe it, and the start
    of its description."""
    parts = [product.title]
    attrs = [product.attributes[s.name] for s in specs if s.embed and s.name in product.attributes]
    if attrs:
        parts.append(", ".join(attrs))
    if product.description:
        parts.append(product.description[:240])
    return ". ".join(parts)


@dataclass
class Catalog:
    """Everything the assistant needs to know about what is sold, held in memory.

    ``codes[attr][row]`` is the index of the row's value in ``values[attr]`` (-1 missing), so a
    filter over the whole catalog is a vectorised comparison, not a scan of Python objects.
    """

    name: str
    products: Sequence[Product]  # a list, or a ProductList when loaded from disk
    specs: list[AttributeSpec]
    facets: list[FacetStats]
    index: FaissIndex
    content_hash: str = ""
    durable_window_days: dict[str, int] = field(default_factory=dict)
    replenish_days: dict[str, int] = field(default_factory=dict)
    consumable_rule: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        # A loaded catalog's own rows, read as they are: no Product is made for this.
        rows = self.products.rows if isinstance(self.products, ProductList) \
            else [p.to_json() for p in self.products]
        ids = [str(r["product_id"]) for r in rows]
        attributes = [r.get("attributes") or {} for r in rows]
        self.row_of = {pid: i for i, pid in enumerate(ids)}
        self.values: dict[str, list[str]] = {}
        self.code_of: dict[str, dict[str, int]] = {}
        self.codes: dict[str, NDArray[np.int32]] = {}
        for spec in self.specs:
            # One pass per attribute; np.unique sorts the values as sorted() does and gives
            # every row its value's index (a server start loads 57k products).
            name = spec.name
            column = np.array([a.get(name) for a in attributes], dtype=object)
            present = np.flatnonzero(column != None)  # noqa: E711 (elementwise)
            codes = np.full(len(column), -1, dtype=np.int32)
            if len(present):
                vals, inverse = np.unique(column[present].astype(str), return_inverse=True)
                codes[present] = inverse.reshape(-1)
                self.values[name] = [str(v) for v in vals]
            else:
                self.values[name] = []
            self.code_of[name] = {v: i for i, v in enumerate(self.values[name])}
            self.codes[name] = codes
        self.prices = np.array([math.nan if r.get("price") is None else r["price"]
                                for r in rows], dtype=np.float64)
        self.has_prices = bool(np.isfinite(self.prices).any())
        self.currency = next((r["currency"] for r in rows if r.get("currency")), None)
        self.consumable = np.array([self._is_consumable(a) for a in attributes], dtype=bool)
        self.titles_lower = [str(r["title"]).lower() for r in rows]
        self._makers: tuple[NDArray[np.int32], list[str]] | None = None
        self._title_ids: NDArray[np.int32] | None = None
        self._variety: tuple[NDArray[np.int32], list[str]] | None = None
        # Row masks of what shoppers say again and again ("Women", "Tshirts", "not
        # leather"): 64 MB of them at most, whatever the catalog's size.
        self._masks: BoundedLRU[NDArray[np.bool_]] = BoundedLRU(
            max(16, (64 << 20) // max(len(self.products), 1)))

    def __len__(self) -> int:
        return len(self.products)

    def has_value(self, attr: str, values: Iterable[str],
                  rows: NDArray[np.int64] | None = None) -> NDArray[np.bool_]:
        """For every row (or the given ``rows``): is its ``attr`` one of ``values``?

        One table lookup per row: a boolean table over the attribute's codes, indexed by
        the rows' codes (a missing value, -1, lands on the table's last slot, always False).
        """
        lookup = self.code_of.get(attr, {})
        codes = sorted(lookup[v] for v in values if v in lookup)

        def found(at: NDArray[np.int32]) -> NDArray[np.bool_]:
            table = np.zeros(len(lookup) + 1, dtype=bool)
            table[codes] = True
            out: NDArray[np.bool_] = table[at]
            return out
        if rows is not None:
            return found(self.codes[attr][rows])
        return self._masks.get((attr, *codes), lambda: found(self.codes[attr]))

    @property
    def maker(self) -> NDArray[np.int32]:
        """Who makes each product, for variety: the brand column where the catalog has one,
        else the title's first word (the bundled fashion titles lead with the brand: "Mr. Men
        Blue T-shirt", "Mr.Men Men's Strong Blue T-shirt"). -1 where unknown."""
        return self._maker_table()[0]

    @property
    def maker_keys(self) -> list[str]:
        """``maker_keys[code]``: that maker's folded first word, to tell when a shopper named
        it ("nike running shoes": then all five picks may be Nike)."""
        return self._maker_table()[1]

    def _maker_table(self) -> tuple[NDArray[np.int32], list[str]]:
        # Made when first asked for (about 50 ms for 44k titles), not at every start.
        if self._makers is None:
            if "brand" in self.codes:
                self._makers = (self.codes["brand"],
                                [maker_key(v) for v in self.values["brand"]])
            else:
                keys: dict[str, int] = {}
                codes = np.array([keys.setdefault(maker_key(t), len(keys))
                                  for t in self.titles_lower], dtype=np.int32)
                codes[codes == keys.get("", -2)] = -1
                self._makers = (codes, list(keys))
        return self._makers

    @property
    def title_ids(self) -> NDArray[np.int32]:
        """Each row's title as a number: rows with one (lower-case) title share it. Made
        when first asked for: comparing numbers is what the variety rule needs."""
        if self._title_ids is None:
            ids: dict[str, int] = {}
            self._title_ids = np.array([ids.setdefault(t, len(ids)) for t in self.titles_lower],
                                       dtype=np.int32)
        return self._title_ids

    def variety_table(self) -> tuple[NDArray[np.int32], list[str]]:
        """(rows x attributes) codes of every asked attribute but brand, then the maker, and
        the names of those columns ("maker" last): what two picks can have in common, read
        for a few dozen rows at once with one index."""
        if self._variety is None:
            names = [a for a in self.facet_names if a in self.codes and a != "brand"]
            table = np.stack([*(self.codes[a] for a in names), self.maker], axis=1)
            self._variety = (np.ascontiguousarray(table, dtype=np.int32), [*names, "maker"])
        return self._variety

    def title_contains(self, term: str) -> NDArray[np.bool_]:
        """Rows whose title contains ``term`` (lower case)."""
        return self._masks.get(("title", term), lambda: np.fromiter(
            (term in title for title in self.titles_lower), bool, len(self)))

    def _is_consumable(self, attributes: dict[str, str]) -> bool:
        return any(attributes.get(attr) in vals for attr, vals in self.consumable_rule.items())

    @property
    def facet_names(self) -> list[str]:
        return [f.name for f in self.facets if f.facet]

    def spec(self, name: str) -> AttributeSpec | None:
        return next((s for s in self.specs if s.name == name), None)

    def product(self, product_id: str) -> Product | None:
        row = self.row_of.get(product_id)
        return None if row is None else self.products[row]

    def purchase_kind(self, row: int) -> str:
        return "consumable" if self.consumable[row] else "durable"

    def replenish_after(self, article_type: str | None) -> int:
        return self.replenish_days.get(article_type or "", self.replenish_days.get(
            "*", DEFAULT_REPLENISH_DAYS))

    def durable_window(self, article_type: str | None) -> int:
        return self.durable_window_days.get(article_type or "", self.durable_window_days.get(
            "*", DEFAULT_DURABLE_WINDOW_DAYS))


_WORD = re.compile(r"[^\W_]+")


def maker_key(text: str) -> str:
    """The first word of a title (or of what a shopper typed), folded as brands are written
    in several ways: "Mr.Men" and "Mr. Men" give "mr", "Levi's" and "Levis" give "levis",
    "Ray-Ban" gives "rayban". '' when there is no word."""
    m = _WORD.search(text.casefold().replace("'", "").replace("\u2019", "").replace("-", ""))
    return m.group(0) if m else ""


def maker_words(text: str) -> set[str]:
    """Every word of ``text``, folded as ``maker_key`` folds a title's first word."""
    return set(_WORD.findall(text.casefold().replace("'", "").replace("\u2019", "")
                             .replace("-", "")))


def _source_hash(mapping: Mapping, source: Path | None, mapping_raw: dict[str, Any],
                 embedder_name: str, limit: int | None, every: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT_VERSION, embedder_name, limit, every, mapping_raw],
                        sort_keys=True).encode())
    files = [Path(f["path"]) for f in mapping.files]
    if source is not None:
        files = [source, *files[1:]]
    for f in files:
        p = f if f.is_absolute() else mapping.base_dir / f
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """One builder per data dir at a time (several workers or servers may start at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_catalog(
    data_dir: Path, name: str, embedder: Embedder, *, mapping_path: Path | None = None,
    source: Path | None = None, limit: int | None = None, every: int = 1,
    progress: bool = True, force: bool = False,
) -> Catalog:
    """Import and embed a catalog unless the data dir already holds this exact build.

    A bundled catalog needs only its name; a shop's own needs ``mapping_path`` and usually
    ``source``. Returns the loaded Catalog. Raises ImportError_ for a bad file or mapping.
    """
    mapping_path = mapping_path or DATA_DIR / f"{name}.mapping.json"
    mapping_raw = json.loads(Path(mapping_path).read_text(encoding="utf-8"))
    mapping = mapping_from_dict(mapping_raw, base_dir=Path(mapping_path).parent,
                                default_name=name)
    digest = _source_hash(mapping, source, mapping_raw, embedder.name, limit, every)
    root = data_dir / "catalogs"
    folder = root / name
    if not force:
        # The usual start: this exact build is there. Read it without the lock, which needs
        # a writable data dir; a build in progress is swapped in by renaming, so a miss here
        # falls through to the locked path.
        try:
            if json.loads((folder / "manifest.json").read_text()).get("source_hash") == digest:
                return load_catalog(data_dir, name)
        except (FileNotFoundError, ValueError, CatalogNotBuilt, CatalogCorrupt):
            pass
    with _build_lock(root):
        if not force:
            try:
                manifest = json.loads((folder / "manifest.json").read_text())
                if manifest.get("source_hash") == digest:
                    return load_catalog(data_dir, name)
            except (FileNotFoundError, ValueError, CatalogNotBuilt, CatalogCorrupt) as exc:
                if folder.exists():
                    log.warning("rebuilding catalog %s: %s", name, exc)
        started = time.monotonic()
        products = import_products(mapping, source, limit=limit, every=every)
        if not products:
            raise ValueError(f"catalog {name!r}: the file holds no products")
        specs = list(mapping.attributes)
        facets = derive_facets(products, specs)
        texts = [product_text(p, specs) for p in products]
        if progress:
            log.info("catalog %s: embedding %d products (first start only)", name, len(texts))
        vectors = embedder.embed(texts, batch_size=64, progress=progress)
        index = FaissIndex(vectors)
        tmp = root / f".{name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        index.save(tmp)
        with open(tmp / "products.json", "w", encoding="utf-8") as fh:
            json.dump([p.to_json() for p in products], fh, ensure_ascii=False)
        manifest = {
            "format": FORMAT_VERSION,
            "name": name,
            "source_hash": digest,
            "content_hash": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            "embedder": embedder.name,
            "products": len(products),
            "products_bytes": (tmp / "products.json").stat().st_size,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - started, 1),
            "source": mapping.source,
            "mapping": mapping_raw,
            "facets": [{"name": f.name, "facet": f.facet, "coverage": round(f.coverage, 4),
                        "distinct": f.distinct, "why": f.why} for f in facets],
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        old = root / f".{name}.old{os.getpid()}"
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        return load_catalog(data_dir, name)


def rebuild_command(data_dir: Path, name: str) -> str:
    """The command that rebuilds a catalog in this data dir, to quote in error messages."""
    where = shlex.quote(str(Path(data_dir).resolve()))
    if name in BUNDLED:
        return f"shopper catalog rebuild --name {name} --data-dir {where}"
    return (f"shopper catalog import FILE --name {shlex.quote(name)} --mapping MAPPING.json "
            f"--data-dir {where} --force")


def _fix(data_dir: Path, name: str) -> str:
    return f"rebuild it with `{rebuild_command(data_dir, name)}`"


def _open_built(data_dir: Path, name: str) -> tuple[dict[str, Any], FaissIndex]:
    """A built catalog's manifest and its index (memory-mapped: cheap). Raises
    CatalogNotBuilt or CatalogCorrupt naming the command that fixes it."""
    folder = data_dir / "catalogs" / name
    if not (folder / "manifest.json").exists():
        raise CatalogNotBuilt(
            f"catalog {name!r} is not built in {data_dir}: run `{rebuild_command(data_dir, name)}`"
            + (" (or `shopper serve` without --no-import)" if name in BUNDLED else ""))
    fix = _fix(data_dir, name)
    try:
        manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
        index = FaissIndex.load(folder)
        products_bytes = (folder / "products.json").stat().st_size
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CatalogCorrupt(f"catalog {name!r} in {folder} is damaged ({exc}); {fix}") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise CatalogCorrupt(f"catalog {name!r} was built by another version; {fix}")
    if manifest.get("products") is not None and manifest["products"] != len(index):
        raise CatalogCorrupt(f"catalog {name!r}: {manifest['products']} products but "
                             f"{len(index)} vectors; {fix}")
    if manifest.get("products_bytes") not in (None, products_bytes):
        raise CatalogCorrupt(f"catalog {name!r}: products.json is {products_bytes} bytes, the "
                             f"manifest says {manifest['products_bytes']}; {fix}")
    return manifest, index


def check_catalog(data_dir: Path, name: str) -> None:
    """What ``load_catalog`` would refuse, found without reading the products: the manifest,
    the index and its vectors, their counts (and products.json's size where the manifest
    has it). ``shopper serve`` runs this before any worker starts; it takes milliseconds.
    Raises CatalogNotBuilt or CatalogCorrupt."""
    _open_built(data_dir, name)


def load_catalog(data_dir: Path, name: str) -> Catalog:
    """Load a built catalog from the data dir.

    Raises CatalogNotBuilt when it was never built, CatalogCorrupt when its files are damaged;
    both messages name the command that fixes it.
    """
    manifest, index = _open_built(data_dir, name)
    folder, fix = data_dir / "catalogs" / name, _fix(data_dir, name)
    with _collector_paused():
        try:
            rows = orjson.loads((folder / "products.json").read_bytes())
            if not isinstance(rows, list) or not all(
                    isinstance(r, dict) and "product_id" in r and "title" in r for r in rows):
                raise ValueError("products.json is not a list of products")
        except (OSError, ValueError) as exc:
            raise CatalogCorrupt(f"catalog {name!r} in {folder} is damaged ({exc}); {fix}"
                                 ) from exc
        products = ProductList(rows)
        if len(index) != len(products):
            raise CatalogCorrupt(
                f"catalog {name!r}: {len(products)} products but {len(index)} vectors; {fix}")
        mapping = mapping_from_dict(manifest["mapping"], default_name=name)
        facet_by_name = {f["name"]: f for f in manifest["facets"]}
        facets = [FacetStats(s.name, facet_by_name[s.name]["coverage"],
                             facet_by_name[s.name]["distinct"], 0.0,
                             facet_by_name[s.name]["facet"], facet_by_name[s.name]["why"])
                  for s in mapping.attributes]
        kinds = mapping.durable
        return Catalog(
            name=name,
            products=products,
            specs=list(mapping.attributes),
            facets=facets,
            index=index,
            content_hash=manifest["content_hash"],
            durable_window_days={k: int(v) for k, v in kinds.get("window_days", {}).items()},
            replenish_days=dict(mapping.replenish_days),
            consumable_rule={k: list(v) for k, v in kinds.get("consumable", {}).items()},
            source=mapping.source,
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector off while a catalog's objects are made (hundreds of
    thousands, all kept: it would scan them again and again, a fifth of the load time)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
