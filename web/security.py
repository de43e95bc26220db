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


def _headers_for(path: str, mimetype: str | None) -> dict[str, str]:
    csp = PAGE_CSP if mimetype == "text/html" else RESOURCE_CSP
    headers = {**BASE_HEADERS, "Content-Security-Policy": csp}
    for prefix, extra in SURFACES:
        if path == prefix.rstrip("/") or path.startswith(prefix):
            headers.update(extra)
            break
    return headers


def install(app: Flask) -> None:
    """Add the headers to every response of ``app`` (pages, API, static files, errors)."""

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in _headers_for(request.path, response.mimetype).items():
            response.headers.setdefault(name, value)
        return response
