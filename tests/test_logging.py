"""An unexpected error's log line keeps its type and stack but not its message, which may
quote what the shopper typed, unless SHOPPER_LOG_TEXT=1 (LOG_TEXT) says so."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from assistant.engine import Assistant
from web.cli import ACCESS_LOG_FORMAT, ACCESS_LOG_FORMAT_WITH_TEXT, log_text


@pytest.mark.parametrize("log_text_on", [False, True])
def test_unexpected_errors_do_not_log_what_was_typed(
        client: Any, app: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, log_text_on: bool) -> None:
    def broken(self: Assistant, q: str, **kwargs: Any) -> Any:
        raise ValueError(f"cannot read {q!r}")

    monkeypatch.setattr(Assistant, "search", broken)  # a bug that quotes its input
    app.config["LOG_TEXT"] = log_text_on
    with caplog.at_level(logging.ERROR, logger="shopper.api"):
        r = client.get("/api/v1/search?q=Axolotlamber+boots")
    assert r.status_code == 500 and "Axolotlamber" not in r.get_data(as_text=True)
    assert "unexpected error on GET /api/v1/search" in caplog.text
    assert "ValueError" in caplog.text and "in broken" in caplog.text  # type and stack
    assert ("Axolotlamber" in caplog.text) is log_text_on


def test_the_access_log_drops_query_strings_unless_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for atom in ("%(query_string)s", "%(header{referer})s"):  # what was typed, the page
        assert atom not in ACCESS_LOG_FORMAT and atom in ACCESS_LOG_FORMAT_WITH_TEXT
    assert "%(path)s" in ACCESS_LOG_FORMAT
    monkeypatch.delenv("SHOPPER_LOG_TEXT", raising=False)
    assert log_text() is False
    monkeypatch.setenv("SHOPPER_LOG_TEXT", "1")
    assert log_text() is True
