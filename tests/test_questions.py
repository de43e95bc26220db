"""Question choice: the attribute that splits the candidates best, never one answered."""

from __future__ import annotations

import numpy as np

from assistant.questions import choose_question, label_for, options_for
from catalog.catalog import Catalog
from catalog.facets import entropy_bits, value_counts


def rows_where(cat: Catalog, **attrs: str) -> np.ndarray:
    mask = np.ones(len(cat), dtype=bool)
    for attr, value in attrs.items():
        mask &= cat.codes[attr] == cat.code_of[attr][value]
    return np.flatnonzero(mask)


def test_asks_the_attribute_with_most_information(fashion: Catalog) -> None:
    rows = rows_where(fashion, article_type="Tshirts", gender="Men")
    q = choose_question(fashion, rows, settled={"article_type", "gender"})
    assert q is not None
    gains = {}
    for name in fashion.facet_names:
        if name in {"article_type", "gender"}:
            continue
        counts = value_counts(fashion.codes[name][rows], len(fashion.values[name]))
        gains[name] = entropy_bits(counts) * fashion.spec(name).ask_weight  # type: ignore[union-attr]
    assert q.attribute == max(gains, key=gains.__getitem__) == "colour"


def test_never_asks_again_what_was_answered(fashion: Catalog) -> None:
    rows = rows_where(fashion, article_type="Tshirts")
    for settled in ({"article_type"}, {"article_type", "colour"},
                    {"article_type", "colour", "gender"}):
        q = choose_question(fashion, rows, settled=settled)
        assert q is None or q.attribute not in settled


def test_options_are_ordered_by_count_with_true_counts(fashion: Catalog) -> None:
    rows = rows_where(fashion, article_type="Sports Shoes")
    opts = options_for(fashion, "colour", rows)
    counts = [o["count"] for o in opts]
    assert counts == sorted(counts, reverse=True)
    for o in opts:
        assert o["count"] == sum(fashion.products[r].attributes.get("colour") == o["value"]
                                 for r in rows)


def test_no_question_when_little_is_left(fashion: Catalog) -> None:
    rows = rows_where(fashion, article_type="Tshirts")[:4]
    assert choose_question(fashion, rows, settled=set()) is None


def test_labels_read_naturally() -> None:
    assert label_for("Navy Blue") == "Navy blue"
    assert label_for("Tshirts") == "Tshirts"


def test_not_sure_shows_the_next_options_once_then_moves_on(chat) -> None:  # type: ignore[no-untyped-def]
    c = chat("something for my husband")
    first = c.turn["question"]
    assert first is not None
    before = {p["product_id"] for p in c.picks}
    again = c.say("not sure, show me more")["question"]
    # The same question with the options not offered yet, and other picks.
    assert again["attribute"] == first["attribute"]
    assert not {o["value"] for o in first["options"]} & {o["value"] for o in again["options"]}
    assert not before & {p["product_id"] for p in c.picks}
    third = c.say("not sure, show me more")["question"]
    assert third is None or third["attribute"] != first["attribute"]


def test_picks_span_who_they_are_for_until_the_shopper_says(chat) -> None:  # type: ignore[no-untyped-def]
    open_ended = chat("running shoes")
    assert len({p["attributes"].get("gender") for p in open_ended.picks}) >= 2
    for_him = chat("running shoes for my husband")
    assert {p["attributes"].get("gender") for p in for_him.picks} <= {"Men", "Unisex"}
