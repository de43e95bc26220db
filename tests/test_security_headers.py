"""Security headers on every response (web/security.py): every GET route of the url_map, the
error pages and the API's answers; and pages whose markup needs no 'unsafe-inline'."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.conftest import SERVER, World, login, routes, rule_url

WEB = Path(__file__).parent.parent / "web"


def _directives(csp: str) -> dict[str, list[str]]:
    out = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def check_headers(r: Any, what: str) -> None:
    h = r.headers
    assert h.get("X-Content-Type-Options") == "nosniff", what
    assert h.get("Referrer-Policy") in ("same-origin", "no-referrer", "strict-origin"), what
    assert h.get("X-Frame-Options") == "DENY", what
    csp = _directives(h.get("Content-Security-Policy", ""))
    assert csp.get("frame-ancestors") == ["'none'"], (what, csp)
    for directive, sources in csp.items():
        assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources, what
        assert "*" not in sources, what
        assert "data:" not in sources or directive == "img-src", what
    if r.mimetype == "text/html":
        # Pages: scripts and styles from our own origin only; no plugins, no <base>.
        assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"], what
        assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"], what
        assert csp["default-src"] == ["'self'"], what
    else:
        assert csp["default-src"] == ["'none'"], (what, csp)


def test_every_get_route_sends_the_headers(app: Any, world: World, agents: Any) -> None:
    seen = 0
    agent = app.test_client()
    login(agent, "carol")
    for rule, method in routes(app):
        if method != "GET":
            continue
        url = rule_url(rule, world.paths)
        for client, headers in ((app.test_client(), SERVER), (app.test_client(), {}),
                                (agent, {})):
            r = client.get(url, headers=headers)
            check_headers(r, f"GET {url} -> {r.status_code}")
            seen += 1
    assert seen >= 3 * 18  # every GET route, three ways
    # Secrets in the answer or the address: never cached, never sent on as a referrer.
    for url, headers in (("/api/v1/shoppers/s-1/profile", SERVER),
                         (f"/p/{world.share_token}", {})):
        r = app.test_client().get(url, headers=headers)
        assert r.headers["Cache-Control"] == "no-store" and \
            r.headers["Referrer-Policy"] == "no-referrer", url
    assert agent.get("/console").headers["Cache-Control"] == "no-store"


def test_errors_and_other_methods_send_the_headers(app: Any, client: Any, world: World) -> None:
    cases = [client.get("/no/such/page"), client.get("/api/v1/no/such/thing"),
             client.delete("/api/v1/conversations"), client.get("/static/../web/api.py"),
             client.post("/api/v1/conversations", data=b"{", content_type="application/json"),
             client.post("/api/v1/conversations", data=b"x" * (70 * 1024),
                         content_type="application/json"),
             client.post("/console/login", data={"name": "x"}),
             client.post("/api/v1/conversations", json={"text": "sneakers"}),
             client.get(f"/p/{world.share_token}/qr.svg"), client.get("/p/expired"),
             client.get("/healthz")]
    for r in cases:
        check_headers(r, f"{r.request.method} {r.request.path} -> {r.status_code}")
    assert {r.status_code for r in cases} >= {201, 400, 404, 405, 410, 413}


def test_templates_run_no_inline_script_or_style() -> None:
    """Every <script> of every template has a src and no body; no event-handler, style or
    javascript: attribute anywhere; no <style> element."""
    templates = list((WEB / "templates").rglob("*.html"))
    assert len(templates) >= 6
    for path in templates:
        html = path.read_text()
        for m in re.finditer(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S | re.I):
            assert "src=" in m.group(1) and not m.group(2).strip(), path
        assert html.lower().count("<script") == len(re.findall(r"</script>", html, re.I))
        assert not re.search(r"\son[a-z]+\s*=", html, re.I), path
        assert not re.search(r"\sstyle\s*=", html, re.I), path
        assert "<style" not in html.lower() and "javascript:" not in html.lower(), path


def test_the_widget_needs_nothing_inline() -> None:
    """The widget (one tag on a shop's page, and /demo under our own CSP) builds its panel
    with DOM calls and loads its styles as stylesheets from beside itself."""
    code = (WEB / "static" / "widget.js").read_text()
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", code, flags=re.S)
    for needs_inline in ('createElement("style")', "createElement('style')",
                         'setAttribute("style"', "setAttribute('style'", ".innerHTML",
                         "javascript:", "eval(", "new Function", "setAttribute(\"on"):
        assert needs_inline not in code, needs_inline
    assert 'link.rel = "stylesheet"' in code
