"""The dialogue as data: states, transitions, and the Conversation model they drive.

Conditions are short methods reading the conversation's own fields; retrieval and ranking
happen before the trigger, in plain functions (questions.py, ranking.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from transitions import Machine, MachineError

__all__ = ["STATES", "TRANSITIONS", "Conversation", "MachineError", "attach"]

STATES = ("greeting", "asking", "recommending", "refining", "handoff", "done")
_OPEN = ["greeting", "asking", "recommending", "refining", "handoff"]

TRANSITIONS: tuple[dict[str, Any], ...] = (
    # The shopper says something (typed, relayed by an agent, or a tapped option).
    {"trigger": "hear", "source": _OPEN, "dest": "greeting", "conditions": "knows_nothing"},
    {"trigger": "hear", "source": ["greeting", "asking", "handoff"], "dest": "asking",
     "conditions": "has_question"},
    {"trigger": "hear", "source": ["greeting", "asking", "handoff"], "dest": "recommending"},
    {"trigger": "hear", "source": ["recommending", "refining"], "dest": "asking",
     "conditions": "has_question"},
    {"trigger": "hear", "source": ["recommending", "refining"], "dest": "refining"},
    # "More": other picks for the same need; also "just show me" while being asked.
    {"trigger": "more", "source": _OPEN, "dest": "greeting", "conditions": "knows_nothing"},
    {"trigger": "more", "source": _OPEN, "dest": "recommending"},
    # "Cheaper": picks below the cheapest shown so far.
    {"trigger": "cheaper", "source": _OPEN, "dest": "greeting", "conditions": "knows_nothing"},
    {"trigger": "cheaper", "source": _OPEN, "dest": "refining"},
    # Feedback on a pick changes the ranking but not where the dialogue stands.
    {"trigger": "feedback", "source": _OPEN, "dest": None},
    # A person is asked for: the conversation waits for an agent, who continues it.
    {"trigger": "ask_for_person", "source": _OPEN, "dest": "handoff"},
    {"trigger": "start_over", "source": [*_OPEN, "done"], "dest": "greeting"},
    {"trigger": "finish", "source": _OPEN, "dest": "done"},
)


@dataclass
class Conversation:
    """One conversation; ``ctx`` holds everything understood so far (JSON in SQLite)."""

    conversation_id: str
    channel: str
    catalog: str
    shopper_id: str | None = None
    store_id: str | None = None
    state: str = "greeting"
    version: int = 0
    created_at: str = ""
    agent_id: str | None = None
    ctx: dict[str, Any] = field(default_factory=dict)

    def trigger(self, event: str) -> bool:  # replaced by transitions (model_override)
        raise MachineError(f"no machine attached to {self.conversation_id}")

    def knows_nothing(self) -> bool:
        return not self.ctx.get("facts")

    def has_question(self) -> bool:
        return self.ctx.get("question") is not None


# With model_override, transitions binds only the declared ``trigger`` stub and logs a
# warning for every other convenience method it skips, on every attach: keep that quiet.
logging.getLogger("transitions.core").setLevel(logging.ERROR)


def attach(conv: Conversation) -> Machine:
    """Bind the dialogue machine to a conversation at its saved state."""
    return Machine(model=conv, states=list(STATES), transitions=list(TRANSITIONS),
                   initial=conv.state, auto_transitions=False, model_override=True,
                   send_event=False, ignore_invalid_triggers=False)
