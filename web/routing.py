"""URL matching without garbage cycles.

werkzeug's ``StateMachineMatcher.match`` walks its state machine with a nested function that
calls itself, so every request leaves one reference cycle (the function, its cell and four
more cells: 8 objects) that only the cyclic garbage collector can free. In a worker those
cycles were all of its cyclic garbage, and they set how often the collector ran: a young
collection every 2,000-2,500 requests, each a stop of the whole worker for 17-35 ms in
process and 20-75 ms under load (its 20,000 objects are scattered over a heap of 270 MB).
At 250 requests/s a worker stopped every 8-10 s, long enough to put the turns that arrived
meanwhile and the backlog after it into the slowest one per cent.

``AcyclicMatcher`` is the same walk written as a method with its state in arguments (the
algorithm is werkzeug 3.1's, BSD-3-Clause, Copyright 2007 Pallets); what it returns and raises
is the same, which tests/test_routing.py checks against werkzeug's own matcher for every
route of the app.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from werkzeug.routing import Map, Rule
from werkzeug.routing.converters import ValidationError
from werkzeug.routing.exceptions import NoMatch, RequestAliasRedirect, RequestPath
from werkzeug.routing.matcher import SlashRequired, State, StateMachineMatcher

__all__ = ["AcyclicMatcher", "ShopperFlask"]


class _Seen:
    """What a failed match learnt: the methods that would have matched, and whether a rule
    matched but for websocket."""

    __slots__ = ("methods", "websocket_mismatch")

    def __init__(self) -> None:
        self.methods: set[str] = set()
        self.websocket_mismatch = False


class AcyclicMatcher(StateMachineMatcher):
    """werkzeug's matcher, matching without a self-referencing closure."""

    def match(self, domain: str, path: str, method: str, websocket: bool
              ) -> tuple[Rule, dict[str, Any]]:
        seen = _Seen()
        try:
            rv = self._walk(self._root, [domain, *path.split("/")], [], method, websocket, seen)
        except SlashRequired:
            raise RequestPath(f"{path}/") from None
        if self.merge_slashes and rv is None:
            # Try to match again, but with slashes merged
            path = re.sub("/{2,}", "/", path)
            try:
                rv = self._walk(self._root, [domain, *path.split("/")], [], method, websocket,
                                seen)
            except SlashRequired:
                raise RequestPath(f"{path}/") from None
            if rv is None or rv[0].merge_slashes is False:
                raise NoMatch(seen.methods, seen.websocket_mismatch)
            raise RequestPath(f"{path}")
        if rv is not None:
            rule, values = rv
            result = {}
            for name, value in zip(rule._converters.keys(), values, strict=False):
                try:
                    value = rule._converters[name].to_python(value)
                except ValidationError as e:
                    raise NoMatch(seen.methods, seen.websocket_mismatch) from e
                result[str(name)] = value
            if rule.defaults:
                result.update(rule.defaults)
            if rule.alias and rule.map.redirect_defaults:
                raise RequestAliasRedirect(result, rule.endpoint)
            return rule, result
        raise NoMatch(seen.methods, seen.websocket_mismatch)

    def _walk(self, state: State, parts: list[str], values: list[str], method: str,
              websocket: bool, seen: _Seen) -> tuple[Rule, list[str]] | None:
        """Match the head of ``parts`` to ``state``'s transitions, recursively."""
        # All parts matched: a rule here whose methods and websocket fit is the match.
        if parts == []:
            for rule in state.rules:
                if _fits(rule, method, websocket, seen):
                    return rule, values
            # A match with a trailing slash added: report that it needs the slash.
            if "" in state.static:
                for rule in state.static[""].rules:
                    if websocket == rule.websocket and (
                            rule.methods is None or method in rule.methods):
                        if rule.strict_slashes:
                            raise SlashRequired()
                        return rule, values
            return None
        part = parts[0]
        # Static transitions first, then the dynamic ones.
        if part in state.static:
            rv = self._walk(state.static[part], parts[1:], values, method, websocket, seen)
            if rv is not None:
                return rv
        for test_part, new_state in state.dynamic:
            target = part
            remaining = parts[1:]
            # A final part consumes the remaining parts.
            if test_part.final:
                target = "/".join(parts)
                remaining = []
            match = re.compile(test_part.content).match(target)
            if match is not None:
                if test_part.suffixed:
                    # A part_isolating=False part with a slash suffix: drop the suffix and
                    # check for the slash redirect next.
                    suffix = match.groups()[-1]
                    if suffix == "/":
                        remaining = [""]
                converter_groups = sorted(
                    (item for item in match.groupdict().items()
                     if item[0].startswith("__werkzeug_")),
                    key=lambda item: int(item[0][11:]))
                groups = [item[1] for item in converter_groups]
                rv = self._walk(new_state, remaining, values + groups, method, websocket, seen)
                if rv is not None:
                    return rv
        # Nothing matched and only a trailing slash is left: rules without strict slashes.
        if parts == [""]:
            for rule in state.rules:
                if not rule.strict_slashes and _fits(rule, method, websocket, seen):
                    return rule, values
        return None


def _fits(rule: Rule, method: str, websocket: bool, seen: _Seen) -> bool:
    """Whether ``rule`` takes this method and websocket; if not, ``seen`` notes why."""
    if rule.methods is not None and method not in rule.methods:
        seen.methods.update(rule.methods)
    elif rule.websocket != websocket:
        seen.websocket_mismatch = True
    else:
        return True
    return False


class _AcyclicMap(Map):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        matcher = AcyclicMatcher(self.merge_slashes)
        for rule in self.iter_rules():  # any given to the constructor
            matcher.add(rule)
        self._matcher = matcher
        self._remap = True


class ShopperFlask(Flask):
    """Flask with URLs matched by AcyclicMatcher."""

    url_map_class = _AcyclicMap
