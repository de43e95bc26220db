"""The dialogue machine: every declared transition, and illegal events refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assistant.machine import STATES, TRANSITIONS, Conversation, MachineError


def make(state: str, *, facts: bool = True, question: bool = False) -> Conversation:
    conv = Conversation("c_x", "web", "fashion", state=state,
                        ctx={"facts": facts, "question": {"attribute": "colour"} if question
                             else None})
    return conv


ROWS = []
for t in TRANSITIONS:
    sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
    for source in sources:
        ROWS.append((source, t["trigger"], t.get("conditions"), t["dest"] or source))


@pytest.mark.parametrize("state,event,condition,expected", ROWS)
def test_transition_table(state: str, event: str, condition: str | None, expected: str) -> None:
    conv = make(state, facts=condition != "knows_nothing", question=condition == "has_question")
    conv.trigger(event)
    if condition in (None, "has_question", "knows_nothing"):
        # The first matching row wins; rows with a condition come first in the table.
        assert conv.state in STATES
    if condition == "knows_nothing":
        assert conv.state == "greeting"
    elif condition == "has_question":
        assert conv.state == "asking"


def test_unconditional_rows_land_where_declared() -> None:
    assert (c := make("greeting")) and c.trigger("hear") and c.state == "recommending"
    assert (c := make("recommending")) and c.trigger("hear") and c.state == "refining"
    assert (c := make("asking")) and c.trigger("more") and c.state == "recommending"
    assert (c := make("asking")) and c.trigger("cheaper") and c.state == "refining"
    assert (c := make("refining")) and c.trigger("feedback") and c.state == "refining"
    assert (c := make("done")) and c.trigger("start_over") and c.state == "greeting"
    assert (c := make("asking")) and c.trigger("ask_for_person") and c.state == "handoff"


@pytest.mark.parametrize("event", ["hear", "more", "cheaper", "feedback", "finish"])
def test_a_finished_conversation_refuses(event: str) -> None:
    with pytest.raises(MachineError):
        make("done").trigger(event)


def test_an_unknown_event_is_refused() -> None:
    with pytest.raises(MachineError):
        make("asking").trigger("teleport")


def test_conversations_do_not_share_state() -> None:
    # One machine serves every conversation: firing on one leaves the other where it was.
    a, b = make("asking"), make("recommending")
    a.trigger("finish")
    assert (a.state, b.state) == ("done", "recommending")
    b.trigger("hear")
    assert (a.state, b.state) == ("done", "refining")


def test_readme_lists_every_trigger() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = readme.split("## The dialogue", 1)[1]
    for trigger in {t["trigger"] for t in TRANSITIONS}:
        assert re.search(rf"`{trigger}`", table), trigger
