"""The shopper model: stated preferences, preferences inferred from behaviour, and which win.

Stated preferences are what the shopper said; they never fade and change only when the
shopper says otherwise. Inferred ones are recomputed from events on every read, so they fade
with time (a half-life) and vanish with the events they came from.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from catalog.catalog import Catalog

__all__ = ["EVENT_WEIGHTS", "Boost", "Preference", "QueryReader", "effective", "infer",
           "parse_time", "stated"]

# How much one event says about a taste, before it fades.
# A "like" on a pick (tapped, or "more like the second one") says more than a view and less
# than a cart add. A dislike is not turned into a taste: it removes that product only.
EVENT_WEIGHTS = {"purchase": 1.0, "add_to_cart": 0.6, "feedback:like": 0.45, "view": 0.25,
                 "search": 0.3}
# Attributes that describe taste. The article type of a purchase is not a taste: buying a
# watch says nothing about wanting more watches (see the purchase rules in ranking).
TASTE_ATTRIBUTES = ("colour", "brand", "usage", "gender")
# Below this an inferred preference is neither shown nor used: one search a couple of weeks
# ago (0.3 faded by the half-life) stays under it; a fresh view or search is just above it.
MIN_STRENGTH = 0.2

# Reads a search query into attribute -> values (the catalog lexicon's understanding).
QueryReader = Callable[[str], Mapping[str, set[str]]]


@dataclass(frozen=True, slots=True)
class Preference:
    attribute: str
    value: str
    polarity: str
    source: str
    strength: float
    evidence: str
    updated_at: str

    def to_json(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "value": self.value, "polarity": self.polarity,
                "source": self.source, "strength": round(self.strength, 3),
                "evidence": self.evidence, "updated_at": self.updated_at}


@dataclass(frozen=True, slots=True)
class Boost:
    """A soft push on one attribute value (or one product, ``attribute == "product_id"``),
    with the sentence that explains it on a pick: session context, a consumable running
    out, a recipient's saved likes, a product viewed on the last visit."""

    attribute: str
    value: str
    weight: float
    reason: str


def parse_time(text: str | None) -> datetime:
    """An ISO 8601 time as an aware datetime (naive ones are taken as UTC). Raises ValueError."""
    if not text:
        return datetime.now(UTC)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def stated(rows: Iterable[dict[str, Any]]) -> list[Preference]:
    """Stated preference rows from the store as Preferences."""
    return [Preference(r["attribute"], r["value"], r["polarity"], "stated",
                       float(r["strength"] if r["strength"] is not None else 1.0),
                       r["evidence"] or f"you said so on {r['updated_at'][:10]}",
                       r["updated_at"]) for r in rows if r["source"] == "stated"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 'es' if word.endswith(('s', 'ch', 'sh')) else 's'}"


def infer(events: Iterable[dict[str, Any]], catalog: Catalog, *, now: datetime | None = None,
          half_life_days: float = 30.0, read_query: QueryReader | None = None
          ) -> list[Preference]:
    """Preferences guessed from events, each faded by its age.

    strength = 1 - exp(-sum(weight * 0.5 ** (age / half_life))): one view weeks ago is
    negligible, several purchases over weeks stay strong. A ``search`` event counts the
    taste values its query names (read by ``read_query``, the catalog lexicon). Events for
    someone else (``recipient`` set) and events of another catalog are left out. Returns
    those above a small floor, strongest first.
    """
    now = now or datetime.now(UTC)
    totals: dict[tuple[str, str], float] = defaultdict(float)
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    last: dict[tuple[str, str], str] = {}
    for ev in events:
        if ev.get("recipient"):
            continue
        weight = EVENT_WEIGHTS.get(ev["type"])
        if weight is None or (ev.get("catalog") and ev["catalog"] != catalog.name):
            continue
        values: dict[str, str] = {}
        if ev["type"] == "search":
            if read_query is None or not ev.get("query"):
                continue
            read = read_query(ev["query"])
            # Only a query that names exactly one value of an attribute says something.
            values = {a: next(iter(v)) for a, v in read.items()
                      if a in TASTE_ATTRIBUTES and len(v) == 1}
        else:
            product = catalog.product(ev["product_id"]) if ev.get("product_id") else None
            if product is None:
                continue
            values = {a: product.attributes[a] for a in TASTE_ATTRIBUTES
                      if product.attributes.get(a)}
        try:
            age_days = max((now - parse_time(ev["at"])).total_seconds() / 86400, 0.0)
        except ValueError:
            continue
        faded = weight * 0.5 ** (age_days / max(half_life_days, 1e-6))
        for attr, value in values.items():
            if value:
                key = (attr, value)
                totals[key] += faded
                counts[key][ev["type"]] += 1
                last[key] = max(last.get(key, ""), ev["at"])
    out = []
    for key, total in totals.items():
        strength = 1 - math.exp(-total)
        if strength < MIN_STRENGTH:
            continue
        kinds = counts[key]
        order = ("purchase", "add_to_cart", "feedback:like", "view", "search")
        names = {"purchase": "purchase", "add_to_cart": "cart add", "feedback:like": "like",
                 "view": "view", "search": "search"}
        evidence = "from " + ", ".join(_plural(kinds[k], names[k]) for k in order if kinds[k])
        out.append(Preference(key[0], key[1], "want", "inferred", strength, evidence,
                              last[key]))
    out.sort(key=lambda p: -p.strength)
    return out


def effective(stated_prefs: list[Preference], inferred: list[Preference]) -> list[Preference]:
    """What ranking uses: every stated preference, and the inferred ones it does not override.

    A stated preference on a value overrides any inferred one on that value; a stated
    'want' on an attribute overrides every inferred preference on that attribute.
    """
    said_values = {(p.attribute, p.value) for p in stated_prefs}
    said_wants = {p.attribute for p in stated_prefs if p.polarity == "want"}
    kept = [p for p in inferred
            if (p.attribute, p.value) not in said_values and p.attribute not in said_wants]
    return [*stated_prefs, *kept]
