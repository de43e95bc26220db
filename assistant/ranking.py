"""Candidates, scores and picks: hard filters for what was said, soft boosts for what was
guessed, MMR for variety, and a plain reason for every pick."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from catalog.catalog import Catalog, maker_words

from .preferences import Boost, Preference
from .questions import label_for

__all__ = ["ACCEPT_ALSO", "Constraints", "Pick", "Ranked", "candidates", "hard_mask",
           "pick_json", "rank", "select_diverse"]

# A request for one value that another value also serves, ranked after the exact ones.
ACCEPT_ALSO = {"gender": {"Men": ("Unisex",), "Women": ("Unisex",),
                          "Boys": ("Unisex Kids",), "Girls": ("Unisex Kids",)}}
EXACT_BONUS = 0.12
SOFT_WEIGHT = 0.10
CANDIDATE_MARGIN = 0.22
MAX_CANDIDATES = 2000
MMR_POOL = 60
MMR_LAMBDA = 0.72
MAKER_CAP = 2  # picks by one maker (brand) among the five, unless the shopper named it


@dataclass
class Constraints:
    """Everything that decides which products may be picked and how they are ordered."""

    wants: dict[str, set[str]] = field(default_factory=dict)
    avoids: dict[str, set[str]] = field(default_factory=dict)
    avoid_terms: list[str] = field(default_factory=list)
    min_price: float | None = None
    max_price: float | None = None
    below_price: float | None = None
    exclude_ids: set[str] = field(default_factory=set)
    blocked_types: dict[str, str] = field(default_factory=dict)
    soft: list[Preference] = field(default_factory=list)
    liked_ids: list[str] = field(default_factory=list)
    cheap: bool = False
    profile_avoids: dict[str, set[str]] = field(default_factory=dict)
    boosts: list[Boost] = field(default_factory=list)


@dataclass
class Pick:
    row: int
    score: float
    reasons: list[str]


@dataclass
class Ranked:
    rows: NDArray[np.int64]
    scores: NDArray[np.float32]


def hard_mask(catalog: Catalog, c: Constraints) -> NDArray[np.bool_]:
    """Rows that break nothing the shopper said (wants, avoids, budget, exclusions)."""
    mask = np.ones(len(catalog), dtype=bool)
    for attr, values in c.wants.items():
        if attr not in catalog.codes:
            continue
        accepted = set(values)
        for v in values:
            accepted.update(ACCEPT_ALSO.get(attr, {}).get(v, ()))
        mask &= catalog.has_value(attr, accepted)
    for source in (c.avoids, c.profile_avoids):
        for attr, values in source.items():
            if attr in catalog.codes and values:
                mask &= ~catalog.has_value(attr, values)
    if c.min_price is not None or c.max_price is not None or c.below_price is not None:
        prices = catalog.prices
        ok = np.isfinite(prices)
        if c.min_price is not None:
            ok &= prices >= c.min_price
        if c.max_price is not None:
            ok &= prices <= c.max_price
        if c.below_price is not None:
            ok &= prices < c.below_price
        mask &= ok
    for term in c.avoid_terms:
        mask &= ~catalog.title_contains(term.lower())
    wanted_types = c.wants.get("article_type", set())
    blocked = [t for t in c.blocked_types if t not in wanted_types]
    if blocked and "article_type" in catalog.codes:
        mask &= ~catalog.has_value("article_type", blocked)
    for pid in c.exclude_ids:
        row = catalog.row_of.get(pid)
        if row is not None:
            mask[row] = False
    return mask


def _soft_scores(catalog: Catalog, rows: NDArray[np.int64], c: Constraints
                 ) -> NDArray[np.float32]:
    bonus = np.zeros(len(rows), dtype=np.float32)
    for attr, values in c.wants.items():
        if attr in catalog.codes:
            bonus += EXACT_BONUS * catalog.has_value(attr, values, rows)
    for pref in c.soft:
        if pref.attribute not in catalog.codes or pref.attribute in c.wants:
            continue
        code = catalog.code_of[pref.attribute].get(pref.value)
        if code is None:
            continue
        sign = 1.0 if pref.polarity == "want" else -1.0
        bonus += sign * SOFT_WEIGHT * pref.strength * (catalog.codes[pref.attribute][rows] == code)
    for boost in c.boosts:
        if boost.attribute == "product_id":
            row = catalog.row_of.get(boost.value)
            if row is not None:
                bonus += boost.weight * (rows == row)
        elif boost.attribute in catalog.codes and boost.attribute not in c.wants:
            code = catalog.code_of[boost.attribute].get(boost.value)
            if code is not None:
                bonus += boost.weight * (catalog.codes[boost.attribute][rows] == code)
    if c.liked_ids:
        liked = [catalog.row_of[p] for p in c.liked_ids if p in catalog.row_of]
        if liked:
            centroid = catalog.index.rows(np.asarray(liked, dtype=np.int64)).mean(axis=0)
            bonus += 0.1 * catalog.index.scores(centroid, rows)
    if c.cheap and catalog.has_prices:
        prices = catalog.prices[rows]
        finite = np.isfinite(prices)
        if finite.any():
            ranks = np.argsort(np.argsort(np.where(finite, prices, np.inf)))
            bonus -= 0.12 * ranks / max(len(rows) - 1, 1)
    return bonus


def candidates(catalog: Catalog, mask: NDArray[np.bool_], query: NDArray[np.float32] | None,
               c: Constraints) -> Ranked:
    """The rows worth considering now, best first: every allowed row, scored by cosine to
    the query plus the soft boosts, cut to those within a margin of the best."""
    rows = np.flatnonzero(mask).astype(np.int64)
    if len(rows) == 0:
        return Ranked(rows, np.zeros(0, dtype=np.float32))
    sims = catalog.index.scores(query, rows) if query is not None else \
        np.zeros(len(rows), dtype=np.float32)
    scores = sims + _soft_scores(catalog, rows, c)
    if len(rows) > MAX_CANDIDATES:
        # Only the best MAX_CANDIDATES can be kept: sort those (and any tied with the last),
        # not all 44k. Kept in row order before the stable sort, so ties fall as before.
        cut = np.partition(scores, len(scores) - MAX_CANDIDATES)[len(scores) - MAX_CANDIDATES]
        top = np.flatnonzero(scores >= cut)
        rows, scores = rows[top], scores[top]
    order = np.argsort(-scores, kind="stable")
    rows, scores = rows[order], scores[order]
    keep = int(np.searchsorted(-scores, -(scores[0] - CANDIDATE_MARGIN), side="right"))
    keep = min(max(keep, min(50, len(rows))), MAX_CANDIDATES)
    return Ranked(rows[:keep], scores[:keep])


def select_diverse(catalog: Catalog, ranked: Ranked, k: int, pinned: set[str],
                   lam: float = MMR_LAMBDA, maker_cap: int | None = MAKER_CAP) -> list[int]:
    """Maximal marginal relevance: each next pick trades relevance against likeness to the
    picks already chosen (same colour, brand, type... and vector similarity), so five picks
    are not five copies of one thing. Attributes the shopper pinned do not count."""
    pool = ranked.rows[:MMR_POOL]
    if len(pool) <= 1:
        return [int(r) for r in pool[:k]]
    rel = ranked.scores[:MMR_POOL].astype(np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    vecs = catalog.index.rows(pool)
    table, names = catalog.variety_table()
    # The columns that count: every asked attribute the shopper did not pin, and the maker
    # (the brand column, or the title's first word) unless the brand is pinned.
    keep = [i for i, a in enumerate(names)
            if (a not in pinned if a != "maker" else "brand" not in pinned)]
    # Likeness of every pair in the pool, once: half vector cosine, half the share of
    # attributes (known on both sides) the two have in common.
    likeness = 0.5 * (vecs @ vecs.T).astype(np.float64)
    pool_table = table[pool]
    if keep:
        codes = pool_table[:, keep].T  # (attrs, pool)
        same = (codes[:, :, None] == codes[:, None, :]) & (codes >= 0)[:, :, None]
        likeness += 0.5 * (np.count_nonzero(same, axis=0) / len(keep))
    # Two products under one name look like one product shown twice (4 in 10 of the
    # bundled fashion catalog's rows share their title with another): a name is shown once
    # while the pool holds other names.
    titles = catalog.title_ids[pool]
    shown = np.zeros(len(pool), dtype=bool)
    # Nor are more than MAKER_CAP picks by one maker while the pool holds others, unless the
    # shopper named it: "a blue t-shirt for men" found four Mr. Men T-shirts of five.
    if "brand" in pinned:
        maker_cap = None
    makers = pool_table[:, -1] if maker_cap else np.full(len(pool), -1)  # the maker column
    capped = np.zeros(len(pool), dtype=bool)
    chosen: list[int] = []
    per_maker: Counter[int] = Counter()
    max_sim = np.zeros(len(pool))
    for _ in range(min(k, len(pool))):
        mmr = lam * rel - (1 - lam) * max_sim
        if chosen:
            mmr[chosen] = -np.inf
            out = shown | capped
            if not out.all():
                mmr[out] = -np.inf
            elif not shown.all():
                mmr[shown] = -np.inf
        best = int(np.argmax(mmr))
        chosen.append(best)
        shown |= titles == titles[best]
        maker = int(makers[best])
        if maker_cap and maker >= 0:
            per_maker[maker] += 1
            if per_maker[maker] >= maker_cap:
                capped |= makers == maker
        np.maximum(max_sim, likeness[best], out=max_sim)
    return _vary(catalog, [int(pool[i]) for i in chosen], ranked.rows, pinned, maker_cap)


def _vary(catalog: Catalog, chosen: list[int], pool: NDArray[np.int64], pinned: set[str],
          maker_cap: int | None = MAKER_CAP) -> list[int]:
    """Unless the shopper pinned it, the first five picks never share one gender, colour or
    brand when the candidates hold another: the best-ranked other one moves up to fifth
    (fourth, third) place. Who it is for comes first: a shopper who never said it may be
    shopping for someone the nearest products are not for."""
    place = min(len(chosen), 5) - 1
    for attr in ("gender", "colour", "brand"):
        top = chosen[:5]
        if attr in pinned or (attr not in catalog.codes and attr != "brand") or len(top) < 3:
            continue
        codes = catalog.maker if attr == "brand" else catalog.codes[attr]
        first = int(codes[top[0]])
        if first < 0 or any(int(codes[r]) != first for r in top[1:]):
            continue
        # The best-ranked candidate of another (known) value, not already chosen: one pass
        # over the candidates' codes (a Python loop over up to 2,000 rows cost 0.1 ms each).
        theirs = codes[pool]
        ok = (theirs >= 0) & (theirs != first)
        for row in chosen:  # fewer than np.isin's set-up costs for five rows
            ok &= pool != row
        if maker_cap:
            # Nor may the one moved up be one too many by one maker, if another will do.
            kept = [*chosen[:place], *chosen[place:4]]
            full = [m for m, n in Counter(int(catalog.maker[r]) for r in kept).items()
                    if n >= maker_cap and m >= 0]
            if full:
                makers = catalog.maker[pool]
                fits = ok.copy()
                for m in full:
                    fits &= makers != m
                ok = fits if fits.any() else ok
        others = np.flatnonzero(ok)
        if len(others):
            chosen = [*chosen[:place], int(pool[others[0]]), *chosen[place:]][:len(chosen)]
            place -= 1
    return chosen


def _money(value: float, currency: str | None) -> str:
    symbol = {"INR": "₹", "USD": "$", "EUR": "€", "GBP": "£"}.get(currency or "", "")
    amount = f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"
    return f"{symbol}{amount}" if symbol else f"{amount} {currency or ''}".strip()


_IMPLIED: dict[tuple[str, int, str, str, str], bool] = {}


def _implies(catalog: Catalog, attr: str, value: str, other: str) -> bool:
    """True when every product with ``attr == value`` shares one value of ``other`` and
    ``attr`` is the finer attribute (more values): its reason already says the other's."""
    key = (catalog.name, len(catalog.products), attr, value, other)
    hit = _IMPLIED.get(key)
    if hit is None:
        values = catalog.values.get(attr, [])
        codes = catalog.codes.get(attr)
        if codes is None or other not in catalog.codes or value not in values or \
                len(values) <= len(catalog.values.get(other, [])):
            hit = False
        else:
            rows = codes == values.index(value)
            seen = np.unique(catalog.codes[other][rows])
            hit = len(seen) == 1 and int(seen[0]) >= 0
        if len(_IMPLIED) > 100_000:
            _IMPLIED.clear()
        _IMPLIED[key] = hit
    return hit


def _one_word(a: str, b: str) -> bool:
    """"Dress" and "Dresses", "Watch" and "Watches", "Bag" and "bags" are one word."""
    a, b = sorted((a.casefold().strip(), b.casefold().strip()), key=len)
    return b in (a, a + "s", a + "es")


def reasons_for(catalog: Catalog, row: int, c: Constraints, query_words: str = "") -> list[str]:
    """Short sentences a shopper understands, saying why this product was picked."""
    product = catalog.products[row]
    attrs = product.attributes
    out: list[str] = []
    matched = [a for a, values in c.wants.items() if attrs.get(a) in values]
    asked: list[str] = []
    for attr, values in c.wants.items():
        value = attrs.get(attr)
        if value in values and any(_implies(catalog, other, attrs[other], attr)
                                   for other in matched if other != attr):
            continue  # "Casual shoes, as you asked" already says "Shoes" and "Footwear"
        if value in values:
            if any(_one_word(value, before) for before in asked):
                continue  # "Dresses, as you asked" already says "Dress"
            asked.append(value)
            said = f"For {value.lower()}" if attr == "gender" else label_for(value)
            out.append(f"{said}, as you asked")
        elif value:
            out.append(f"{label_for(value)}, which suits {label_for(sorted(values)[0]).lower()}"
                       f" too")
    if product.price is not None and (c.max_price is not None or c.below_price is not None):
        limit = min(x for x in (c.max_price, c.below_price) if x is not None)
        if c.below_price is not None and limit == c.below_price:
            out.append(f"{_money(product.price, product.currency)}, cheaper than before")
        else:
            out.append(f"{_money(product.price, product.currency)}, within your "
                       f"{_money(limit, product.currency)} budget")
    for values in c.avoids.values():
        if values:
            out.append(f"Not {' or '.join(label_for(v).lower() for v in sorted(values))}, "
                       "as you said")
            break
    for values in c.profile_avoids.values():
        if values:
            out.append(f"No {' or '.join(label_for(v).lower() for v in sorted(values))}: "
                       "you told us before")
            break
    boosted = [b for b in c.boosts if (b.attribute == "product_id" and
                                       b.value == product.product_id) or
               (b.attribute not in c.wants and attrs.get(b.attribute) == b.value)]
    if boosted:
        out.append(max(boosted, key=lambda b: b.weight).reason)
    for pref in c.soft:
        if pref.polarity == "want" and attrs.get(pref.attribute) == pref.value \
                and pref.attribute not in c.wants:
            why = "you said you like it" if pref.source == "stated" else pref.evidence
            out.append(f"{label_for(pref.value)}: {why}")
            break
    if c.blocked_types and "article_type" not in c.wants:
        # Only when the shopper left the type open did a purchase rule move the picks.
        out.append(next(iter(c.blocked_types.values())))
    if c.liked_ids and len(out) < 3:
        out.append("Like the ones you liked")
    if len(out) < 2:
        usage = attrs.get("usage")
        if usage and "usage" not in c.wants:
            out.append(f"Good for {usage.lower()} wear")
    if not out and query_words:
        out.append(f"Close to what you described: “{query_words[:60]}”")
    if not out:
        out.append("A popular pick in this catalog")
    return out[:3]


#: Words a title may start with that say nothing about who made it.
_NOT_MAKERS = frozenset({"a", "an", "the", "for", "and", "with", "in", "of", "my", "new"})


def rank(catalog: Catalog, ranked: Ranked, c: Constraints, *, k: int = 5,
         query_words: str = "", said: str = "") -> list[Pick]:
    """The top k picks with reasons, diverse across what the shopper left open. ``said`` is
    everything the shopper typed: a maker named there ("nike running shoes") is pinned, as
    is a brand the shopper said they like."""
    pinned = set(c.wants)
    # A brand the shopper said they like ("I like Nike", kept in the profile) may fill more
    # than MAKER_CAP of the picks; the variety rule still keeps one pick for another.
    cap = None if any(p.attribute == "brand" and p.polarity == "want"
                      and p.source == "stated" for p in c.soft) else MAKER_CAP
    if said and len(ranked.rows) and "brand" not in pinned:
        code = int(catalog.maker[int(ranked.rows[0])])
        key = catalog.maker_keys[code] if code >= 0 else ""
        if key and key not in _NOT_MAKERS and key in maker_words(said):
            pinned.add("brand")
    rows = select_diverse(catalog, ranked, k, pinned=pinned, maker_cap=cap)
    return [Pick(r, _score_of(ranked, r), reasons_for(catalog, r, c, query_words))
            for r in rows]


def _score_of(ranked: Ranked, row: int) -> float:
    at = np.flatnonzero(ranked.rows == row)
    return float(ranked.scores[at[0]]) if len(at) else 0.0


def pick_json(catalog: Catalog, pick: Pick) -> dict[str, Any]:
    p = catalog.products[pick.row]
    return {"product_id": p.product_id, "title": p.title, "price": p.price,
            "currency": p.currency, "attributes": dict(p.attributes),
            "score": round(max(min(pick.score, 1.0), 0.0), 4), "reasons": pick.reasons}
