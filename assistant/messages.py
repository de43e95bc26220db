"""What the assistant says: plain sentences, fit to be read aloud by a phone agent."""

from __future__ import annotations

from typing import Any

from catalog.catalog import Catalog

from .questions import label_for

__all__ = ["compose_message", "describe_need"]

GREETING = ("Hi! What are you shopping for today? Tell me in your own words, for example "
            "“running shoes for my husband” or “a blue t-shirt under 800”.")
_ORDER = ("gender", "colour", "usage", "article_type", "sub_category", "master_category",
          "brand", "season")


def describe_need(ctx: dict[str, Any]) -> str:
    """'men's sports shoes in navy blue, not black' from the conversation's facts."""
    wants: dict[str, list[str]] = ctx.get("wants", {})
    words: list[str] = []
    gender = wants.get("gender")
    if gender:
        g = " or ".join(label_for(v).lower() for v in gender)
        words.append(g + ("'s" if not g.endswith("s") else "'"))
    kind = wants.get("article_type") or wants.get("sub_category") or wants.get("master_category")
    kind_text = " or ".join(label_for(v).lower() for v in kind) if kind else "picks"
    usage = [v.lower() for v in wants.get("usage", []) if v.lower() not in kind_text]
    if usage:
        words.append(" or ".join(usage))
    words.append(kind_text)
    text = " ".join(words)
    if wants.get("colour"):
        text += " in " + " or ".join(label_for(v).lower() for v in wants["colour"])
    if wants.get("brand"):
        text += " by " + " or ".join(wants["brand"])
    avoided = [label_for(v).lower() for vals in ctx.get("avoids", {}).values() for v in vals]
    avoided += list(ctx.get("avoid_terms", []))
    if avoided:
        text += ", no " + " or ".join(avoided)
    if ctx.get("max_price") is not None:
        text += f", up to {ctx['max_price']:,.0f}"
    if ctx.get("recipient"):
        text += f", for your {ctx['recipient']}"
    return text


def compose_message(cat: Catalog, state: str, ctx: dict[str, Any], turn: dict[str, Any],
                    event: str | None) -> str:
    """The assistant's words for this turn, from where the dialogue stands."""
    # What a typed reference to a pick asked for ("more like the second one"): said once.
    similar_to = ctx.pop("similar_to", None)
    ref_missing = ctx.pop("ref_missing", 0)
    prices_missing = ctx.pop("prices_missing", False)
    chosen = ctx.pop("chosen", None)
    if state == "greeting":
        if event == "start_over":
            return "Let's start again. " + GREETING
        if event in ("more", "cheaper"):
            return "Tell me first what you are looking for, and I'll find picks. " + GREETING
        return GREETING
    if state == "done":
        return "Thanks for shopping with us. Come back any time."
    if state == "handoff":
        return "A person from our team will continue this conversation with you."
    picks = turn.get("picks") or []
    question = turn.get("question")
    need = describe_need(ctx)
    if not picks:
        if event == "cheaper" and ctx.get("notice") == "no_prices":
            ctx.pop("notice", None)
            return "This catalog has no prices, so I can't look for cheaper ones."
        if event == "cheaper":
            return (f"There is nothing cheaper than what I showed that still fits ({need}). "
                    "Those were the least expensive.")
        if event == "more":
            return f"That's everything I have for {need}. Try changing something."
        return (f"I couldn't find anything for {need}. Try removing something, for example "
                "the colour or the budget, or say “start over”.")
    unsure = ctx.get("notice") == "unsure"
    if unsure:
        ctx.pop("notice")
    lead = {
        "cheaper": f"Here are cheaper {need}.",
        "more": f"Here are more {need}.",
        "feedback": "Thanks, noted. Here's what fits now.",
    }.get(event or "", f"Here are some {need}.")
    liked = cat.product(similar_to) if similar_to else None
    if liked is not None:
        lead = f"Here are more like the {liked.title}."
    taken = cat.product(chosen) if chosen else None
    if taken is not None:
        return (f"Good choice: the {taken.title}. You can add it to your cart from its card, "
                "or tell me what else you'd like.")
    if ref_missing:
        lead = (f"I'm not sure which pick you mean (I showed {ref_missing}; say “the first "
                f"one” up to “the last one”). {lead}")
    if prices_missing:
        lead += " This catalog has no prices, so I can't look for cheaper ones."
    if unsure:
        # Nothing in the words was recognised and no product is close to them: say so
        # rather than present guesses as answers (another language, a greeting, a typo).
        text = ("I'm not sure I understood what you are looking for, so these are only "
                "guesses. Tell me the kind of thing you want, for example shoes, a watch or "
                "a dress, and who it's for; I understand English best.")
        return f"{text} Or answer this: {question['prompt']}" if question else text
    if not cat.has_prices and (ctx.get("max_price") is not None
                               or ctx.get("min_price") is not None):
        lead += " This catalog lists no prices, so I could not keep to your budget."
    if question:
        return f"{lead} To narrow it down: {question['prompt']}"
    return f"{lead} Say “more” for others or “cheaper” for lower prices."
