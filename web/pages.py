"""The shopper-facing chat page at ``/``.

The page is static HTML plus ``static/chat.js``; everything it shows comes from the public
HTTP API (``/api/v1``) through ``fetch()``, so it needs no collaborators from the app.
"""

from __future__ import annotations

from flask import Blueprint, Response, make_response, render_template

__all__ = ["CONTENT_SECURITY_POLICY", "bp"]

bp = Blueprint("pages", __name__)

#: The page runs no inline script or style and talks only to its own origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@bp.get("/")
def index() -> Response:
    """Render the chat page.

    Returns the HTML response with a strict Content-Security-Policy; raises nothing.
    """
    response = make_response(render_template("chat/index.html"))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
