"""Store stock for the kiosk: which products a store holds, added to picks as ``in_store``.

The stock file is a CSV ``product_id,store_id,quantity`` (an optional ``catalog`` column
limits a row to one catalog). ``DATA_DIR/stock.csv`` wins over the bundled demo file
``catalog/data/stock.csv``. The file is re-read when it changes, so a shop can replace it
while the server runs. Ranking never sees stock: picks are annotated here, in the web layer.
"""

from __future__ import annotations

import csv
import logging
import threading
from pathlib import Path
from typing import Any

__all__ = ["IN_STOCK", "NOT_HERE", "UNKNOWN", "StockBook", "stock_path"]

log = logging.getLogger("shopper.stock")
BUNDLED_STOCK = Path(__file__).resolve().parents[1] / "catalog" / "data" / "stock.csv"
IN_STOCK = "In stock here"
NOT_HERE = "Not in this store: ask staff to order it"
UNKNOWN = "Ask staff"


def stock_path(data_dir: Path) -> Path:
    """The stock file in force: the data dir's own, else the bundled demo file."""
    own = data_dir / "stock.csv"
    return own if own.exists() else BUNDLED_STOCK


class StockBook:
    """Quantities per (store, product), loaded from a CSV and reloaded when it changes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._stamp: tuple[str, float] | None = None
        self._rows: dict[tuple[str, str], list[tuple[str | None, int]]] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        path = stock_path(self.data_dir)
        try:
            stamp = (str(path), path.stat().st_mtime)
        except OSError:
            self._rows, self._stamp = {}, None
            return
        if stamp == self._stamp:
            return
        rows: dict[tuple[str, str], list[tuple[str | None, int]]] = {}
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                for n, row in enumerate(csv.DictReader(fh), 2):
                    try:
                        key = (row["store_id"].strip(), row["product_id"].strip())
                        qty = int(float(row["quantity"]))
                    except (KeyError, ValueError, AttributeError):
                        log.warning("%s line %d: not product_id,store_id,quantity", path, n)
                        continue
                    rows.setdefault(key, []).append(((row.get("catalog") or "").strip()
                                                     or None, qty))
        except OSError as exc:
            log.warning("cannot read the stock file %s: %s", path, exc)
            return
        self._rows, self._stamp = rows, stamp

    def quantity(self, store_id: str, product_id: str, catalog: str | None = None) -> int | None:
        """How many the store holds, or None when the stock file does not say."""
        with self._lock:
            self._load()
            entries = self._rows.get((store_id, product_id), [])
        for cat, qty in entries:
            if cat is None or catalog is None or cat == catalog:
                return qty
        return None

    def annotate(self, picks: list[dict[str, Any]], store_id: str,
                 catalog: str | None) -> None:
        """Add ``in_store`` (true, false or null when unknown), ``in_store_label`` and
        ``store_quantity`` to each pick, in place."""
        for pick in picks:
            qty = self.quantity(store_id, str(pick.get("product_id")), catalog)
            pick["in_store"] = None if qty is None else qty > 0
            pick["in_store_label"] = UNKNOWN if qty is None else (IN_STOCK if qty > 0
                                                                   else NOT_HERE)
            pick["store_quantity"] = qty
