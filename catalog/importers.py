"""Read a shop's CSV or JSONL through a column mapping into normalised products.

The same importer serves the bundled catalogs and a shop's own files: the differences live in
the mapping (``products.Mapping``), never in code per catalog.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .products import AttributeSpec, Mapping, Product

__all__ = ["ImportError_", "import_products", "normalise_text", "read_rows"]

_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class ImportError_(ValueError):
    """The file cannot be imported with this mapping (missing column, unreadable file)."""


def normalise_text(value: Any) -> str:
    """Trim, fold Unicode to NFC and collapse runs of white space. Returns '' for None."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFC", str(value))
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return _SPACES.sub(" ", text).strip()


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of a CSV or JSONL file (optionally gzipped) as dicts.

    Raises ImportError_ when the file is missing or not CSV/JSONL.
    """
    if not path.exists():
        raise ImportError_(f"no such file: {path}")
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    with _open_text(path) as fh:
        if stem.endswith((".jsonl", ".ndjson")):
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ImportError_(f"{path}: line {n} is not JSON: {exc}") from exc
                    if isinstance(row, dict):
                        yield row
        elif stem.endswith((".csv", ".tsv")):
            dialect = "excel-tab" if stem.endswith(".tsv") else "excel"
            yield from csv.DictReader(fh, dialect=dialect)
        else:
            raise ImportError_(f"{path}: only .csv, .tsv and .jsonl files can be imported")


def _joined_rows(mapping: Mapping, source: Path | None) -> Iterator[dict[str, Any]]:
    files = list(mapping.files)
    if source is not None:
        if files:
            files[0] = {**files[0], "path": str(source)}
        else:
            files = [{"path": str(source)}]
    if not files:
        raise ImportError_("the mapping names no file and none was given")

    def resolve(p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else mapping.base_dir / path

    main = read_rows(resolve(files[0]["path"]))
    others: list[tuple[str, Iterator[dict[str, Any]] | dict[str, dict[str, Any]]]] = []
    for extra in files[1:]:
        how = extra.get("join", "row")
        rows = read_rows(resolve(extra["path"]))
        if how == "row":
            others.append(("row", rows))
        else:
            others.append((how, {normalise_text(r.get(how)): r for r in rows}))
    for row in main:
        merged = dict(row)
        for how, src in others:
            if how == "row":
                assert isinstance(src, Iterator)
                extra_row = next(src, None)
                if extra_row is None:
                    raise ImportError_("a row-joined file has fewer rows than the first file")
            else:
                assert isinstance(src, dict)
                extra_row = src.get(normalise_text(row.get(how)), {})
            for k, v in extra_row.items():
                merged.setdefault(k, v)
        yield merged


def _derive(spec: AttributeSpec, row: dict[str, Any]) -> str:
    """Find a vocabulary entry in another column; the one occurring last wins (a product
    name ends with its kind: '... Cropped Jeans'), the longest phrase on ties."""
    assert spec.derive is not None
    text = " " + normalise_text(row.get(spec.derive["from"])).lower() + " "
    best: tuple[int, int, str] | None = None
    for value, phrases in spec.derive.get("vocabulary", {}).items():
        for phrase in [value, *phrases]:
            needle = phrase.lower()
            if needle not in text:
                continue
            pos = -1
            for m in re.finditer(r"(?<![a-z0-9])" + re.escape(needle) + r"(?![a-z0-9])", text):
                pos = m.end()
            if pos >= 0:
                key = (pos, len(needle), value)
                if best is None or key[:2] > best[:2]:
                    best = key
    return best[2] if best else ""


def _parse_price(raw: Any) -> float | None:
    m = _NUMBER.search(normalise_text(raw))
    if not m:
        return None
    try:
        value = float(m.group(0).replace(",", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _canonical_spellings(values: Iterable[str]) -> dict[str, str]:
    """For each case-folded value, the spelling shops use most ('T-shirt' over 'T-Shirt');
    an all-lower winner is title-cased."""
    by_key: dict[str, Counter[str]] = {}
    for v in values:
        by_key.setdefault(v.casefold(), Counter())[v] += 1
    out = {}
    for key, counts in by_key.items():
        best = counts.most_common(1)[0][0]
        if best.islower():
            best = best.title()
        out[key] = best
    return out


def import_products(
    mapping: Mapping, source: str | Path | None = None, *, limit: int | None = None,
    every: int = 1,
) -> list[Product]:
    """Read and normalise every product of a file through its mapping.

    ``limit`` keeps the first N products after taking every ``every``-th row (a spread slice
    for tests). Returns the products in file order; rows without an id are skipped, later
    duplicates of an id are dropped. Raises ImportError_ when a mapped column is missing.
    """
    nulls = set(mapping.null_values)
    raw: list[tuple[str, str, dict[str, str], float | None, str]] = []
    seen: set[str] = set()
    checked = False
    for n, row in enumerate(_joined_rows(mapping, Path(source) if source else None)):
        if not checked:
            wanted = [mapping.id, mapping.title]
            wanted += [s.column for s in mapping.attributes if s.column]
            wanted += [s.derive["from"] for s in mapping.attributes if s.derive]
            wanted += [c for c in (mapping.price, mapping.description) if c]
            missing = [c for c in wanted if c not in row]
            if missing:
                raise ImportError_(f"the file has no column {', '.join(map(repr, missing))}")
            checked = True
        if every > 1 and n % every:
            continue
        pid = normalise_text(row.get(mapping.id))
        if not pid or pid in seen:
            continue
        seen.add(pid)
        attrs: dict[str, str] = {}
        for spec in mapping.attributes:
            value = normalise_text(row.get(spec.column)) if spec.column else _derive(spec, row)
            if value and value.lower() not in nulls:
                attrs[spec.name] = value
        price = _parse_price(row.get(mapping.price)) if mapping.price else None
        desc = normalise_text(row.get(mapping.description)) if mapping.description else ""
        raw.append((pid, normalise_text(row.get(mapping.title)), attrs, price, desc))
        if limit is not None and len(raw) >= limit:
            break
    spellings = {
        spec.name: _canonical_spellings(a[spec.name] for _, _, a, _, _ in raw if spec.name in a)
        for spec in mapping.attributes
    }
    products = []
    for pid, title, attrs, price, desc in raw:
        norm = {k: spellings[k][v.casefold()] for k, v in attrs.items()}
        products.append(
            Product(
                product_id=pid,
                title=title or pid,
                attributes=norm,
                price=price,
                currency=mapping.currency if price is not None else None,
                description=desc,
            )
        )
    return products
