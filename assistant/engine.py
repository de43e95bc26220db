"""One turn of a conversation: understand, plan (question or picks), move the machine, save.

``Assistant`` is the one object web/ talks to. It holds the catalogs, the embedder and a way
to get a Store for the current thread; it keeps no conversation in memory between turns.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np

from catalog.catalog import Catalog
from catalog.embedder import Embedder
from catalog.lru import BoundedLRU

from . import memory
from . import preferences as prefs
from .errors import (
    CatalogNotFound,
    ConversationClosed,
    InvalidInput,
    ProductNotFound,
)
from .machine import Conversation, MachineError
from .messages import compose_message
from .questions import Question, choose_question, options_for
from .ranking import Constraints, Pick, Ranked, candidates, hard_mask, pick_json, rank
from .store import Store, now_iso
from .understanding import Lexicon, SemanticMatcher, Understanding, load_synonyms, understand

__all__ = ["Assistant", "Settings", "hash_token"]

CHANNELS = ("web", "kiosk", "phone")
ACTIONS = ("more", "cheaper", "start_over", "done")
FEEDBACK = ("like", "dislike", "not_interested", "already_own")
MAX_TEXT = 2000
#: What a conversation keeps of the shopper's words: the last this many messages, each cut
#: to 300 characters. The query is built from the last four; the rest serve the reasons
#: and naming a maker ("nike running shoes"). Kept whole, a conversation's state (read and
#: written at every turn) and the words searched for a maker grew with every message:
#: 3,000 short turns made each turn 3 ms dearer, long messages far more.
KEPT_TEXTS = 12
#: Below this cosine between the shopper's words and the nearest product, with nothing in
#: them recognised (no type, colour, budget...), the picks are guesses and the message says
#: so. Measured on the bundled fashion catalog: English requests reach 0.42-0.72
#: ("birthday present" 0.42, "lounge wear" 0.69); "rote Schuhe für Damen" 0.34, "zapatos
#: rojos para mujer" 0.42, "hello" 0.27, keyboard mashing 0.37.
UNSURE_COSINE = 0.42


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Settings:
    max_questions: int = 3
    picks: int = 5
    half_life_days: float = 30.0
    session_hours: float = 4.0


#: What the same words and the same constraints always give, kept per catalog and worker: a
#: rush brings the same openings again and again ("something for my wife" weighs 18k
#: products and counts their facets). At most this many plans, and this many bytes of them.
PLAN_CACHE_SIZE = 1024
PLAN_CACHE_BYTES = 16 << 20

_Plan = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]


@dataclass
class _CatalogTools:
    catalog: Catalog
    lexicon: Lexicon
    semantic: SemanticMatcher
    # (allowed rows, candidate rows, their scores) and the question over them, by _plan_key
    plans: BoundedLRU[_Plan] = field(
        default_factory=lambda: BoundedLRU(PLAN_CACHE_SIZE, PLAN_CACHE_BYTES))
    questions: BoundedLRU[Question | None] = field(
        default_factory=lambda: BoundedLRU(PLAN_CACHE_SIZE))
    # the picks with their reasons, for a plan and the words they quote (no profile's)
    picks: BoundedLRU[tuple[Pick, ...]] = field(
        default_factory=lambda: BoundedLRU(PLAN_CACHE_SIZE))


def _plan_key(c: Constraints, qvec: Any) -> bytes | None:
    """Everything the allowed rows, the candidates and their scores depend on, as a digest;
    None where a plan is this conversation's own (products already shown or liked) and
    would never be asked for again."""
    if c.exclude_ids or c.liked_ids:
        return None

    def sets(d: dict[str, set[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple(sorted((a, tuple(sorted(v))) for a, v in d.items()))
    what = (sets(c.wants), sets(c.avoids), sets(c.profile_avoids), tuple(c.avoid_terms),
            c.min_price, c.max_price, c.below_price, tuple(sorted(c.blocked_types.items())),
            tuple((p.attribute, p.value, p.polarity, p.strength) for p in c.soft),
            tuple((b.attribute, b.value, b.weight) for b in c.boosts), c.cheap)
    h = hashlib.blake2b(repr(what).encode(), digest_size=20)
    h.update(b"-" if qvec is None else np.ascontiguousarray(qvec, dtype=np.float32).tobytes())
    return h.digest()


def _copy(q: Question | None) -> Question | None:
    """A cached question for one conversation: its options end up in that one's context."""
    return None if q is None else Question(q.attribute, q.prompt,
                                           [dict(o) for o in q.options],
                                           q.allows_free_text, q.bits)


@dataclass
class Assistant:
    """The shopper-facing brain, shared by every channel."""

    catalogs: dict[str, Catalog]
    embedder: Embedder
    store: Callable[[], Store]
    default_catalog: str
    settings: Settings = field(default_factory=Settings)

    def __post_init__(self) -> None:
        synonyms = load_synonyms()
        self._tools: dict[str, _CatalogTools] = {}
        for name, cat in self.catalogs.items():
            lex = Lexicon(cat, synonyms)
            self._tools[name] = _CatalogTools(cat, lex, SemanticMatcher(lex, self.embedder))
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def warm(self) -> None:
        """Do now what the first turns would otherwise pay for: the vectors of every value
        of every attribute the assistant asks about, for matching typed answers, and who
        makes each product and what two products have in common (for variety)."""
        for tools in self._tools.values():
            tools.semantic.warm(tools.catalog.facet_names)
            tools.catalog.variety_table()  # reads the makers too
            tools.catalog.title_ids  # noqa: B018 (made when first read)

    # Catalog access ------------------------------------------------------------------------
    def tools(self, name: str | None) -> _CatalogTools:
        key = name or self.default_catalog
        if key not in self._tools:
            raise CatalogNotFound(f"there is no catalog {key!r}; catalogs here: "
                                  f"{', '.join(sorted(self._tools))}")
        return self._tools[key]

    def catalog(self, name: str | None) -> Catalog:
        return self.tools(name).catalog

    def _lock(self, conversation_id: str) -> threading.Lock:
        with self._locks_guard:
            if len(self._locks) > 10000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault(conversation_id, threading.Lock())

    # Conversations -------------------------------------------------------------------------
    def start(self, *, channel: str, shopper_id: str | None = None, catalog: str | None = None,
              store_id: str | None = None, text: str | None = None,
              agent_id: str | None = None, product_id: str | None = None
              ) -> tuple[Conversation, str, dict[str, Any]]:
        """Open a conversation; returns it, its token and the first Turn. ``product_id`` is
        the product the shopper is looking at: never one of the picks. Raises
        ProductNotFound for an unknown one."""
        if channel not in CHANNELS:
            raise InvalidInput(f"channel must be one of {', '.join(CHANNELS)}")
        tools = self.tools(catalog)
        if product_id is not None and tools.catalog.product(product_id) is None:
            raise ProductNotFound(f"there is no product {product_id!r} in catalog "
                                  f"{tools.catalog.name!r}")
        token = secrets.token_urlsafe(24)
        conv = Conversation(
            conversation_id="c_" + secrets.token_hex(10), channel=channel,
            catalog=tools.catalog.name, shopper_id=shopper_id, store_id=store_id,
            created_at=now_iso(), agent_id=agent_id, looking_at=product_id, ctx=_fresh_ctx())
        store = self.store()
        # The conversation is stored with its first turn, in one transaction: a first turn
        # that is refused, or a disk that fills, leaves no empty conversation behind.
        if text is not None and text.strip():
            turn = self._run(conv, {"text": text}, store, token_hash=hash_token(token))
        else:
            turn = self._respond(conv, tools, None, event=None, store=store)
            turn["message"] = compose_message(tools.catalog, conv.state, conv.ctx, turn, None)
            conv.ctx["seq"] = 0
            store.save_turn(conv, conv.version, 0, {}, turn, token_hash=hash_token(token))
        return conv, token, turn

    def turn(self, conversation_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer one shopper turn. Raises ConversationNotFound, InvalidInput,
        ConversationClosed, ProductNotFound, Conflict."""
        with self._lock(conversation_id):
            store = self.store()
            conv = store.load_conversation(conversation_id)
            return self._run(conv, payload, store)

    def transcript(self, conversation_id: str) -> dict[str, Any]:
        store = self.store()
        conv = store.load_conversation(conversation_id)
        return {"conversation_id": conv.conversation_id, "state": conv.state,
                "channel": conv.channel, "shopper_id": conv.shopper_id,
                "catalog": conv.catalog, "store_id": conv.store_id,
                "created_at": conv.created_at, "turns": store.turns(conversation_id)}

    # One turn ------------------------------------------------------------------------------
    def _run(self, conv: Conversation, payload: dict[str, Any], store: Store, *,
             token_hash: str | None = None) -> dict[str, Any]:
        """Answer one turn and save it. With ``token_hash`` the conversation is new: it is
        created in the same transaction as this, its first turn."""
        tools = self.tools(conv.catalog)
        ctx = conv.ctx
        expected = conv.version
        event, heard = self._interpret(conv, tools, payload)
        if conv.state == "done" and event != "start_over":
            raise ConversationClosed(
                "this conversation is finished; start a new one or send "
                '{"action": "start_over"}')
        if event == "start_over":
            conv.ctx = ctx = _fresh_ctx(seq=ctx.get("seq", 0))
        turn = self._respond(conv, tools, heard, event=event, store=store)
        try:
            conv.trigger(event)
        except MachineError as exc:
            raise InvalidInput(f"'{event}' is not possible now ({conv.state})") from exc
        turn["state"] = conv.state
        turn["message"] = compose_message(tools.catalog, conv.state, ctx, turn, event)
        seq = int(ctx.get("seq", -1)) + 1
        ctx["seq"] = seq
        conv.version = expected + 1
        lessons = self._lessons(conv, heard, payload)
        # Without lessons the one statement is its own transaction (the common case).
        with store.transaction() if lessons else nullcontext():
            store.save_turn(conv, expected, seq, _loggable(payload), turn,
                            token_hash=token_hash)
            for lesson in lessons:
                lesson(store)
        return turn

    def _interpret(self, conv: Conversation, tools: _CatalogTools, payload: dict[str, Any]
                   ) -> tuple[str, Understanding | None]:
        """Fold the payload into the conversation's context; return the machine event."""
        ctx = conv.ctx
        kinds = [k for k in ("text", "answer", "action", "feedback") if payload.get(k) is not None]
        if len(kinds) != 1:
            raise InvalidInput('send exactly one of "text", "answer", "action" or "feedback"')
        kind = kinds[0]
        cat = tools.catalog
        asked = (ctx.get("question") or {}).get("attribute")
        if kind == "action":
            action = payload["action"]
            if action not in ACTIONS:
                raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}")
            return self._action(ctx, action), None
        if kind == "feedback":
            fb = payload["feedback"]
            if not isinstance(fb, dict) or fb.get("kind") not in FEEDBACK \
                    or not isinstance(fb.get("product_id"), str):
                raise InvalidInput('feedback needs "product_id" (a string) and "kind", one of '
                                   + ", ".join(FEEDBACK))
            if cat.product(fb["product_id"]) is None:
                raise ProductNotFound(f"there is no product {fb['product_id']!r} in "
                                      f"catalog {cat.name!r}")
            ctx.setdefault("feedback", {}).setdefault(fb["kind"], []).append(fb["product_id"])
            return "feedback", None
        if kind == "answer":
            ans = payload["answer"]
            if not isinstance(ans, dict) or not isinstance(ans.get("attribute"), str):
                raise InvalidInput('answer needs "attribute" and "value" (a string or null)')
            attr, value = ans["attribute"], ans.get("value")
            if attr not in cat.codes:
                raise InvalidInput(f"there is no attribute {attr!r} in catalog {cat.name!r}")
            if value is None:
                _settle(ctx, attr, skipped=True)
                ctx["question"] = None
                return "hear", None
            if not isinstance(value, str):
                raise InvalidInput("answer value must be a string or null")
            canon = {v.casefold(): v for v in cat.values[attr]}.get(value.strip().casefold())
            if canon is None:
                raise InvalidInput(f"{value!r} is not a {attr} in catalog {cat.name!r}")
            u = Understanding(wants={attr: {canon}})
            u.matched.append(canon)
            self._fold(ctx, u, asked)
            return "hear", u
        text = payload["text"]
        if not isinstance(text, str):
            raise InvalidInput("text must be a string")
        if not text.strip():
            raise InvalidInput("text is empty: say what you are looking for")
        if len(text) > MAX_TEXT:
            raise InvalidInput(f"text is too long ({len(text)} characters; the limit is "
                               f"{MAX_TEXT})")
        u = understand(text, tools.lexicon, asked=asked, semantic=tools.semantic,
                       option_values=set(cat.values.get(asked, [])) if asked else None)
        if u.pick_ref is not None or u.cheaper:
            pointed = self._pointed(ctx, cat, u)
            if pointed is not None:
                return pointed, None
        if u.action and not u.has_facts:
            return self._action(ctx, u.action), None
        if u.no_preference and asked and not u.has_facts:
            if u.show_now and asked not in ctx.get("reasked", []):
                # "Not sure, show me more" to a question: none of those options, so show the
                # next ones (once) with other picks, before giving the attribute up.
                ctx["reask"] = asked
            else:
                _settle(ctx, asked, skipped=True)
            ctx["question"] = None
            if u.show_now:
                ctx["page_forward"] = True
            return "hear", u
        self._fold(ctx, u, asked)
        return "hear", u

    def _pointed(self, ctx: dict[str, Any], cat: Catalog, u: Understanding) -> str | None:
        """Act on the picks just shown, as typed: "more like the second one", "not the third
        one", "cheaper than the first one", "the same but cheaper". Returns the event when
        the message says nothing else, None when its other words are still to be heard."""
        pid = None
        if u.pick_ref is not None:
            last = ctx.get("last_picks", [])
            if -len(last) <= u.pick_ref < len(last):
                pid = last[u.pick_ref]
            elif last:
                ctx["ref_missing"] = len(last)  # "the fifth one" when three were shown
        if pid is not None and u.pick_ref_kind in ("like", "dislike"):
            ctx.setdefault("feedback", {}).setdefault(u.pick_ref_kind, []).append(pid)
            ctx["told"] = [u.pick_ref_kind, pid]
            if u.pick_ref_kind == "like":
                ctx["page_forward"] = True  # others like it, not the same five again
                ctx["similar_to"] = pid
        if pid is not None and u.pick_ref_kind == "choose":
            ctx["chosen"] = pid  # the same picks stay; the message says how to get it
        if u.cheaper:
            product = cat.product(pid) if pid is not None else None
            if product is not None and product.price is not None:
                ctx["cheaper_than"] = product.price
            ctx["cheaper_now"] = True
        if u.has_facts:
            return None
        if u.cheaper and u.pick_ref_kind in (None, "cheaper"):
            ctx.pop("cheaper_now", None)
            return self._action(ctx, "cheaper")
        return "feedback"

    def _action(self, ctx: dict[str, Any], action: str) -> str:
        if action == "more":
            ctx["show_now"] = True
            ctx["page"] = ctx.get("page", 0) + 1
            ctx["question"] = None
            return "more"
        if action == "cheaper":
            ctx["cheaper"] = True
            ctx["question"] = None
            return "cheaper"
        if action == "start_over":
            return "start_over"
        return "finish"

    def _fold(self, ctx: dict[str, Any], u: Understanding, asked: str | None) -> None:
        """Merge what one message said into the conversation's facts: a new value for an
        attribute replaces the old one; avoiding a value drops it from the wants."""
        wants: dict[str, list[str]] = ctx.setdefault("wants", {})
        avoids: dict[str, list[str]] = ctx.setdefault("avoids", {})
        for attr, values in u.wants.items():
            wants[attr] = sorted(values)
            avoids[attr] = [v for v in avoids.get(attr, []) if v not in values]
            _settle(ctx, attr)
        for attr, values in u.avoids.items():
            avoids[attr] = sorted(set(avoids.get(attr, [])) | values)
            if attr in wants:
                wants[attr] = [v for v in wants[attr] if v not in values]
                if not wants[attr]:
                    del wants[attr]
        for term in u.avoid_terms:
            if term not in ctx.setdefault("avoid_terms", []):
                ctx["avoid_terms"].append(term)
        if u.min_price is not None:
            ctx["min_price"] = u.min_price
        if u.max_price is not None:
            ctx["max_price"] = u.max_price
            ctx.pop("below_price", None)
        if u.cheap:
            ctx["cheap"] = True
        if u.recipient:
            ctx["recipient"] = u.recipient
        if u.show_now:
            ctx["show_now"] = True
        if u.positive_text and (u.has_facts or not u.no_preference):
            texts = ctx.setdefault("texts", [])
            texts.append(u.positive_text[:300])
            del texts[:-KEPT_TEXTS]
        if asked and asked in u.wants:
            ctx["question"] = None
        facts = bool(wants or avoids or ctx.get("avoid_terms") or ctx.get("texts")
                     or ctx.get("max_price") is not None or ctx.get("min_price") is not None)
        ctx["facts"] = facts
        ctx["page"] = 0

    # Planning ------------------------------------------------------------------------------
    def constraints(self, conv: Conversation, cat: Catalog, store: Store) -> Constraints:
        """The conversation's facts plus the shopper's profile, as ranking constraints."""
        ctx = conv.ctx
        fb = ctx.get("feedback", {})
        # A catalog without prices cannot be held to a budget: the budget would rule out
        # every product. It is kept in ctx and the message says it was not applied.
        budget = ctx if cat.has_prices else {}
        c = Constraints(
            wants={a: set(v) for a, v in ctx.get("wants", {}).items()},
            avoids={a: set(v) for a, v in ctx.get("avoids", {}).items() if v},
            avoid_terms=list(ctx.get("avoid_terms", [])),
            min_price=budget.get("min_price"), max_price=budget.get("max_price"),
            below_price=budget.get("below_price"),
            exclude_ids=set(fb.get("dislike", []) + fb.get("not_interested", [])
                            + fb.get("already_own", [])),
            liked_ids=list(fb.get("like", [])), cheap=bool(ctx.get("cheap")),
        )
        looking = ctx.get("looking_at") or conv.looking_at
        if looking:
            c.exclude_ids.add(looking)
            c.boosts.extend(memory.similar_boosts(cat, looking))
        for pid in fb.get("already_own", []):
            row = cat.row_of.get(pid)
            if row is None or cat.consumable[row]:
                continue
            atype = cat.products[row].attributes.get("article_type")
            if atype:
                c.blocked_types[atype] = (f"You said you already own {memory.one_of(atype)}, "
                                          f"so no more {memory.kind_of(atype)} unless you ask")
        if not conv.shopper_id:
            return c
        events = store.events(conv.shopper_id)
        recipient = memory.recipient_key(ctx.get("recipient"))
        mem = memory.recall(events, cat, now=datetime.now(UTC), recipient=recipient,
                            session_hours=self.settings.session_hours,
                            read_query=self.query_reader(cat.name))
        c.exclude_ids |= mem.exclude_ids
        c.blocked_types = {**mem.blocked_types, **c.blocked_types}
        c.boosts.extend(mem.boosts)
        if recipient:
            # Shopping for someone else: their saved likes, never the shopper's own taste.
            saved = store.recipient(conv.shopper_id, recipient)
            if saved:
                c.boosts.extend(memory.recipient_boosts(saved, cat,
                                                        self.query_reader(cat.name)))
            return c
        c.soft = self._preferences(conv.shopper_id, cat, store, events)[2]
        for p in c.soft:
            if p.source == "stated" and p.polarity == "avoid" and \
                    p.value not in c.wants.get(p.attribute, set()):
                c.profile_avoids.setdefault(p.attribute, set()).add(p.value)
        c.soft = [p for p in c.soft if not (p.source == "stated" and p.polarity == "avoid")]
        return c

    def query_reader(self, catalog: str) -> prefs.QueryReader:
        """Reads a search query with the catalog's lexicon (cached: history repeats)."""
        lexicon = self.tools(catalog).lexicon
        cache: dict[tuple[str, str], dict[str, set[str]]] = \
            self.__dict__.setdefault("_read_cache", {})

        def read(query: str) -> dict[str, set[str]]:
            key = (catalog, " ".join(query.casefold().split()))
            hit = cache.get(key)
            if hit is None:
                if len(cache) > 20000:
                    cache.clear()
                hit = cache[key] = understand(query[:500], lexicon).wants
            return hit
        return read

    def _respond(self, conv: Conversation, tools: _CatalogTools, heard: Understanding | None,
                 *, event: str | None, store: Store) -> dict[str, Any]:
        """Plan the reply: maybe a question, maybe picks. Writes the plan into ctx."""
        cat = tools.catalog
        ctx = conv.ctx
        turn: dict[str, Any] = {"state": conv.state, "message": "", "question": None,
                                "picks": [], "preferences": []}
        if not ctx.get("facts"):
            ctx["question"] = None
            return turn
        c = self.constraints(conv, cat, store)
        shown = list(ctx.get("shown", []))
        # "cheaper" tapped, or said in a longer message ("like the second one but cheaper")
        cheaper = event == "cheaper" or bool(ctx.pop("cheaper_now", False))
        cheaper_than = ctx.pop("cheaper_than", None)  # "cheaper than the first one"
        if cheaper and not cat.has_prices:
            if event == "cheaper":
                ctx["notice"] = "no_prices"
                ctx["question"] = None
                turn["preferences"] = self._turn_preferences(conv, c)  # still in force
                return turn
            ctx["prices_missing"] = True
        elif cheaper:
            if cheaper_than is not None:
                last = [cheaper_than]
            else:
                last = [p.price for p in map(cat.product, ctx.get("last_picks", []))
                        if p is not None and p.price is not None] \
                    or ctx.get("last_picks_prices", [])  # saved before 3 Dec 2026
            floor = min([*last, *(x for x in [ctx.get("below_price")] if x is not None)],
                        default=None)
            if floor is not None:
                ctx["below_price"] = floor
                c.below_price = floor
            ctx["cheap"] = True
            c.cheap = True
        if event == "more" or ctx.pop("page_forward", False):
            c.exclude_ids |= set(shown)
        elif event == "feedback":
            # Feedback is about the page in front of the shopper: its other picks stay, and
            # earlier pages do not come back in place of the one dropped.
            c.exclude_ids |= set(shown) - set(ctx.get("last_picks", []))
        qvec = self._query_vector(ctx)
        key = _plan_key(c, qvec)

        def plan() -> _Plan:
            mask = hard_mask(cat, c)
            got = candidates(cat, mask, qvec, c)
            return np.flatnonzero(mask), got.rows, got.scores
        # allowed: every product that fits what was said
        allowed, rows, scores = tools.plans.get(key, plan) if key else plan()
        ranked = Ranked(rows, scores)
        if heard is not None and qvec is not None and len(ranked.rows) \
                and not _said_anything_known(ctx) \
                and float(cat.index.scores(qvec, ranked.rows[:50]).max()) < UNSURE_COSINE:
            ctx["notice"] = "unsure"
        ctx["candidates"] = len(allowed)
        question: Question | None = None
        asked_count = int(ctx.get("questions_asked", 0))  # what the shopper volunteered is free
        may_ask = (not ctx.get("show_now") and event not in ("more", "cheaper")
                   and asked_count < self.settings.max_questions)
        if may_ask and conv.state in ("recommending", "refining"):
            may_ask = len(allowed) > 20
        reask = ctx.pop("reask", None)
        if reask is not None:
            if reask not in ctx.setdefault("reasked", []):
                ctx["reasked"].append(reask)
            offered = set(ctx.get("offered", {}).get(reask, [])) | c.avoids.get(reask, set())
            spec = cat.spec(reask)
            options = options_for(cat, reask, allowed, exclude=offered) \
                if spec is not None and event not in ("more", "cheaper") else []
            if len(options) >= 2:
                question = Question(reask, spec.question if spec else "", options)
                may_ask = False
            else:
                _settle(ctx, reask, skipped=True)
        if may_ask:
            settled = set(ctx.get("wants", {})) | set(ctx.get("skipped", [])) | \
                set(ctx.get("asked", []))
            # Counted over every product that fits what was said, not only the nearest ones:
            # a vague opening must not hide the kinds of thing it could mean.
            def ask() -> Question | None:
                return choose_question(cat, allowed, settled=settled, avoided=c.avoids)
            question = _copy(tools.questions.get((key, *sorted(settled)), ask)) if key \
                else ask()
        if question is not None:
            ctx["question"] = {"attribute": question.attribute, "options": question.options}
            offered_before = ctx.setdefault("offered", {}).setdefault(question.attribute, [])
            offered_before.extend(o["value"] for o in question.options
                                  if o["value"] not in offered_before)
            if question.attribute not in ctx.setdefault("asked", []):
                ctx["asked"].append(question.attribute)
                ctx["questions_asked"] = asked_count + 1
            turn["question"] = question.to_json()
        else:
            ctx["question"] = None
        said = " ".join(ctx.get("texts", []))

        def choose() -> tuple[Pick, ...]:
            return tuple(rank(cat, ranked, c, k=self.settings.picks,
                              query_words=said[-80:], said=said))
        # The reasons quote the shopper's words (the rest is in the plan's key). Picks that
        # speak of a profile (a preference's evidence, a boost's sentence) are the shopper's
        # own and are not kept: a cache is no place for what a forget must reach.
        if key and not c.soft and not c.boosts:
            pick_key = hashlib.blake2b(said.encode(), digest_size=20, key=key).digest()
            picks = [Pick(p.row, p.score, list(p.reasons))
                     for p in tools.picks.get(pick_key, choose)]
        else:
            picks = list(choose())
        turn["picks"] = [pick_json(cat, p) for p in picks]
        ctx["last_picks"] = [cat.products[p.row].product_id for p in picks]
        ctx["shown"] = list(dict.fromkeys([*shown, *(cat.products[p.row].product_id
                                                    for p in picks)]))[-500:]
        turn["preferences"] = self._turn_preferences(conv, c)
        return turn

    def _query_vector(self, ctx: dict[str, Any]) -> Any:
        """The conversation's query as one unit vector, or None when it has no words: the sum
        of the vectors of the shopper's last four texts and (at VALUE_WEIGHT) of the values
        they chose, normalised. Each piece is embedded alone, so the embedder's cache
        answers every piece it has seen: a tapped option costs no model call, a typed answer
        only its own words. Embedding the pieces joined into one string instead made every
        tap a new string to encode, for the same picks: success@5 0.977 composed against
        0.973 joined on scripts/evaluate.py (300 shoppers, seed 7), 0.977 both on seed 11.
        """
        texts = [t for t in list(ctx.get("texts", []))[-4:] if t.strip()]
        values = [v for vs in ctx.get("wants", {}).values() for v in vs]
        if not texts and not values:
            return None
        total = np.zeros(self.embedder.dimensions, dtype=np.float32)
        for t in texts:
            total += self.embedder.embed([t])[0]
        for v in values:
            total += VALUE_WEIGHT * self.embedder.embed([v])[0]
        norm = float(np.linalg.norm(total))
        return total / norm if norm > 0 else None

    def _turn_preferences(self, conv: Conversation, c: Constraints) -> list[dict[str, Any]]:
        said_on = datetime.now(UTC).date().isoformat()
        out = []
        for attr, values in c.wants.items():
            for v in sorted(values):
                out.append(prefs.Preference(attr, v, "want", "stated", 1.0,
                                            f"you said so on {said_on}", now_iso()).to_json())
        for attr, values in c.avoids.items():
            for v in sorted(values):
                out.append(prefs.Preference(attr, v, "avoid", "stated", 1.0,
                                            f"you said so on {said_on}", now_iso()).to_json())
        seen = {(p["attribute"], p["value"]) for p in out}
        for p in c.soft:
            if (p.attribute, p.value) not in seen:
                out.append(p.to_json())
        for attr, values in c.profile_avoids.items():
            for v in sorted(values):
                if (attr, v) not in seen:
                    out.append(prefs.Preference(attr, v, "avoid", "stated", 1.0,
                                                "you said so before", now_iso()).to_json())
        return out

    def _lessons(self, conv: Conversation, heard: Understanding | None,
                 payload: dict[str, Any]) -> list[Callable[[Store], None]]:
        """What this turn teaches the profile, as writes to make with the turn: a signed-in
        shopper's own statements become stated preferences; feedback becomes events.
        Nothing said while shopping for someone else is kept as their own taste."""
        ctx = conv.ctx
        told = ctx.pop("told", None)  # a pick pointed at in words: as if its button was tapped
        shopper_id = conv.shopper_id
        if not shopper_id:
            return []
        fb = payload.get("feedback") or (
            {"kind": told[0], "product_id": told[1]} if told else None)
        lessons: list[Callable[[Store], None]] = []
        if fb:
            lessons.append(partial(Store.add_event, shopper_id=shopper_id,
                                   type_="feedback:" + fb["kind"], product_id=fb["product_id"],
                                   catalog=conv.catalog, conversation_id=conv.conversation_id,
                                   recipient=ctx.get("recipient")))
        if payload.get("feedback") or heard is None or ctx.get("recipient"):
            return lessons
        said = payload.get("text") or ""
        day = datetime.now(UTC).date().isoformat()
        if said:
            evidence = f"you said “{said[:80]}” on {day}"
        else:
            evidence = f"you chose it on {day}"
        for polarity, stated in (("want", heard.wants), ("avoid", heard.avoids)):
            for attr, values in stated.items():
                if attr == "article_type" and polarity == "want":
                    continue  # what you shop for today is not a standing taste
                for v in values:
                    lessons.append(partial(
                        Store.put_preference, shopper_id=shopper_id, attribute=attr,
                        value=v, polarity=polarity, evidence=evidence, said=said[:300],
                        conversation_id=conv.conversation_id))
        return lessons

    # Profiles ------------------------------------------------------------------------------
    def profile(self, shopper_id: str, cat: Catalog | None = None,
                store: Store | None = None, *, events: list[dict[str, Any]] | None = None
                ) -> dict[str, Any]:
        """The shopper's stated, inferred and effective preferences, each with its evidence,
        plus what their history does to picks (``purchase_rules``, ``nudges``,
        ``excluded_products``) and their saved ``recipients``."""
        store = store or self.store()
        cat = cat or self.catalog(None)
        events = store.events(shopper_id) if events is None else events
        stated, inferred, eff, rows = self._preferences(shopper_id, cat, store, events)
        out: dict[str, Any] = {"shopper_id": shopper_id,
                               "stated": [p.to_json() for p in stated],
                               "inferred": [p.to_json() for p in inferred],
                               "effective": [p.to_json() for p in eff]}
        mem = memory.recall(events, cat, now=datetime.now(UTC),
                            session_hours=self.settings.session_hours,
                            read_query=self.query_reader(cat.name))
        return {**out,
                "dismissed": [{"attribute": r["attribute"], "value": r["value"],
                               "evidence": r["evidence"], "updated_at": r["updated_at"]}
                              for r in rows if r["source"] == "dismissed"],
                "purchase_rules": mem.rules,
                "excluded_products": mem.excluded,
                "nudges": [{"attribute": b.attribute, "value": b.value, "reason": b.reason}
                            for b in mem.boosts],
                "recipients": store.recipients(shopper_id),
                "catalog": cat.name}

    def _preferences(self, shopper_id: str, cat: Catalog, store: Store,
                     events: list[dict[str, Any]]
                     ) -> tuple[list[prefs.Preference], list[prefs.Preference],
                                list[prefs.Preference], list[dict[str, Any]]]:
        """Stated, inferred (less what the shopper dismissed) and effective preferences, and
        the stored preference rows they came from."""
        rows = store.stated_preferences(shopper_id)
        stated = prefs.stated(rows)
        dismissed = {(r["attribute"], r["value"]) for r in rows if r["source"] == "dismissed"}
        inferred = [p for p in prefs.infer(events, cat,
                                           half_life_days=self.settings.half_life_days,
                                           read_query=self.query_reader(cat.name))
                    if (p.attribute, p.value) not in dismissed]
        return stated, inferred, prefs.effective(stated, inferred), rows

    # One-shot search -----------------------------------------------------------------------
    def search(self, q: str, *, shopper_id: str | None = None, k: int = 10,
               catalog: str | None = None, product_id: str | None = None
               ) -> list[dict[str, Any]]:
        """Ranked picks for a query, personalised when a shopper is named. With
        ``product_id`` ("similar to this product", ``q`` may then be empty) the picks are
        like that product and never it. Raises InvalidInput, ProductNotFound."""
        tools = self.tools(catalog)
        cat = tools.catalog
        if not q.strip() and product_id is None:
            raise InvalidInput("q is empty")
        row = None
        if product_id is not None:
            row = cat.row_of.get(product_id)
            if row is None:
                raise ProductNotFound(f"there is no product {product_id!r} in catalog "
                                      f"{cat.name!r}")
        u = understand(q, tools.lexicon) if q.strip() else Understanding()
        conv = Conversation("search", "web", cat.name, shopper_id=shopper_id)
        conv.ctx = _fresh_ctx()
        self._fold(conv.ctx, u, None)
        if product_id is not None:
            conv.ctx["looking_at"] = product_id
        store = self.store()
        c = self.constraints(conv, cat, store)
        mask = hard_mask(cat, c)
        text = _query_text(conv.ctx) or q.strip()
        qvec = self.embedder.embed([text])[0] if text else None
        if row is not None:
            near = np.asarray(cat.index.vectors[row], dtype=np.float32)
            qvec = near if qvec is None else (qvec + near) / max(
                float(np.linalg.norm(qvec + near)), 1e-6)
        ranked = candidates(cat, mask, qvec, c)
        picks = rank(cat, ranked, c, k=k, query_words=q, said=q)
        return [pick_json(cat, p) for p in picks]

    # Hand-off to a person (the web layer chooses the code) --------------------------------
    def ask_for_person(self, conversation_id: str, code: str) -> dict[str, Any]:
        """Move the conversation to ``handoff`` and keep ``code``, which an agent enters to
        continue it. Returns the Turn. Raises ConversationNotFound, ConversationClosed."""
        with self._lock(conversation_id):
            store = self.store()
            conv = store.load_conversation(conversation_id)
            if conv.state == "done":
                raise ConversationClosed("this conversation is finished; start a new one")
            expected = conv.version
            conv.trigger("ask_for_person")
            tools = self.tools(conv.catalog)
            turn: dict[str, Any] = {"state": conv.state, "message": "", "question": None,
                                    "picks": [], "preferences": []}
            turn["message"] = compose_message(tools.catalog, conv.state, conv.ctx, turn,
                                              "ask_for_person")
            seq = int(conv.ctx.get("seq", -1)) + 1
            conv.ctx["seq"] = seq
            conv.version = expected + 1
            with store.transaction():
                store.save_turn(conv, expected, seq, {"action": "ask_for_person"}, turn)
                store.set_handoff_code(conv.conversation_id, code)
            return turn


def _fresh_ctx(seq: int = -1) -> dict[str, Any]:
    return {"wants": {}, "avoids": {}, "avoid_terms": [], "texts": [], "asked": [],
            "skipped": [], "question": None, "facts": False, "shown": [], "seq": seq}


def _settle(ctx: dict[str, Any], attr: str, *, skipped: bool = False) -> None:
    if skipped and attr not in ctx.setdefault("skipped", []):
        ctx["skipped"].append(attr)
    if attr not in ctx.setdefault("asked", []):
        ctx["asked"].append(attr)
    if skipped:
        ctx["facts"] = True


#: A chosen value ("Tshirts", "Blue") weighs half as much as a text the shopper typed in the
#: query vector (see Assistant._query_vector).
VALUE_WEIGHT = 0.5


def _said_anything_known(ctx: dict[str, Any]) -> bool:
    """Did the shopper say anything the assistant recognised (beyond words to search by)?"""
    return bool(ctx.get("wants") or any(ctx.get("avoids", {}).values())
                or ctx.get("avoid_terms") or ctx.get("max_price") is not None
                or ctx.get("min_price") is not None or ctx.get("recipient"))


def _query_text(ctx: dict[str, Any]) -> str:
    """What to embed: the shopper's own words plus the values they chose."""
    parts = list(ctx.get("texts", []))[-4:]
    for values in ctx.get("wants", {}).values():
        parts.extend(values)
    return " ".join(parts).strip()


def _loggable(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: payload[k] for k in ("text", "answer", "action", "feedback") if k in payload}

