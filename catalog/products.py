"""The normalised product and the column mapping that turns a shop's file into products."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

__all__ = ["AttributeSpec", "Mapping", "Product", "ProductList", "load_mapping"]

DEFAULT_NULLS = ("", "na", "n/a", "null", "none", "nan", "-")


@dataclass(frozen=True, slots=True)
class Product:
    """One product as the assistant sees it: the catalog's own id, a title, attributes."""

    product_id: str
    title: str
    attributes: dict[str, str]
    price: float | None = None
    currency: str | None = None
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "title": self.title,
            "attributes": self.attributes,
            "price": self.price,
            "currency": self.currency,
            "description": self.description,
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Product:
        return cls(
            product_id=str(row["product_id"]),
            title=str(row["title"]),
            attributes=dict(row.get("attributes") or {}),
            price=row.get("price"),
            currency=row.get("currency"),
            description=str(row.get("description") or ""),
        )


class ProductList(Sequence[Product]):
    """A built catalog's products, made into Product objects when first asked for.

    A worker loads every catalog at start; making 57k frozen dataclasses up front was a fifth
    of its start-up, and most are never shown. ``rows`` are products.json's own dicts, which
    the catalog also reads directly for its codes, prices and titles. Two threads
    asking for the same product at once may both make it: equal values, no harm.
    """

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self._made: list[Product | None] = [None] * len(rows)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> Product: ...

    @overload
    def __getitem__(self, i: slice) -> list[Product]: ...

    def __getitem__(self, i: int | slice) -> Product | list[Product]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self.rows)))]
        made = self._made[i]
        if made is None:
            made = self._made[i] = Product.from_json(self.rows[i])
        return made

    def __iter__(self) -> Iterator[Product]:
        for i in range(len(self.rows)):
            yield self[i]


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """How one attribute comes from the file and how the assistant talks about it.

    ``column`` names the source column; ``derive`` instead finds the value in another column
    by a vocabulary (``{"from": "ProductName", "vocabulary": {"Jeans": ["jeans"], ...}}``):
    the vocabulary entry whose phrase occurs last in the text wins, longest phrase first.
    ``facet`` forces (True) or forbids (False) asking about it; None lets the data decide.
    """

    name: str
    column: str | None = None
    derive: dict[str, Any] | None = None
    label: str = ""
    prompt: str = ""
    facet: bool | None = None
    ask_weight: float = 1.0
    embed: bool = True

    @property
    def display(self) -> str:
        return self.label or self.name.replace("_", " ")

    @property
    def question(self) -> str:
        return self.prompt or f"Which {self.display} would you like?"


@dataclass(frozen=True, slots=True)
class Mapping:
    """A catalog's column mapping: data, not code per catalog.

    ``files`` are read in order; the first gives the rows, each later file is joined to it
    row by row (``"join": "row"``) or by a key column (``"join": "<column>"``).
    """

    name: str
    files: tuple[dict[str, str], ...]
    id: str
    title: str
    attributes: tuple[AttributeSpec, ...]
    price: str | None = None
    currency: str | None = None
    description: str | None = None
    null_values: tuple[str, ...] = DEFAULT_NULLS
    durable: dict[str, Any] = field(default_factory=dict)
    replenish_days: dict[str, int] = field(default_factory=dict)
    source: str = ""
    base_dir: Path = Path(".")

    def attribute(self, name: str) -> AttributeSpec | None:
        for spec in self.attributes:
            if spec.name == name:
                return spec
        return None


def load_mapping(path: str | Path | None, *, default_name: str = "catalog") -> Mapping:
    """Read a mapping file (JSON).

    Returns the Mapping; relative file paths in it are relative to the mapping's folder.
    Raises ValueError when a required key is missing.
    """
    if path is None:
        raise ValueError("a mapping is needed: pass --mapping FILE.json")
    p = Path(path)
    raw = json.loads(p.read_text(encoding="utf-8"))
    return mapping_from_dict(raw, base_dir=p.parent, default_name=default_name)


def mapping_from_dict(
    raw: dict[str, Any], *, base_dir: Path = Path("."), default_name: str = "catalog"
) -> Mapping:
    """Build a Mapping from its JSON form. Raises ValueError on a missing required key."""
    for key in ("id", "title", "attributes"):
        if key not in raw:
            raise ValueError(f"the mapping has no {key!r}")
    files = []
    for f in raw.get("files", []):
        files.append({"path": f} if isinstance(f, str) else dict(f))
    attrs = []
    for name, spec in raw["attributes"].items():
        if isinstance(spec, str):
            spec = {"column": spec}
        attrs.append(
            AttributeSpec(
                name=name,
                column=spec.get("column"),
                derive=spec.get("derive"),
                label=spec.get("label", ""),
                prompt=spec.get("prompt", ""),
                facet=spec.get("facet"),
                ask_weight=float(spec.get("ask_weight", 1.0)),
                embed=bool(spec.get("embed", True)),
            )
        )
    nulls = tuple(v.lower() for v in raw.get("null_values", DEFAULT_NULLS))
    return Mapping(
        name=raw.get("name", default_name),
        files=tuple(files),
        id=raw["id"],
        title=raw["title"],
        attributes=tuple(attrs),
        price=raw.get("price"),
        currency=raw.get("currency"),
        description=raw.get("description"),
        null_values=nulls,
        durable=dict(raw.get("durable", {})),
        replenish_days={k: int(v) for k, v in raw.get("replenish_days", {}).items()},
        source=raw.get("source", ""),
        base_dir=base_dir,
    )
