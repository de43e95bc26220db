"""The dialogue as data: states, transitions, and the Conversation model they drive.

Conditions are short methods reading the conversation's own fields; retrieval and ranking
happen before the trigger, in plain functions (questions.py, ranking.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from transitions import Machine, MachineError

__all__ = ["MACHINE", "STATES", "TRANSITIONS", "Conversation", "MachineError"]

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
    """One conversation; ``ctx`` holds everything understood so far (JSON in SQLite).
    ``looking_at`` is the product the shopper was looking at when it started (never a pick).
    """

    conversation_id: str
    channel: str
    catalog: str
    shopper_id: str | None = None
    store_id: str | None = None
    state: str = "greeting"
    version: int = 0
    created_at: str = ""
    agent_id: str | None = None
    looking_at: str | None = None
    ctx: dict[str, Any] = field(default_factory=dict)

    def trigger(self, event: str) -> bool:
        """Fire ``event`` on the dialogue machine from the conversation's saved state.
        Raises MachineError when the event is not possible from there."""
        try:
            transitions = MACHINE.events[event]
        except KeyError:
            raise MachineError(f"there is no event {event!r}") from None
        return bool(transitions.trigger(self))

    def knows_nothing(self) -> bool:
        return not self.ctx.get("facts")

    def has_question(self) -> bool:
        return self.ctx.get("question") is not None


# transitions logs every executed transition at INFO: a formatted log record per turn,
# about a tenth of a turn's Python time. Warnings and errors still come through.
logging.getLogger("transitions").setLevel(logging.WARNING)

#: The one dialogue machine of the process. It holds no model: a conversation is loaded
#: from SQLite for each turn and the event is fired against it (``Event.trigger(model)``
#: reads and writes only the model's own ``state``), so nothing is built per turn and
#: nothing about a conversation stays in the machine between turns.
MACHINE = Machine(model=None, states=list(STATES), transitions=list(TRANSITIONS),
                  initial="greeting", auto_transitions=False, send_event=False,
                  ignore_invalid_triggers=False)
