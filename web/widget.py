"""The chat widget's demo shop page at ``/demo``.

The widget itself is ``static/widget.js``: one ``<script>`` tag on any page of the shop adds
a launcher button and a chat panel that talk to the public API. ``/demo`` is a stand-in shop
page carrying that tag (``?catalog=NAME`` and ``?timeout_ms=N`` fill its data attributes).
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, make_response, render_template, request

__all__ = ["bp"]

bp = Blueprint("widget", __name__)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_MS = re.compile(r"^[0-9]{1,6}$")  # ASCII digits only: str.isdigit() also takes '²'


@bp.get("/demo")
def demo() -> Response:
    """A demo shop page with the widget's script tag."""
    catalog = request.args.get("catalog", "")
    timeout = request.args.get("timeout_ms", "")
    return make_response(render_template(
        "widget/demo.html",
        catalog=catalog if _NAME.match(catalog) else "",
        timeout_ms=timeout if _MS.match(timeout) and 500 <= int(timeout) <= 120000 else ""))
