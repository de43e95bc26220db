"""Security headers on every response, set in one place: ``create_app`` calls ``install``.

Every response gets ``X-Content-Type-Options: nosniff``, a ``Referrer-Policy``, a
``Content-Security-Policy`` and ``X-Frame-Options: DENY`` (no page of ours is meant to be
framed: the widget lives in a shadow root on the shop's page, not in a frame). HTML pages get
``PAGE_CSP``: scripts, styles and connections from our own origin only, so no inline script,
inline style or event-handler attribute runs. Everything else (JSON, SVG, scripts and
stylesheets) gets ``RESOURCE_CSP``, which lets the document itself load nothing. ``SURFACES``
adds what a surface needs on top; a header a view sets itself is kept.
"""

from __future__ import annotations

from functools import cache

from flask import Flask, Response, request

__all__ = ["BASE_HEADERS", "PAGE_CSP", "RESOURCE_CSP", "SURFACES", "install"]

#: The pages run no inline script or style and talk only to their own origin.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: A response that is not a page loads nothing and is framed nowhere.
RESOURCE_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

#: Per surface (first matching path prefix): headers on top of BASE_HEADERS.
SURFACES: tuple[tuple[str, dict[str, str]], ...] = (
    # Tokens, shopper data: never cached, never sent on as a referrer.
    ("/api/", {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}),
    ("/healthz", {"Cache-Control": "no-store"}),
    # The signed link is the secret: keep it out of Referer headers and caches.
    ("/p/", {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}),
    # The console shows shopper data and carries the CSRF token.
    ("/console", {"Cache-Control": "no-store"}),
)


def _surface(path: str) -> int:
    """The index in SURFACES of the first surface ``path`` belongs to; -1 for none."""
    for i, (prefix, _) in enumerate(SURFACES):
        if path == prefix.rstrip("/") or path.startswith(prefix):
            return i
    return -1


@cache
def _headers_for(surface: int, is_page: bool) -> tuple[tuple[str, str, str], ...]:
    """(lower-case name, name, value) of every header of a surface's pages or resources."""
    headers = {**BASE_HEADERS,
               "Content-Security-Policy": PAGE_CSP if is_page else RESOURCE_CSP}
    if surface >= 0:
        headers.update(SURFACES[surface][1])
    return tuple((name.lower(), name, value) for name, value in headers.items())


def install(app: Flask) -> None:
    """Add the headers to every response of ``app`` (pages, API, static files, errors)."""

    @app.after_request
    def _security_headers(response: Response) -> Response:
        # One pass over the headers a view set (setdefault per header scanned them for each
        # of the five: 20 us of a turn's request).
        present = {name.lower() for name in response.headers.keys()}
        response.headers.extend([
            (name, value) for key, name, value
            in _headers_for(_surface(request.path), response.mimetype == "text/html")
            if key not in present])
        return response
