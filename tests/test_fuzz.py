"""Fuzzing: the API from its own OpenAPI document (schemathesis, in process against the WSGI
app, with the server key so the authorised paths run), and the understanding of shoppers'
words (Hypothesis, with the real Lexicon of both test catalogs).

Bounded for CI (2 cores): a few dozen examples per operation, no deadline, no example
database, derandomised so a failure is the same on every run.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from assistant.memory import recipient_key
from assistant.understanding import (
    MAX_PRICE,
    Lexicon,
    SemanticMatcher,
    clean_text,
    load_synonyms,
    understand,
)
from catalog.catalog import Catalog
from catalog.embedder import CachedEmbedder
from tests.conftest import SERVER
from web.openapi import openapi_document

API_EXAMPLES = 30
FUZZ = settings(max_examples=API_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
#: What every response must satisfy. positive_data_acceptance is left out on purpose: the
#: document cannot say which values a catalog has, so a well-formed "Plaid" is still a 422.
CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance,
          st_checks.content_type_conformance, st_checks.response_schema_conformance,
          st_checks.response_headers_conformance, st_checks.negative_data_rejection]


@pytest.fixture
def fuzz_ids(client: Any) -> dict[str, str]:
    """Real ids for the generated requests to hit, beside the random ones."""
    r = client.post("/api/v1/conversations", headers=SERVER,
                    json={"channel": "kiosk", "store_id": "blr-01", "shopper_id": "s-1",
                          "text": "black t-shirt for men"})
    assert r.status_code == 201
    pid = r.get_json()["picks"][0]["product_id"]
    client.put("/api/v1/shoppers/s-1/recipients/husband", headers=SERVER,
               json={"attributes": {"colour": "Navy Blue"}})
    return {"conversation_id": r.get_json()["conversation_id"], "product_id": pid,
            "shopper_id": "s-1", "name": "husband"}


#: Every operation of the document, for one test each (the document needs no app).
OPERATIONS = [(method.upper(), path) for path, ops in openapi_document()["paths"].items()
              for method in ops if path != "/api/v1/openapi.json"]


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_answers_its_own_document(app: Any, fuzz_ids: dict[str, str], method: str,
                                      path: str) -> None:
    """Every generated request, valid or not: no 5xx, a documented status and content type,
    a body that matches the documented schema, and invalid input refused. Valid requests go
    to random ids and, as often, to a real conversation, product, shopper and recipient."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operation = next(r.ok() for r in schema.get_all_operations()
                     if (r.ok().method.upper(), r.ok().path) == (method, path))
    real = {k: v for k, v in fuzz_ids.items()
            if k in {p["name"] for p in operation.definition.raw.get("parameters", [])}}
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real or None),
        operation.as_strategy(GenerationMode.NEGATIVE))
    tried = []

    @FUZZ
    @given(case=cases)
    def run(case: Any) -> None:
        response = case.call(headers=dict(SERVER))
        tried.append(response.status_code)
        case.validate_response(response, checks=CHECKS, headers=dict(SERVER))

    run()
    FUZZ_CASES[f"{method} {path}"] = len(tried)


FUZZ_CASES: dict[str, int] = {}


def test_fuzz_case_count(artifacts: Any) -> None:
    """How many generated requests the fuzzing above sent (for the record)."""
    total = sum(FUZZ_CASES.values())
    (artifacts / "fuzz_cases.txt").write_text(f"API fuzz cases: {total} over "
                                              f"{len(FUZZ_CASES)} operations\n")
    print(f"API fuzz cases: {total} over {len(FUZZ_CASES)} operations")


def test_the_document_covers_every_api_route(app: Any, client: Any) -> None:
    """Every /api route of the app is in the document, with every method, and no more."""
    doc = client.get("/api/v1/openapi.json").get_json()
    routes = {(re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", r.rule), m.lower())
              for r in app.url_map.iter_rules() if r.rule.startswith(("/api/", "/healthz"))
              for m in r.methods - {"HEAD", "OPTIONS"}}
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented


# Understanding ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lexicons(fashion: Catalog, myntra: Catalog) -> list[Lexicon]:
    synonyms = load_synonyms()
    return [Lexicon(fashion, synonyms), Lexicon(myntra, synonyms)]


_WORDS = st.sampled_from(["not", "no", "under", "below", "between", "and", "to", "k", "rs",
                          "₹", "$", "for", "my", "husband", "navy", "blue", "black", "shoes",
                          "t-shirt", "cheap", "show", "me", "more", "anything", "but", "red",
                          "1,500", "2k", "-", "–", "9" * 400, "1e400", "0", "0.5", ",", "."])
#: Mostly shopper-like phrases, some of anything at all.
_TEXT = st.one_of(st.text(max_size=300),
                  st.lists(_WORDS, max_size=14).map(" ".join),
                  st.lists(st.one_of(_WORDS, st.text(max_size=8)), max_size=10).map(" ".join))


def _check(u: Any, lexicon: Lexicon) -> None:
    for price in (u.min_price, u.max_price):
        assert price is None or (math.isfinite(price) and 0 <= price <= MAX_PRICE)
    if u.min_price is not None and u.max_price is not None:
        assert u.min_price <= u.max_price
    for facts in (u.wants, u.avoids):
        for attr, values in facts.items():
            assert values and set(values) <= set(lexicon.catalog.values[attr])
    for attr, values in u.wants.items():
        assert not values & u.avoids.get(attr, set())
    assert all(isinstance(t, str) and t for t in u.avoid_terms)
    assert u.action in (None, "more", "cheaper", "start_over", "done")
    assert len(u.positive_text) <= 2 * 2000


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_TEXT, which=st.integers(0, 1))
def test_understanding_never_raises(lexicons: list[Lexicon], text: str, which: int) -> None:
    lexicon = lexicons[which]
    _check(understand(text, lexicon), lexicon)


@pytest.fixture(scope="module")
def semantic(lexicons: list[Lexicon], embedder: CachedEmbedder) -> SemanticMatcher:
    return SemanticMatcher(lexicons[0], embedder)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_TEXT, asked=st.sampled_from(["colour", "gender", "usage", "article_type"]),
       offered=st.integers(0, 6))
def test_answers_to_a_question_never_raise(lexicons: list[Lexicon], semantic: SemanticMatcher,
                                           text: str, asked: str, offered: int) -> None:
    """With a question asked, the embedding fallback runs too (the real model), over all
    of the attribute's values or only those offered (none, one, a few)."""
    lexicon = lexicons[0]
    values = lexicon.catalog.values.get(asked, [])
    u = understand(text, lexicon, asked=asked, semantic=semantic,
                   option_values=set(values[:offered]) if offered < 6 else None)
    _check(u, lexicon)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(text=st.text(max_size=3000))
def test_cleaning_and_recipient_names_never_raise(text: str) -> None:
    cleaned = clean_text(text)
    assert len(cleaned) <= 2000 and all(ch.isprintable() for ch in cleaned)
    key = recipient_key(text)
    assert key is None or re.fullmatch(r"[a-z0-9 \-]+", key)


@pytest.mark.parametrize("text,low,high", [
    ("jeans under 1500", None, 1500), ("between 2k and 500 rupees", 500, 2000),
    ("under " + "9" * 400 + " rupees", None, None), ("shoes below ₹1e400", None, 1),
    ("over 99999999999999 rs", None, None), ("around 1000", 800, 1200),
])
def test_budgets_are_finite_and_ordered(lexicons: list[Lexicon], text: str,
                                        low: float | None, high: float | None) -> None:
    u = understand(text, lexicons[1])
    assert (u.min_price, u.max_price) == (low, high)
