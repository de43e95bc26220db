"""The shopper-facing chat page at ``/``.

The page is static HTML plus ``static/chat.js``; everything it shows comes from the public
HTTP API (``/api/v1``) through ``fetch()``, so it needs no collaborators from the app. Its
security headers (a strict Content-Security-Policy among them) come from web/security.py.
"""

from __future__ import annotations

from flask import Blueprint, Response, make_response, render_template

__all__ = ["bp"]

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> Response:
    """Render the chat page.

    Returns the HTML response; raises nothing.
    """
    return make_response(render_template("chat/index.html"))
