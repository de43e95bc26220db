"""Shopper text -> what they want, refuse, can spend, and whether they asked for something.

Matching runs in three layers, cheapest first: exact phrases (attribute values and the
synonyms in ``synonyms.json``, longest match wins), fuzzy single words for typos (rapidfuzz),
and, only for the attribute just asked about, the embedding of the answer against each value.
Negation ("not black", "no leather", "anything but red") turns a match into an avoidance; a
negated word that is no attribute value becomes a word to keep out of titles.
"""

from __future__ import annotations

import json
import math
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process

from catalog.catalog import Catalog
from catalog.embedder import Embedder

__all__ = ["Lexicon", "SemanticMatcher", "Understanding", "load_synonyms", "understand"]

MAX_TEXT = 2000
#: A larger "budget" is no budget (and 400 nines would overflow to infinity).
MAX_PRICE = 1e12

_TOKEN = re.compile(r"[a-z0-9\u00c0-\uffff]+(?:['’\-][a-z0-9\u00c0-\uffff]+)*|[,.;!?]")
_NUM = r"(\d[\d,]*(?:\.\d+)?)\s*(k\b)?"
_CUR = r"(?:rs\.?|inr|₹|rupees?|\$|usd|eur|€|£)?\s*"
_CUR_AFTER = r"\s*(?:rs\.?|inr|₹|rupees?|bucks)?"
_PRICE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("between", re.compile(r"\bbetween\s*" + _CUR + _NUM + _CUR_AFTER + r"\s*(?:and|to|-|–)\s*"
                           + _CUR + _NUM + _CUR_AFTER)),
    ("range", re.compile(r"(?:^|\s)" + _CUR + _NUM + r"\s*(?:-|–|to)\s*" + _CUR + _NUM
                         + r"\s*(?:rs\.?|inr|₹|rupees?)")),
    ("range", re.compile(r"(?:₹|rs\.?|inr)\s*" + _NUM + r"\s*(?:-|–|to)\s*" + _CUR + _NUM)),
    ("max", re.compile(r"\b(?:under|below|less than|cheaper than|max(?:imum)?|at most|up ?to|"
                       r"within|no more than|not more than|not over|budget(?: is| of)?|"
                       r"spend(?: up to)?|afford)\s*" + _CUR + _NUM + _CUR_AFTER)),
    ("min", re.compile(r"\b(?:over|above|more than|at least|min(?:imum)?|starting at)\s*"
                       + _CUR + _NUM + _CUR_AFTER)),
    ("around", re.compile(r"\b(?:around|about|approx(?:imately)?|roughly|near|close to)\s*"
                          + _CUR + _NUM + _CUR_AFTER)),
    ("max", re.compile(r"(?:₹|rs\.?\s*|inr\s*|\$)" + _NUM)),
    ("max", re.compile(_NUM + r"\s*(?:rupees?|rs\b|inr\b|bucks\b)")),
]

_NEGATION_CUES = [
    ("don't", "want"), ("dont", "want"), ("do", "not", "want"), ("don't", "like"),
    ("dont", "like"), ("do", "not", "like"), ("no", "more"), ("anything", "but"),
    ("other", "than"), ("apart", "from"), ("not", "a", "fan", "of"), ("sick", "of"),
    ("tired", "of"), ("nothing", "in"), ("none", "in"), ("stay", "away", "from"),
    ("not",), ("no",), ("never",), ("without",), ("except",), ("avoid",), ("hate",),
    ("dislike",), ("nothing",), ("exclude",), ("excluding",), ("isn't",), ("not", "in"),
]
_BOUNDARIES = {",", ".", ";", "!", "?", "but", "though", "instead", "rather", "prefer",
               "preferably", "ideally", "maybe", "like", "want", "need", "love"}
_STOP = set("""a an the and or of for to in on at with my me i i'm im we you it its it's is are
be was some any anymore more one ones thing things stuff something anything very really too
please just also that this those these so much color colour colours colors shade shades
kind kinds sort type types wear wearing look looking want need like would could should can
get got have has buy find show give again any\u2019 thanks thank ok okay yes yeah hi hello
hey there what which who for from by as up down out about them they their our your""".split())
_NO_PREFERENCE = [
    "no preference", "any", "anything", "any is fine", "anything is fine", "don't care",
    "dont care", "do not care", "doesn't matter", "doesnt matter", "does not matter",
    "not sure", "no idea", "whatever", "skip", "either", "up to you", "you choose",
    "surprise me", "not important", "no matter", "any colour", "any color", "all",
    "i don't know", "idk", "dunno", "no", "none", "nope", "pass", "next question",
]
_ACTIONS = {
    "more": ["more", "show me more", "show more", "more options", "other options",
             "something else", "next", "more please", "see more", "others", "what else",
             "not sure, show me more", "not sure show me more", "just show me",
             "show me", "show me what you have", "let me see", "show me some"],
    "cheaper": ["cheaper", "something cheaper", "cheaper please", "less expensive",
                "too expensive", "lower price", "cheaper ones", "cheaper options",
                "anything cheaper", "show me cheaper", "too pricey", "more affordable"],
    "start_over": ["start over", "start again", "restart", "reset", "new search",
                   "begin again", "from scratch", "clear", "start from scratch"],
    "done": ["done", "that's all", "thats all", "that's it", "thats it", "bye", "goodbye",
             "thanks, that's all", "no thanks", "i'm done", "im done", "finished", "all set",
             "thank you, bye", "thanks bye"],
}
_SHOW_NOW = ("show me", "just show", "let me see", "what do you have", "recommend",
             "suggest", "surprise me", "not sure, show me more", "show me more")
# A pick just shown, pointed at: "the second one", "the last pick", "number 3", "#2".
_ORDINALS = {word: i for i, words in enumerate((
    ("first", "1st", "1"), ("second", "2nd", "2"), ("third", "3rd", "3"),
    ("fourth", "4th", "4"), ("fifth", "5th", "5"), ("sixth", "6th", "6"),
    ("seventh", "7th", "7"), ("eighth", "8th", "8"), ("ninth", "9th", "9"),
    ("tenth", "10th", "10"))) for word in words} | {"last": -1}
_ORDINAL = "|".join(w for w in _ORDINALS if not w.isdigit())
_PICK_NOUN = r"(?:one|pick|option|item|choice|product)"
_PICK_REF = re.compile(
    # "the second one", "second pick"; "the second" only where the sentence moves on
    # ("like the second but cheaper"), so "the last minute" or "the first time" are not picks.
    rf"(?:\b(?:the|that)\s+({_ORDINAL})(?:\s+{_PICK_NOUN}\b|(?=\s*(?:$|[,.!?;]|"
    r"(?:but|and|in|please|though|only|too|instead)\b)))"
    rf"|\b({_ORDINAL})\s+{_PICK_NOUN}\b"
    r"|(?:\bnumber|\bno\.|#)\s*(10|[1-9])\b)")
# What the shopper wants done with it. "cheaper" is looked for on its own (below).
_REF_DISLIKE = re.compile(r"\b(?:not|no|don't|dont|do not|hate|dislike|without|except|"
                          r"skip|remove|drop|ugly)\b(?:\s+\w+){0,2}\s*$")
_REF_CHOOSE = re.compile(r"\b(?:take|buy|want|get|choose|go with|go for|order|have|"
                         r"purchase|pick|settle on)\b(?:\s+\w+){0,1}\s*$")
_REF_LIKE_WORDS = re.compile(r"\b(?:like|similar|same|love|liked|loved|more of|such as|"
                             r"resembl\w*)\b")
# Nothing after the pick but thanks: "I'll take the second one, please".
_REF_DONE = re.compile(r"\b(?:please|thanks|thank you|then)\b|[^\w]")
# Words around a pointing that say nothing about a product.
_POINTING_FILLER = re.compile(
    r"\b(?:more|than|but|and|just|please|something|one|ones|show me|i want|i'd like|"
    r"give me|anything|i'll|i'm|i|it|that|this|the|a|an|to|of|so|too|me|will|can|could|"
    r"would|we|thanks)\b")
# "cheaper" inside a longer message ("same but cheaper", "cheaper than the first one").
_CHEAPER = re.compile(r"\b(?:cheaper|less expensive|lower[- ]priced|too expensive|"
                      r"too pricey|more affordable)\b")
_RELATIONS = {
    "husband", "wife", "son", "daughter", "mom", "mum", "mother", "dad", "father", "brother",
    "sister", "niece", "nephew", "boyfriend", "girlfriend", "friend", "partner", "grandma",
    "grandmother", "grandpa", "grandfather", "aunt", "uncle", "kids", "kid", "child",
    "children", "boss", "colleague", "fiance", "fiancee", "hubby", "grandson",
    "granddaughter", "cousin", "baby",
}
_RECIPIENT = re.compile(r"\b(?:for|to|gift for|present for)\s+(?:my|our)\s+(?:little\s+|baby\s+"
                        r"|older\s+|younger\s+|teenage\s+)?([a-z]+)|\bmy\s+([a-z]+)\s+"
                        r"(?:needs|wants|likes|loves|would like)")
_PRONOUN_ONLY_AFTER = {"him": ("for", "to"), "her": ("for", "to")}


def load_synonyms() -> dict[str, dict[str, list[str]]]:
    """The bundled synonyms: attribute -> catalog value -> phrases shoppers use."""
    text = resources.files("assistant").joinpath("synonyms.json").read_text(encoding="utf-8")
    data: dict[str, dict[str, list[str]]] = json.loads(text)
    return data


def clean_text(text: str) -> str:
    """NFKC-fold, drop control characters, cap the length. Never raises."""
    text = unicodedata.normalize("NFKC", text or "")
    text = "".join(ch if (ch.isprintable() or ch in "\n\t") else " " for ch in text)
    return " ".join(text.split())[:MAX_TEXT]


def _tokens(text: str) -> list[str]:
    return [t.replace("’", "'") for t in _TOKEN.findall(text.lower())]


def _variants(phrase: str) -> set[tuple[str, ...]]:
    """A phrase as token tuples: as written, with singular/plural last word, hyphens split
    and joined ('t-shirt' -> 't shirt', 'tshirt')."""
    base = phrase.lower().strip()
    forms = {base, base.replace("-", " "), base.replace("-", "")}
    out: set[tuple[str, ...]] = set()
    for f in forms:
        toks = tuple(_tokens(f))
        if not toks:
            continue
        out.add(toks)
        last = toks[-1]
        if len(last) > 3 and last.endswith("es") and last[:-2].endswith(("s", "x", "ch", "sh")):
            out.add((*toks[:-1], last[:-2]))
        elif len(last) > 3 and last.endswith("s") and not last.endswith("ss"):
            out.add((*toks[:-1], last[:-1]))
        elif len(last) > 2 and last.isalpha():
            out.add((*toks[:-1], last + ("es" if last.endswith(("s", "x", "ch", "sh")) else "s")))
    return out


class Lexicon:
    """Every phrase that names an attribute value of one catalog, as token tuples."""

    def __init__(self, catalog: Catalog, synonyms: dict[str, dict[str, list[str]]]) -> None:
        self.catalog = catalog
        self.entries: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
        found: dict[tuple[str, ...], set[tuple[str, str]]] = {}
        self.synonyms: dict[str, dict[str, list[str]]] = {}
        for spec in catalog.specs:
            values = catalog.values.get(spec.name, [])
            if not values or all(v.isdigit() for v in values):
                continue
            exists = set(values)
            attr_syn = {v: s for v, s in synonyms.get(spec.name, {}).items() if v in exists}
            self.synonyms[spec.name] = attr_syn
            for value in values:
                for phrase in [value, *attr_syn.get(value, [])]:
                    for toks in _variants(phrase):
                        if len(toks) == 1 and (toks[0] in _STOP or len(toks[0]) < 2):
                            continue
                        found.setdefault(toks, set()).add((spec.name, value))
        # One phrase naming the same value in a coarse and a fine attribute ('watches' is a
        # sub-category and an article type): keep the finer one, which implies the other.
        # Kept in one order, the finest attribute first, whatever the interpreter's string
        # hashing: a set's order made one phrase's reasons come out in another order in
        # another worker ("Perfumes, as you asked" before or after "Perfume and body mist").
        finer = {a: len(v) for a, v in catalog.values.items()}
        for key, targets in found.items():
            by_value: dict[str, tuple[str, str]] = {}
            for attr, value in targets:
                kept = by_value.get(value)
                if kept is None or finer[attr] > finer[kept[0]]:
                    by_value[value] = (attr, value)
            self.entries[key] = tuple(sorted(by_value.values(),
                                             key=lambda t: (-finer[t[0]], t[0], t[1])))
        self.max_len = max((len(k) for k in self.entries), default=1)
        self.fuzzy_words = sorted({k[0] for k in self.entries if len(k) == 1 and len(k[0]) >= 4})

    def phrases_for(self, attribute: str, value: str) -> list[str]:
        return [value, *self.synonyms.get(attribute, {}).get(value, [])]


class SemanticMatcher:
    """Embeds each value of an attribute (with its synonyms) once, then matches answers
    that no phrase caught: 'for working out at the gym' -> usage Sports."""

    THRESHOLD = 0.42
    MARGIN = 0.03

    def __init__(self, lexicon: Lexicon, embedder: Embedder) -> None:
        self.lexicon = lexicon
        self.embedder = embedder
        self._vectors: dict[str, tuple[list[str], Any]] = {}
        self._lock = threading.Lock()

    def _attribute_vectors(self, attribute: str) -> tuple[list[str], Any]:
        with self._lock:
            if attribute not in self._vectors:
                values = self.lexicon.catalog.values.get(attribute, [])
                texts = [", ".join(self.lexicon.phrases_for(attribute, v)[:8]) for v in values]
                self._vectors[attribute] = (values, self.embedder.embed(texts))
            return self._vectors[attribute]

    def warm(self, attributes: list[str]) -> None:
        """Embed the values of these attributes now (each is otherwise embedded by the first
        typed answer to a question about it: ~140 article types, a few hundred ms)."""
        for attribute in attributes:
            self._attribute_vectors(attribute)

    def match(self, text: str, attribute: str,
              allowed: set[str] | None = None) -> tuple[str, float] | None:
        """The value of ``attribute`` closest to the text, if it is clearly closest."""
        values, vecs = self._attribute_vectors(attribute)
        if not values:
            return None
        q = self.embedder.embed([text])[0]
        sims = vecs @ q
        order = np.argsort(-sims)
        if allowed is not None:
            order = np.array([i for i in order if values[i] in allowed], dtype=np.int64)
        if len(order) == 0:
            return None
        best = float(sims[order[0]])
        second = float(sims[order[1]]) if len(order) > 1 else -1.0
        if best >= self.THRESHOLD and best - second >= self.MARGIN:
            return values[int(order[0])], best
        return None


@dataclass
class Understanding:
    """What one message said. ``wants``/``avoids`` map attribute -> values."""

    wants: dict[str, set[str]] = field(default_factory=dict)
    avoids: dict[str, set[str]] = field(default_factory=dict)
    avoid_terms: list[str] = field(default_factory=list)
    min_price: float | None = None
    max_price: float | None = None
    cheap: bool = False
    no_preference: bool = False
    action: str | None = None
    show_now: bool = False
    recipient: str | None = None
    # A pick just shown that the message points at (0-based; -1 the last) and what about it:
    # "like" (more like it), "dislike" (not that one), "choose" (I'll take it) or "cheaper"
    # (cheaper than it).
    pick_ref: int | None = None
    pick_ref_kind: str | None = None
    cheaper: bool = False  # "cheaper" said inside a longer message
    positive_text: str = ""
    matched: list[str] = field(default_factory=list)

    @property
    def has_facts(self) -> bool:
        return bool(self.wants or self.avoids or self.avoid_terms or self.min_price is not None
                    or self.max_price is not None)


def _amount(num: str, k: str | None) -> float:
    """The amount written; raises ValueError past MAX_PRICE (never infinite or NaN)."""
    value = float(num.replace(",", "")) * (1000 if k else 1)
    if not math.isfinite(value) or value > MAX_PRICE:
        raise ValueError(f"{num} is not a budget")
    return value


def _parse_prices(text: str, out: Understanding) -> str:
    """Fill min/max price from the text; return the text with price phrases blanked."""
    for kind, pattern in _PRICE_PATTERNS:
        m = pattern.search(text)
        if not m:
            continue
        try:
            g = m.groups()
            if kind in ("between", "range"):
                lo, hi = sorted((_amount(g[0], g[1]), _amount(g[2], g[3])))
                out.min_price, out.max_price = lo, hi
            elif kind == "max":
                out.max_price = _amount(g[0], g[1])
            elif kind == "min":
                out.min_price = _amount(g[0], g[1])
            else:
                v = _amount(g[0], g[1])
                out.min_price, out.max_price = round(v * 0.8, 2), round(v * 1.2, 2)
        except (ValueError, IndexError):
            continue
        text = text[: m.start()] + " " + text[m.end():]
    return text


def _parse_pick_ref(text: str, out: Understanding) -> str:
    """Find "the second one" and what is wanted of it, and "cheaper" said in passing; return
    the text with those words blanked, so they are not read as a product's words."""
    m = _PICK_REF.search(text)
    cheaper = _CHEAPER.search(text)
    if cheaper:
        out.cheaper = True
    if m:
        word = next(g for g in m.groups() if g)
        out.pick_ref = _ORDINALS[word]
        before = text[: m.start()]
        if cheaper and cheaper.start() < m.start():
            out.pick_ref_kind = "cheaper"
        elif _REF_DISLIKE.search(before):
            out.pick_ref_kind = "dislike"
            before = _REF_DISLIKE.sub(" ", before)
        elif _REF_CHOOSE.search(before) and not cheaper \
                and not _REF_DONE.sub("", text[m.end():]):
            out.pick_ref_kind = "choose"  # "I'll take the second one"
            before = _REF_CHOOSE.sub(" ", before)
        else:
            out.pick_ref_kind = "like"
        text = before + " " + text[m.end():]
    if out.pick_ref is not None or out.cheaper:
        text = _CHEAPER.sub(" ", text)
        text = _REF_LIKE_WORDS.sub(" ", text)
        text = _POINTING_FILLER.sub(" ", text)
    return text


def _match_cue(tokens: list[str], i: int) -> int:
    for cue in _NEGATION_CUES:
        if tuple(tokens[i:i + len(cue)]) == cue:
            return len(cue)
    return 0


def understand(text: str, lexicon: Lexicon, *, asked: str | None = None,
               semantic: SemanticMatcher | None = None,
               option_values: set[str] | None = None) -> Understanding:
    """Read one message.

    ``asked`` is the attribute of the question just asked: a bare 'no preference' then skips
    it, and the embedding fallback looks only at its values. Returns an Understanding; never
    raises on odd input.
    """
    out = Understanding()
    raw = clean_text(text)
    low = raw.lower().replace("’", "'")
    stripped = low.strip(" .!?")
    if not stripped:
        return out
    if stripped in _NO_PREFERENCE or stripped.startswith(("no preference", "not sure")):
        out.no_preference = True
        if stripped.startswith("not sure") and "show" in stripped:
            out.show_now = True
        return out
    for action, phrases in _ACTIONS.items():
        if stripped in phrases:
            out.action = action
            out.show_now = action == "more"
            return out

    m = _RECIPIENT.search(low)
    if m:
        rel = m.group(1) or m.group(2)
        if rel in _RELATIONS:
            out.recipient = rel
    if any(p in low for p in _SHOW_NOW):
        out.show_now = True
    if re.search(r"\b(cheap|cheapest|affordable|inexpensive|budget|low cost|low-cost)\b", low):
        out.cheap = True

    low = _parse_prices(low, out)
    low = _parse_pick_ref(low, out)
    tokens = _tokens(low)
    negated = [False] * len(tokens)
    consumed = [False] * len(tokens)
    negating = False
    i = 0
    while i < len(tokens):
        n_cue = _match_cue(tokens, i)
        if n_cue:
            negating = True
            for j in range(i, i + n_cue):
                consumed[j] = True
                negated[j] = True
            i += n_cue
            continue
        if tokens[i] in _BOUNDARIES:
            negating = False
        negated[i] = negating
        i += 1

    def add(attr: str, value: str, neg: bool) -> None:
        target = out.avoids if neg else out.wants
        target.setdefault(attr, set()).add(value)

    i = 0
    while i < len(tokens):
        if consumed[i] or tokens[i] in _BOUNDARIES:
            i += 1
            continue
        hit = None
        for n in range(min(lexicon.max_len, len(tokens) - i), 0, -1):
            key = tuple(tokens[i:i + n])
            if key in lexicon.entries:
                hit = (n, lexicon.entries[key])
                break
        if hit:
            n, targets = hit
            word = tokens[i]
            after = _PRONOUN_ONLY_AFTER.get(word)
            if n == 1 and after and (i == 0 or tokens[i - 1] not in after):
                i += 1
                continue
            for attr, value in targets:
                add(attr, value, negated[i])
            out.matched.append(" ".join(tokens[i:i + n]))
            for j in range(i, i + n):
                consumed[j] = True
            i += n
            continue
        word = tokens[i]
        if len(word) >= 4 and word.isalpha() and word not in _STOP and lexicon.fuzzy_words:
            best = process.extractOne(word, lexicon.fuzzy_words, scorer=fuzz.ratio,
                                      score_cutoff=86)
            if best and best[0] != word:
                # Put the corrected word back so it can join a longer phrase ('navvy blue').
                tokens[i] = best[0]
                continue
        i += 1

    for i, tok in enumerate(tokens):
        if negated[i] and not consumed[i] and tok.isalpha() and len(tok) >= 3 \
                and tok not in _STOP and tok not in _BOUNDARIES:
            out.avoid_terms.append(tok)

    # The same value both wanted and avoided: the later, negated mention is the decision.
    for attr in list(out.wants):
        out.wants[attr] -= out.avoids.get(attr, set())
        if not out.wants[attr]:
            del out.wants[attr]

    if asked and semantic is not None and asked not in out.wants and asked not in out.avoids \
            and not out.has_facts and not out.action:
        found = semantic.match(raw, asked, option_values)
        if found:
            out.wants[asked] = {found[0]}
            out.matched.append(f"~{found[0]}")

    out.positive_text = " ".join(t for t, neg in zip(tokens, negated, strict=True)
                                 if not neg and t not in {",", ".", ";", "!", "?"})
    return out
