"""URL matching (web/routing.py): the same answers as werkzeug's matcher, and no garbage."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.routing.matcher import StateMachineMatcher

from web.routing import AcyclicMatcher

PATHS = [
    "/", "/kiosk", "/kiosk/", "/demo", "/healthz", "/healthz/", "//healthz", "/api/v1//healthz",
    "/api/v1/conversations", "/api/v1/conversations/", "/api/v1/conversations/c_1",
    "/api/v1/conversations/c_1/turns", "/api/v1/conversations/c_1/turns/",
    "/api/v1/conversations//turns", "/api/v1/conversations/c_1//turns",
    "/api/v1/shoppers/s-1/profile", "/api/v1/shoppers/s-1/recipients/mum",
    "/api/v1/shoppers/s-1/recipients/", "/api/v1/shoppers", "/api/v1/openapi.json",
    "/static/widget.js", "/static/a/b/c.css", "/static", "/console", "/console/login",
    "/nowhere", "/api/v1/nowhere/at/all", "/%E2%9C%93", "/api/v1/conversations/é/turns",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]


def _outcome(adapter: Any, path: str, method: str) -> tuple[Any, ...]:
    try:
        rule, values = adapter.match(path, method, return_rule=True)
        return ("match", rule.rule, rule.endpoint, values)
    except RequestRedirect as exc:
        return ("redirect", exc.new_url)
    except HTTPException as exc:
        return (type(exc).__name__, exc.code, sorted(getattr(exc, "valid_methods", None) or []))


def test_every_route_matches_as_werkzeug_matches_it(app: Any) -> None:
    """Each path and method of the app gets the same rule, values, redirect or error from
    the acyclic matcher as from werkzeug's own (which the app no longer uses)."""
    ours = app.url_map
    assert isinstance(ours._matcher, AcyclicMatcher)
    theirs = StateMachineMatcher(ours.merge_slashes)
    for rule in ours.iter_rules():
        theirs.add(rule)
    theirs.update()
    ours.update()
    adapter = ours.bind("localhost")
    checked = 0
    for path in PATHS:
        for method in METHODS:
            got = _outcome(adapter, path, method)
            ours._matcher, kept = theirs, ours._matcher
            try:
                want = _outcome(adapter, path, method)
            finally:
                ours._matcher = kept
            assert got == want, (path, method)
            checked += 1
    assert checked == len(PATHS) * len(METHODS)


@pytest.mark.parametrize("path", ["/api/v1/conversations/c_1/turns", "/nowhere", "/healthz/"])
def test_matching_a_url_leaves_no_garbage_cycle(app: Any, path: str) -> None:
    """werkzeug's matcher left a reference cycle on every request, which made the cyclic
    collector stop the worker every 2,000 requests or so; this one leaves none."""
    adapter = app.url_map.bind("localhost")
    adapter.match("/healthz", "GET")  # the map's one-time set-up leaves one of its own
    gc.collect()
    gc.disable()
    try:
        for _ in range(200):
            try:
                adapter.match(path, "POST")
            except (HTTPException, RequestRedirect):
                pass
        assert gc.collect() == 0
    finally:
        gc.enable()
