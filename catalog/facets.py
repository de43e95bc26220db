"""Which attributes are worth asking about, and how the current candidates split on them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .products import AttributeSpec, Product

__all__ = ["FacetStats", "derive_facets", "entropy_bits", "value_counts"]

MIN_COVERAGE = 0.5
MIN_VALUES = 2
MAX_VALUES = 60
MAX_TOP_SHARE = 0.97


@dataclass(frozen=True, slots=True)
class FacetStats:
    """How an attribute is spread over the catalog."""

    name: str
    coverage: float
    distinct: int
    top_share: float
    facet: bool
    why: str


def derive_facets(products: Sequence[Product], specs: Sequence[AttributeSpec]) -> list[FacetStats]:
    """Decide for each attribute whether the assistant may ask about it.

    An attribute is a facet when enough products carry it (coverage >= 50%), it has a handful
    to a few dozen values (2..60), and no single value holds nearly every product; a mapping's
    ``facet: true/false`` overrides the rule. Returns one FacetStats per spec, with the reason.
    """
    n = max(len(products), 1)
    out = []
    for spec in specs:
        counts = Counter(p.attributes[spec.name] for p in products if spec.name in p.attributes)
        covered = sum(counts.values())
        coverage = covered / n
        distinct = len(counts)
        top_share = (counts.most_common(1)[0][1] / covered) if covered else 1.0
        if spec.facet is not None:
            facet, why = spec.facet, "set in the mapping"
        elif coverage < MIN_COVERAGE:
            facet, why = False, f"only {coverage:.0%} of products have it"
        elif distinct < MIN_VALUES:
            facet, why = False, "it has a single value"
        elif distinct > MAX_VALUES:
            facet, why = False, f"{distinct} values are too many to offer"
        elif top_share > MAX_TOP_SHARE:
            facet, why = False, "nearly every product has the same value"
        else:
            facet, why = True, f"{distinct} values over {coverage:.0%} of products"
        out.append(FacetStats(spec.name, coverage, distinct, top_share, facet, why))
    return out


def value_counts(codes: NDArray[np.int32], n_values: int,
                 weights: NDArray[np.float32] | None = None) -> NDArray[np.float64]:
    """Count (or weigh) each value code among candidates; code -1 (missing) is left out."""
    present = codes >= 0
    w = None if weights is None else weights[present]
    return np.bincount(codes[present], weights=w, minlength=n_values).astype(np.float64)


def entropy_bits(counts: NDArray[np.float64]) -> float:
    """Shannon entropy of a count vector in bits; 0 for an empty one."""
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())
