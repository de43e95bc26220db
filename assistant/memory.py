"""What the assistant remembers about a shopper besides their tastes, as ranking inputs.

* Purchase rules: a durable bought (or said to be owned) is not suggested again unprompted
  for its type's window, and the product itself never; a consumable is left alone for its
  replenishment cycle, then comes back with "may be running out".
* Dismissals: ``not_interested`` and ``already_own`` feedback exclude the product for good.
* This visit: events within ``session_hours`` set a gender and type prior, and products viewed
  on recent visits are lifted when they fit what is asked.
* Recipients: the people a shopper shops for, with their saved likes as soft boosts.

Everything here is a pure function of event rows (as ``Store.events`` returns them), a
Catalog and the time; events name whom they were for (``recipient``), and only the events
for the person being shopped for count.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from catalog.catalog import Catalog

from .preferences import Boost, QueryReader, parse_time
from .questions import label_for

__all__ = ["Recall", "kind_of", "one_of", "recall", "recipient_attributes", "recipient_boosts",
           "recipient_key", "similar_boosts"]

SESSION_GENDER_WEIGHT = 0.16
SESSION_TYPE_WEIGHT = 0.03
VIEWED_WEIGHT = 0.2
VIEWED_HALF_LIFE_DAYS = 10.0
VIEWED_DAYS = 30
REPLENISH_WEIGHT = 0.15
REPLENISH_LIKE = 4  # products most like the one bought that come back with it
RECIPIENT_WEIGHT = 0.12
SIMILAR_WEIGHT = 0.08
EXCLUDING = ("feedback:not_interested", "feedback:already_own")
OWNING = ("purchase", "feedback:already_own")
SESSION_TYPES = ("view", "add_to_cart", "purchase", "search")
_ALIASES = {"hubby": "husband", "mum": "mother", "mom": "mother", "mommy": "mother",
            "mummy": "mother", "dad": "father", "daddy": "father", "papa": "father",
            "grandma": "grandmother", "granny": "grandmother", "grandpa": "grandfather",
            "kid": "kids", "child": "kids", "children": "kids", "fiancee": "fiance"}
_PAIRS = ("shoes", "jeans", "trousers", "shorts", "sunglasses", "briefs", "leggings", "pants",
          "socks", "flip flops", "sandals", "heels", "flats", "boots", "earrings", "cufflinks",
          "tights", "capris", "jeggings", "trunks", "boxers", "slippers", "sneakers")


@dataclass
class Recall:
    """What the shopper's history adds to one conversation or search."""

    blocked_types: dict[str, str] = field(default_factory=dict)
    exclude_ids: set[str] = field(default_factory=set)
    boosts: list[Boost] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)


def kind_of(article_type: str) -> str:
    """An article type as a shopper says it: 'Tshirts' -> 't-shirts', 'Watches' -> 'watches'."""
    text = label_for(article_type).lower()
    return re.sub(r"\btshirts?\b", lambda m: "t-shirt" + ("s" if m[0].endswith("s") else ""),
                  text)


def _singular(kind: str) -> str:
    if kind.endswith(("ches", "shes", "sses", "xes")):
        return kind[:-2]
    if kind.endswith("ies"):
        return kind[:-3] + "y"
    if kind.endswith("s") and not kind.endswith("ss"):
        return kind[:-1]
    return kind


def one_of(article_type: str) -> str:
    """'a watch', 'a pair of jeans', 'an earring'... for one item of the type."""
    kind = kind_of(article_type)
    if kind.endswith(_PAIRS):
        return f"a pair of {kind}"
    one = _singular(kind)
    return ("an " if one[:1] in "aeiou" else "a ") + one


def _when(at: datetime, now: datetime, *, preposition: str = "in") -> str:
    if at.date() == now.date():
        return "today"
    if at.date() == (now - timedelta(days=1)).date():
        return "yesterday"
    month = at.strftime("%B") + ("" if at.year == now.year else f" {at.year}")
    return f"{preposition} {month}"


def _day(at: datetime, now: datetime) -> str:
    if at.date() == now.date():
        return "earlier today"
    if at.date() == (now - timedelta(days=1)).date():
        return "yesterday"
    return f"on {at.day} {at.strftime('%B')}" + ("" if at.year == now.year else f" {at.year}")


def recipient_key(name: str | None) -> str | None:
    """The name a recipient is kept under: 'My Hubby' -> 'husband'; None for oneself."""
    if not name:
        return None
    words = re.sub(r"[^a-z0-9 \-]", " ", name.casefold()).split()
    if words and words[0] in ("my", "our"):
        words = words[1:]
    key = " ".join(words)
    return _ALIASES.get(key, key) or None


def _mine(ev: dict[str, Any], catalog: Catalog, recipient: str | None) -> bool:
    if ev.get("catalog") and ev["catalog"] != catalog.name:
        return False
    return recipient_key(ev.get("recipient")) == recipient


def _age_days(ev: dict[str, Any], now: datetime) -> float | None:
    try:
        return (now - parse_time(ev["at"])).total_seconds() / 86400
    except (ValueError, TypeError, KeyError):
        return None


def recall(events: Iterable[dict[str, Any]], catalog: Catalog, *, now: datetime,
           recipient: str | None = None, session_hours: float = 4.0,
           read_query: QueryReader | None = None) -> Recall:
    """Purchase rules, dismissals, this visit's context and recently viewed products for the
    person being shopped for (``recipient``; None: the shopper). Returns a Recall."""
    events = list(events)
    who = recipient_key(recipient)
    out = Recall()
    latest: dict[str, tuple[datetime, str, int]] = {}
    for ev in events:
        if ev.get("catalog") and ev["catalog"] != catalog.name:
            continue
        pid: str = ev.get("product_id") or ""
        row = catalog.row_of.get(pid)
        if row is None:
            continue
        title = catalog.products[row].title
        if ev["type"] in EXCLUDING and pid not in out.exclude_ids:
            out.exclude_ids.add(pid)
            why = ("you said you already own it" if ev["type"] == "feedback:already_own"
                   else "you said you were not interested")
            out.excluded.append({"product_id": pid, "title": title, "why": why})
        if ev["type"] == "purchase" and not catalog.consumable[row] \
                and pid not in out.exclude_ids:
            out.exclude_ids.add(pid)
            out.excluded.append({"product_id": pid, "title": title,
                                 "why": f"you bought it on {ev['at'][:10]}"})
        if ev["type"] not in OWNING or not _mine(ev, catalog, who):
            continue
        atype = catalog.products[row].attributes.get("article_type")
        try:
            at = parse_time(ev["at"])
        except ValueError:
            continue
        if atype and (atype not in latest or at >= latest[atype][0]):
            latest[atype] = (at, ev["type"], row)
    for atype, (at, how, row) in sorted(latest.items(), key=lambda kv: kv[1][0], reverse=True):
        _purchase_rule(out, catalog, atype, at, how, row, now)
    out.boosts.extend(_session_boosts(events, catalog, now, who, session_hours, read_query))
    out.boosts.extend(_viewed_boosts(events, catalog, now, who, out.exclude_ids))
    return out


def _purchase_rule(out: Recall, catalog: Catalog, atype: str, at: datetime, how: str, row: int,
                   now: datetime) -> None:
    age = (now - at).total_seconds() / 86400
    kind, one = kind_of(atype), one_of(atype)
    owned = how == "feedback:already_own"
    rule: dict[str, Any] = {"article_type": atype, "product_id": catalog.products[row].product_id,
                            "since": at.isoformat(timespec="seconds"),
                            "evidence": ("you said you already own one" if owned else
                                         f"you bought one on {at.date().isoformat()}")}
    if catalog.consumable[row]:
        cycle = catalog.replenish_after(atype)
        rule["kind"] = "consumable"
        if age < cycle:
            why = (f"No {kind} for now unless you ask: you have one" if owned else
                   f"No {kind} for now unless you ask: the one you bought "
                   f"{_when(at, now)} should last a while yet")
            out.blocked_types[atype] = why
            rule.update(status="not suggested", until=_iso(at + timedelta(days=cycle)),
                        reason=why)
        elif age < 3 * cycle and not owned:
            single = one.split(" ", 1)[1] if not one.startswith("a pair") else kind
            month = _when(at, now, preposition="").strip()
            why = f"Your {single} from {month} may be running out"
            like = f"Like your {single} from {month}, which may be running out"
            # The product bought and a few most like it, not the whole type: a reminder,
            # not a flood of one kind of thing.
            same = np.flatnonzero(catalog.codes["article_type"] ==
                                  catalog.code_of["article_type"][atype])
            near = same[np.argsort(-catalog.index.scores(
                np.asarray(catalog.index.vectors[row]), same.astype(np.int64)))]
            for other in near[:REPLENISH_LIKE + 1]:
                mine = int(other) == row
                out.boosts.append(Boost("product_id", catalog.products[int(other)].product_id,
                                        REPLENISH_WEIGHT * (1.0 if mine else 0.7),
                                        why if mine else like))
            rule.update(status="suggested again", until=_iso(at + timedelta(days=3 * cycle)),
                        reason=why)
        else:
            return
    else:
        window = catalog.durable_window(atype)
        rule["kind"] = "durable"
        if age >= window:
            return
        why = (f"You said you already own {one}, so no more {kind} unless you ask" if owned
               else f"You bought {one} {_when(at, now)}, so no more {kind} unless you ask")
        out.blocked_types[atype] = why
        rule.update(status="not suggested", until=_iso(at + timedelta(days=window)),
                    reason=why)
    out.rules.append(rule)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _session_boosts(events: list[dict[str, Any]], catalog: Catalog, now: datetime,
                    who: str | None, session_hours: float,
                    read_query: QueryReader | None) -> list[Boost]:
    """A prior from this visit: the gender (and type) the shopper has been looking at."""
    genders: Counter[str] = Counter()
    types: Counter[str] = Counter()
    for ev in events:
        age = _age_days(ev, now)
        if ev["type"] not in SESSION_TYPES or age is None or age * 24 > session_hours \
                or age < -1 or not _mine(ev, catalog, who):
            continue
        if ev["type"] == "search":
            read = read_query(ev["query"]) if read_query and ev.get("query") else {}
            genders.update(read.get("gender", ()))
            types.update(read.get("article_type", ()))
            continue
        product = catalog.product(ev.get("product_id") or "")
        if product is None:
            continue
        if product.attributes.get("gender"):
            genders[product.attributes["gender"]] += 1
        if product.attributes.get("article_type"):
            types[product.attributes["article_type"]] += 1
    out = []
    for attr, counts, weight in (("gender", genders, SESSION_GENDER_WEIGHT),
                                 ("article_type", types, SESSION_TYPE_WEIGHT)):
        if not counts:
            continue
        top, n = counts.most_common(1)[0]
        if n < 0.6 * sum(counts.values()) or top.startswith("Unisex"):
            continue
        if attr == "gender":
            why = f"For {label_for(top).lower()}, like what you were looking at just now"
        else:
            why = f"Like the {kind_of(top)} you were looking at just now"
        out.append(Boost(attr, top, weight, why))
    return out


def _viewed_boosts(events: list[dict[str, Any]], catalog: Catalog, now: datetime,
                   who: str | None, exclude: set[str]) -> list[Boost]:
    """Products viewed or put in the cart on recent visits, lifted a little (fading)."""
    best: dict[str, tuple[float, str]] = {}
    for ev in events:
        age = _age_days(ev, now)
        pid = ev.get("product_id")
        if ev["type"] not in ("view", "add_to_cart") or age is None or age > VIEWED_DAYS \
                or not pid or pid in exclude or pid not in catalog.row_of \
                or not _mine(ev, catalog, who):
            continue
        weight = VIEWED_WEIGHT * 0.5 ** (max(age, 0.0) / VIEWED_HALF_LIFE_DAYS)
        at = parse_time(ev["at"])
        why = (f"In your cart since {_day(at, now).removeprefix('on ')}"
               if ev["type"] == "add_to_cart" else f"You looked at this {_day(at, now)}")
        if ev["type"] == "add_to_cart":
            weight *= 1.2
        if weight > best.get(pid, (0.0, ""))[0]:
            best[pid] = (weight, why)
    return [Boost("product_id", pid, w, why) for pid, (w, why) in best.items()]


def similar_boosts(catalog: Catalog, product_id: str) -> list[Boost]:
    """A lift for the type and gender of the product the shopper is looking at."""
    product = catalog.product(product_id)
    if product is None:
        return []
    out = []
    atype = product.attributes.get("article_type")
    if atype:
        out.append(Boost("article_type", atype, SIMILAR_WEIGHT,
                         f"Like the {_singular(kind_of(atype))} you are looking at"))
    gender = product.attributes.get("gender")
    if gender and not gender.startswith("Unisex"):
        out.append(Boost("gender", gender, SIMILAR_WEIGHT,
                         f"For {label_for(gender).lower()}, like the one you are looking at"))
    return out


def recipient_attributes(text: str, read_query: QueryReader) -> dict[str, str]:
    """'size L, likes navy' -> {'size': 'L', 'colour': 'Navy Blue'}: what a note about a
    person says, read with the catalog lexicon (one value per attribute)."""
    out: dict[str, str] = {}
    m = re.search(r"\bsize\s+([a-z0-9]{1,6})\b", text, re.IGNORECASE)
    if m:
        out["size"] = m.group(1).upper()
    for attr, values in read_query(text).items():
        if len(values) == 1:
            out[attr] = next(iter(values))
    return out


def recipient_boosts(saved: dict[str, Any], catalog: Catalog,
                     read_query: QueryReader | None = None) -> list[Boost]:
    """Soft boosts from a saved recipient's attributes, each with 'Your husband likes navy
    blue'. Values are matched to this catalog's spelling (or read with its lexicon); the
    ones it has no attribute for (a size) are kept but move nothing."""
    name = saved.get("name") or "recipient"
    out = []
    for attr, raw in (saved.get("attributes") or {}).items():
        if not isinstance(raw, str) or attr not in catalog.code_of:
            continue
        value = {v.casefold(): v for v in catalog.values[attr]}.get(raw.strip().casefold())
        if value is None and read_query is not None:
            found = read_query(raw).get(attr, set())
            value = next(iter(found)) if len(found) == 1 else None
        if value is None:
            continue
        if attr == "gender":
            why = f"For {label_for(value).lower()}, as your {name}"
        else:
            why = f"Your {name} likes {label_for(value).lower()}"
        out.append(Boost(attr, value, RECIPIENT_WEIGHT, why))
    return out
