"""Understanding shoppers' words: a table of real phrasings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.understanding import Lexicon, SemanticMatcher, load_synonyms, understand
from catalog.catalog import Catalog
from catalog.embedder import CachedEmbedder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lexicon(fashion: Catalog) -> Lexicon:
    return Lexicon(fashion, load_synonyms())


@pytest.fixture(scope="module")
def myntra_lexicon(myntra: Catalog) -> Lexicon:
    return Lexicon(myntra, load_synonyms())


WANTS = [
    ("I need running shoes for my husband", {"article_type": {"Sports Shoes"},
                                             "gender": {"Men"}}),
    ("navy", {"colour": {"Navy Blue"}}),
    ("Navy Blue", {"colour": {"Navy Blue"}}),
    ("navvy blue tshirts", {"colour": {"Navy Blue"}, "article_type": {"Tshirts"}}),
    ("something for the gym", {"usage": {"Sports"}}),
    ("sneakers", {"article_type": {"Casual Shoes"}}),
    ("a tee", {"article_type": {"Tshirts"}}),
    ("something for my wife", {"gender": {"Women"}}),
    ("a gift for my niece", {"gender": {"Girls"}}),
    ("for men, in navy blue", {"gender": {"Men"}, "colour": {"Navy Blue"}}),
    ("a wrist watch for him", {"article_type": {"Watches"}, "gender": {"Men"}}),
    ("formal shoes for the office", {"article_type": {"Formal Shoes"}, "usage": {"Formal"}}),
    ("BLUE T-SHIRTS", {"colour": {"Blue"}, "article_type": {"Tshirts"}}),
    ("a handbag for her", {"article_type": {"Handbags"}, "gender": {"Women"}}),
    ("a vest", {"article_type": {"Innerwear Vests"}}),
    ("a nightie", {"article_type": {"Nightdress"}}),
    ("a night suit", {"article_type": {"Night suits"}}),
]


@pytest.mark.parametrize("text,wants", WANTS)
def test_wants(lexicon: Lexicon, text: str, wants: dict[str, set[str]]) -> None:
    assert understand(text, lexicon).wants == wants


AVOIDS = [
    ("a t-shirt, but not black", {"article_type": {"Tshirts"}}, {"colour": {"Black"}}),
    ("I don't want black any more", {}, {"colour": {"Black"}}),
    ("anything but red or pink", {}, {"colour": {"Red", "Pink"}}),
    ("no more black please, navy is fine", {"colour": {"Navy Blue"}}, {"colour": {"Black"}}),
    ("shoes but nothing for sports", {"sub_category": {"Shoes"}}, {"usage": {"Sports"}}),
]


@pytest.mark.parametrize("text,wants,avoids", AVOIDS)
def test_negation(lexicon: Lexicon, text: str, wants: dict[str, set[str]],
                  avoids: dict[str, set[str]]) -> None:
    u = understand(text, lexicon)
    assert u.wants == wants
    assert u.avoids == avoids


def test_negated_unknown_word_becomes_an_exclusion(lexicon: Lexicon) -> None:
    u = understand("a wallet, no leather", lexicon)
    assert u.wants == {"article_type": {"Wallets"}}
    assert u.avoid_terms == ["leather"]


PRICES = [
    ("under 1500", None, 1500.0),
    ("between 500 and 1000 rupees", 500.0, 1000.0),
    ("jeans below ₹2,000", None, 2000.0),
    ("budget is 2k", None, 2000.0),
    ("around 1000", 800.0, 1200.0),
    ("500-900 rs", 500.0, 900.0),
    ("over 3000", 3000.0, None),
]


@pytest.mark.parametrize("text,lo,hi", PRICES)
def test_prices(myntra_lexicon: Lexicon, text: str, lo: float | None, hi: float | None) -> None:
    u = understand(text, myntra_lexicon)
    assert (u.min_price, u.max_price) == (lo, hi)


@pytest.mark.parametrize("text", ["no preference", "any", "don't care", "Not sure",
                                  "whatever", "skip"])
def test_no_preference(lexicon: Lexicon, text: str) -> None:
    u = understand(text, lexicon, asked="colour")
    assert u.no_preference and not u.wants


@pytest.mark.parametrize("text,action", [("more", "more"), ("cheaper", "cheaper"),
                                         ("start over", "start_over"), ("that's all", "done")])
def test_actions_in_words(lexicon: Lexicon, text: str, action: str) -> None:
    assert understand(text, lexicon).action == action


def test_recipient(lexicon: Lexicon) -> None:
    assert understand("a watch for my husband", lexicon).recipient == "husband"
    assert understand("a watch for me", lexicon).recipient is None


def test_embeddings_catch_what_no_phrase_does(lexicon: Lexicon, embedder: CachedEmbedder) -> None:
    semantic = SemanticMatcher(lexicon, embedder)
    u = understand("for lounging around on sundays", lexicon, asked="usage", semantic=semantic)
    assert u.wants.get("usage") in ({"Home"}, {"Casual"})
    u = understand("the colour of the sky", lexicon, asked="colour", semantic=semantic)
    assert u.wants.get("colour") == {"Blue"}


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01\x02", "🙂🙂🙂", "مرحبا بالعالم",
                                  "<script>alert(1)</script>", "'; DROP TABLE turns; --",
                                  "a" * 5000, "\u202eevil"])
def test_odd_input_never_raises(lexicon: Lexicon, text: str) -> None:
    understand(text, lexicon)


@pytest.mark.parametrize("text,ref,kind,cheaper,wants", [
    ("more like the second one", 1, "like", False, {}),
    ("not the third one", 2, "dislike", False, {}),
    ("I don't like the last one", -1, "dislike", False, {}),
    ("cheaper than the first one", 0, "cheaper", True, {}),
    ("same as the first but cheaper", 0, "like", True, {}),
    ("number 2 please", 1, "like", False, {}),
    ("the 2nd one in red", 1, "like", False, {"colour": {"Red"}}),
    ("something cheaper in red", None, None, True, {"colour": {"Red"}}),
    ("I'll take the second one, thanks", 1, "choose", False, {}),
    ("I want the first one but in red", 0, "like", False, {"colour": {"Red"}}),
    ("I want the second one but cheaper", 1, "like", True, {}),
    # Ordinals and numbers that do not point at a pick.
    ("a dress for the first day at work", None, None, False, {"article_type": {"Dresses"}}),
    ("at the last minute I need a watch", None, None, False, {"article_type": {"Watches"}}),
    ("shoes in size 10", None, None, False, {}),
])
def test_a_pick_pointed_at(lexicon: Lexicon, text: str, ref: int | None, kind: str | None,
                           cheaper: bool, wants: dict[str, set[str]]) -> None:
    u = understand(text, lexicon)
    assert (u.pick_ref, u.pick_ref_kind, u.cheaper) == (ref, kind, cheaper)
    for attr, values in wants.items():
        assert u.wants.get(attr) == values
    if ref is not None:  # the pointing words are not read as the product's words
        assert not u.avoid_terms and not {"second", "third", "first", "last"} \
            & set(u.positive_text.split())


def test_one_phrase_names_its_values_in_the_same_order_in_every_worker(
        built_data_dir: Path) -> None:
    """A phrase naming values of two attributes ("perfume": a sub-category and an article
    type) gives them, and so the picks' reasons, in one order in every process: each server
    worker hashes strings with its own seed, and a set's order followed it."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from assistant.understanding import Lexicon, load_synonyms\n"
        "from catalog.catalog import load_catalog\n"
        "lex = Lexicon(load_catalog(Path(sys.argv[1]), 'fashion'), load_synonyms())\n"
        "print(json.dumps(sorted([list(k), [list(t) for t in v]] for k, v in"
        " lex.entries.items() if len(v) > 1)))\n")
    seen = []
    for seed in ("1", "2", "3"):
        out = subprocess.run([sys.executable, "-c", script, str(built_data_dir)],
                             capture_output=True, text=True, check=True, cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        seen.append(json.loads(out.stdout))
    assert seen[0], "the catalog has no phrase naming two values"
    assert seen[0] == seen[1] == seen[2]
