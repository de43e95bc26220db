"""The importer: a shop's CSV or JSONL through a column mapping, normalised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalog.catalog import bundled_mapping
from catalog.importers import ImportError_, import_products
from catalog.products import mapping_from_dict

MAPPING = {
    "id": "sku", "title": "name", "price": "price", "currency": "EUR",
    "attributes": {"colour": "Colour", "kind": {"derive": {"from": "name", "vocabulary": {
        "Jeans": ["jeans"], "Kurta Set": ["kurta set", "kurta with palazzos"],
        "Kurtas": ["kurta"]}}}},
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_is_trimmed_cased_and_empty_cells_dropped(tmp_path: Path) -> None:
    src = write(tmp_path, "shop.csv",
                "sku,name,price,Colour\n"
                " A1 ,  Slim   Jeans ,\"1,299.00\", navy \n"
                "A2,Red Kurta with Palazzos,899,NAVY\n"
                "A3,Plain Kurta,,\n"
                ",no id,5,Red\n"
                "A1,duplicate id,1,Red\n")
    products = import_products(mapping_from_dict(MAPPING), src)
    assert [p.product_id for p in products] == ["A1", "A2", "A3"]
    a1, a2, a3 = products
    assert a1.title == "Slim Jeans"
    assert a1.price == 1299.0 and a1.currency == "EUR"
    assert a1.attributes == {"colour": "Navy", "kind": "Jeans"}
    assert a2.attributes["colour"] == "Navy"  # one spelling per value, whatever the case
    assert a2.attributes["kind"] == "Kurta Set"  # the longest phrase at the end of the name
    assert a3.price is None and a3.currency is None and "colour" not in a3.attributes


def test_jsonl_with_the_same_mapping(tmp_path: Path) -> None:
    rows = [{"sku": 7, "name": "Blue Jeans", "price": 10, "Colour": "Blue"},
            {"sku": "8", "name": "Kurta", "price": "12.5", "Colour": ""}]
    src = write(tmp_path, "shop.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    products = import_products(mapping_from_dict(MAPPING), src)
    assert [p.product_id for p in products] == ["7", "8"]
    assert products[1].price == 12.5 and products[1].attributes == {"kind": "Kurtas"}


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    src = write(tmp_path, "shop.csv", "sku,title\n1,x\n")
    with pytest.raises(ImportError_, match="no column 'name'"):
        import_products(mapping_from_dict(MAPPING), src)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImportError_, match="only .csv"):
        import_products(mapping_from_dict(MAPPING), write(tmp_path, "x.xlsx", "x"))
    with pytest.raises(ImportError_, match="no such file"):
        import_products(mapping_from_dict(MAPPING), tmp_path / "nope.csv")


def test_bundled_fashion_joins_two_files_row_by_row_and_keeps_ids() -> None:
    products = import_products(bundled_mapping("fashion"), limit=3)
    first = products[0]
    assert first.product_id == "15970"
    assert first.title == "Turtle Check Men Navy Blue Shirt"
    assert first.attributes["article_type"] == "Shirts"
    assert first.attributes["colour"] == "Navy Blue"


def test_bundled_myntra_has_prices_and_trimmed_colours() -> None:
    products = import_products(bundled_mapping("myntra"), limit=200)
    assert all(p.currency == "INR" and p.price and p.price > 0 for p in products)
    colours = {p.attributes.get("colour") for p in products} - {None}
    assert colours and all(c == c.strip() for c in colours)
    kinds = {p.attributes.get("article_type") for p in products}
    assert {"Jeans", "Shirts"} <= kinds
