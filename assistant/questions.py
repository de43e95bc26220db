"""Which question to ask next: the attribute whose answer splits the candidates best."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from catalog.catalog import Catalog
from catalog.facets import entropy_bits, value_counts

__all__ = ["MIN_BITS", "Question", "choose_question", "label_for", "options_for"]

MIN_BITS = 0.7        # below this, an answer would hardly change the picks: show them instead
MAX_TOP_SHARE = 0.9   # one value already holds most candidates: not worth a question
MAX_OPTIONS = 12


@dataclass
class Question:
    attribute: str
    prompt: str
    options: list[dict[str, Any]] = field(default_factory=list)
    allows_free_text: bool = True
    bits: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "prompt": self.prompt, "options": self.options,
                "allows_free_text": self.allows_free_text}


def label_for(value: str) -> str:
    """A value as a shopper reads it: 'Navy Blue' -> 'Navy blue'; acronyms stay."""
    words = value.split()
    if not words:
        return value
    rest = [w if (w.isupper() and len(w) > 1) else w.lower() for w in words[1:]]
    return " ".join([words[0], *rest])


def options_for(catalog: Catalog, attribute: str, rows: NDArray[np.int64],
                exclude: Collection[str] = (), limit: int = MAX_OPTIONS) -> list[dict[str, Any]]:
    """The attribute's values among the candidate rows, most common first, with counts."""
    values = catalog.values[attribute]
    counts = value_counts(catalog.codes[attribute][rows], len(values))
    order = np.argsort(-counts, kind="stable")
    out: list[dict[str, Any]] = []
    for code in order:
        if counts[code] <= 0 or len(out) >= limit:
            break
        value = values[int(code)]
        if value in exclude:
            continue
        out.append({"value": value, "label": label_for(value), "count": int(counts[code])})
    return out


def choose_question(catalog: Catalog, rows: NDArray[np.int64], *, settled: Collection[str],
                    avoided: dict[str, set[str]] | None = None) -> Question | None:
    """The facet with the largest expected information gain over the candidates.

    Knowing an attribute's value removes its entropy H(A) from the uncertainty about which
    product fits, so the gain of asking is H(A) over the candidates, scaled by how many
    candidates have the attribute at all and by the mapping's ``ask_weight``. Attributes in
    ``settled`` (answered, skipped or asked already) are never asked again. Returns None when
    no question would gain at least MIN_BITS.
    """
    if len(rows) <= 5:
        return None
    avoided = avoided or {}
    best: Question | None = None
    for stats in catalog.facets:
        name = stats.name
        if not stats.facet or name in settled:
            continue
        spec = catalog.spec(name)
        if spec is None:
            continue
        codes = catalog.codes[name][rows]
        counts = value_counts(codes, len(catalog.values[name]))
        total = counts.sum()
        if total <= 0 or np.count_nonzero(counts) < 2 or counts.max() / total > MAX_TOP_SHARE:
            continue
        coverage = total / len(rows)
        # The question as offered: the shown options, and everything else in one bucket the
        # shopper can only answer in words. Forty colours do not give forty-way answers.
        ordered = np.sort(counts[counts > 0])[::-1]
        offered = np.append(ordered[:MAX_OPTIONS], ordered[MAX_OPTIONS:].sum())
        gain = entropy_bits(offered) * coverage * spec.ask_weight
        if gain < MIN_BITS or (best is not None and gain <= best.bits):
            continue
        options = options_for(catalog, name, rows, exclude=avoided.get(name, set()))
        if len(options) < 2:
            continue
        best = Question(name, spec.question, options, True, gain)
    return best
