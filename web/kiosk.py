"""The in-store kiosk at ``/kiosk?store_id=...``: full screen, touch only, forgets shoppers.

Query parameters: ``store_id`` (the store it stands in: picks say whether they are in stock
here), ``idle`` (seconds without a touch before it asks "Still there?", default 90),
``still_there`` (seconds that question waits before wiping, default 20) and ``catalog``.
Everything else happens in ``static/kiosk.js`` through the public API.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, make_response, render_template, request

__all__ = ["bp"]

bp = Blueprint("kiosk", __name__)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+\-]{0,127}$")
_SECONDS = re.compile(r"^[0-9]{1,6}$")  # ASCII digits only: str.isdigit() also takes '²'


def _seconds(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name, "")
    return min(max(int(value), low), high) if _SECONDS.match(value) else default


@bp.get("/kiosk")
def kiosk() -> Response:
    """The kiosk page; an invalid store_id is ignored (no stock shown) rather than trusted."""
    store_id = request.args.get("store_id", "")
    catalog = request.args.get("catalog", "")
    return make_response(render_template(
        "kiosk/index.html",
        store_id=store_id if _ID.match(store_id) else "",
        catalog=catalog if _ID.match(catalog) else "",
        idle=_seconds("idle", 90, 1, 3600),
        still_there=_seconds("still_there", 20, 1, 600)))
