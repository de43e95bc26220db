"""The OpenAPI 3.1 document of the API (GET /api/v1/openapi.json).

It documents every route of web/api.py and web/handoff.py (tests/test_fuzz.py checks the
app's url_map against it and fuzzes the API from it), with the limits the API enforces:
free text is at most ``MAX_TEXT`` (2,000) characters, bodies at most MAX_CONTENT_LENGTH
(64 KiB by default; 413 past that),
and no string in a body may hold control characters other than tab, CR and LF (422).
"""

from __future__ import annotations

from typing import Any

from assistant.engine import MAX_TEXT

__all__ = ["openapi_document"]

_STR: dict[str, Any] = {"type": "string"}
_NULL: dict[str, Any] = {"type": "null"}
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:+\-]{0,127}$"
_ID: dict[str, Any] = {"type": "string", "pattern": _ID_PATTERN,
                       "description": "1-128 letters, digits or . _ @ : + -, starting with a "
                                      "letter or digit"}
_CONTROL = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"
_PROBLEM = {"description": "An RFC 9457 problem",
            "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}}}}
_RETRY = {"Retry-After": {"required": True, "schema": {"type": "string"},
                          "description": "seconds to wait before trying again"}}


def _text(max_length: int, *, words: bool = False, description: str = "") -> dict[str, Any]:
    """Free text: at most ``max_length`` characters, no control characters other than tab,
    CR and LF; with ``words``, not empty or blank either."""
    pattern = (f"^[^{_CONTROL}]*[^\\s{_CONTROL}][^{_CONTROL}]*$" if words
               else f"^[^{_CONTROL}]*$")
    out: dict[str, Any] = {"type": "string", "maxLength": max_length, "pattern": pattern}
    if words:
        out["minLength"] = 1
    if description:
        out["description"] = description
    return out


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field the API also takes as null, meaning "not given"."""
    return {"anyOf": [schema, _NULL]}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(ref: str, description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"application/json": {"schema": _ref(ref)}}}
    if description:
        out["description"] = description
    return out


def _body(ref: str) -> dict[str, Any]:
    return {"required": True, **_json(ref)}


def _errors(*codes: int) -> dict[str, Any]:
    """Problem responses; every operation may also answer 503 (starting up, storage)."""
    out: dict[str, Any] = {}
    for code in sorted({*codes, 503}):
        out[str(code)] = {**_PROBLEM, "headers": _RETRY} if code in (429, 503) else _PROBLEM
    return out


def _op(summary: str, ok: str, ok_response: dict[str, Any], errors: tuple[int, ...], *,
        security: list[dict[str, list[str]]] | None = None,
        parameters: list[dict[str, Any]] | None = None, body: str | None = None,
        description: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary,
                          "responses": {ok: ok_response, **_errors(*errors)}}
    if description:
        op["description"] = description
    if security is not None:
        op["security"] = security
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = _body(body)
        # Every body is read: too large, or not JSON at all.
        op["responses"].update(_errors(400, 413, 422, *errors))
    return op


def _schemas() -> dict[str, Any]:
    def arr(ref: str) -> dict[str, Any]:
        return {"type": "array", "items": _ref(ref)}

    turn_kinds = ("text", "answer", "action", "feedback")

    def only(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
        # Exactly one kind: the others absent or null.
        props = {k: (schema if k == kind else _NULL) for k in turn_kinds}
        return {"type": "object", "required": [kind], "properties": props}

    return {
        "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                    "properties": {"type": _STR, "title": _STR, "status": {"type": "integer"},
                                   "detail": _STR,
                                   # On a 503 "Storage unavailable": what is wrong with it.
                                   "storage": {"type": "string", "enum": [
                                       "full", "read_only", "busy", "unavailable"]}}},
        "Option": {"type": "object", "required": ["value", "label", "count"],
                   "properties": {"value": _STR, "label": _STR,
                                  "count": {"type": "integer", "minimum": 0}}},
        "Question": {"type": ["object", "null"], "properties": {
            "attribute": _STR, "prompt": _STR, "options": arr("Option"),
            "allows_free_text": {"type": "boolean"}}},
        "Pick": {"type": "object", "required": ["product_id", "title", "price", "currency",
                                                "attributes", "score", "reasons"],
                 "properties": {
                     "product_id": _STR, "title": _STR, "price": {"type": ["number", "null"]},
                     "currency": {"type": ["string", "null"]},
                     "attributes": {"type": "object", "additionalProperties": _STR},
                     "score": {"type": "number", "minimum": 0, "maximum": 1},
                     "reasons": {"type": "array", "items": _STR},
                     "in_store": {"type": ["boolean", "null"],
                                  "description": "only in a conversation with a store_id: true "
                                                 "in stock in that store, false not, null "
                                                 "unknown (ask staff)"},
                     "in_store_label": {**_STR,
                                        "description": "'In stock here', 'Ask staff', ..."},
                     "store_quantity": {"type": ["integer", "null"]}}},
        "Preference": {"type": "object", "properties": {
            "attribute": _STR, "value": _STR, "polarity": {"enum": ["want", "avoid"]},
            "source": {"enum": ["stated", "inferred"]},
            "strength": {"type": "number", "minimum": 0, "maximum": 1},
            "evidence": _STR, "updated_at": _STR}},
        "Turn": {"type": "object", "required": ["state", "message", "question", "picks"],
                 "properties": {"state": _STR, "message": _STR, "question": _ref("Question"),
                                "picks": arr("Pick"), "preferences": arr("Preference")}},
        "NewConversationTurn": {"allOf": [_ref("Turn"), {
            "type": "object", "required": ["conversation_id", "token"],
            "properties": {"conversation_id": _STR, "token": _STR}}]},
        "HandoffTurn": {"allOf": [_ref("Turn"), {
            "type": "object", "required": ["handoff_code", "handoff_expires_at"],
            "properties": {"handoff_code": {"type": "string", "pattern": "^[0-9]{6}$"},
                           "handoff_expires_at": _STR}}]},
        "Conversation": {"type": "object",
                         "required": ["conversation_id", "state", "channel", "shopper_id",
                                      "turns"],
                         "properties": {
                             "conversation_id": _STR, "state": _STR,
                             "channel": {"enum": ["web", "kiosk", "phone"]},
                             "shopper_id": {"type": ["string", "null"]},
                             "catalog": _STR, "store_id": {"type": ["string", "null"]},
                             "created_at": _STR,
                             "turns": {"type": "array", "items": {"allOf": [_ref("Turn"), {
                                 "type": "object", "required": ["seq", "at", "request"],
                                 "properties": {"seq": {"type": "integer"}, "at": _STR,
                                                "request": {"type": "object"}}}]}}}},
        "NewConversation": {"type": "object", "properties": {
            "channel": {"enum": ["web", "kiosk", "phone"], "default": "web"},
            "shopper_id": _or_null({**_ID, "description": "a signed-in shopper: server key "
                                                          "only"}),
            "catalog": _or_null(_STR), "store_id": _or_null(_ID),
            "text": _or_null(_text(MAX_TEXT, description="the shopper's first words "
                                                         "(optional; empty or blank means "
                                                         "none)")),
            "product_id": _or_null({**_STR, "description": "the product the shopper is "
                                                           "looking at: never one of the "
                                                           "picks"})}},
        "TurnRequest": {"oneOf": [
            only("text", _text(MAX_TEXT, words=True,
                               description=f"what the shopper typed, at most {MAX_TEXT} "
                                           "characters")),
            only("answer", {"type": "object", "required": ["attribute"], "properties": {
                "attribute": _STR, "value": {"type": ["string", "null"],
                                             "description": "null or absent: skip"}}}),
            only("action", {"enum": ["more", "cheaper", "start_over", "done"]}),
            only("feedback", {"type": "object", "required": ["product_id", "kind"],
                              "properties": {"product_id": _STR, "kind": {"enum": [
                                  "like", "dislike", "not_interested", "already_own"]}}})]},
        "PreferenceChange": {"type": "object", "required": ["attribute", "value"],
                             "properties": {
                                 "attribute": {"type": "string", "minLength": 1},
                                 "value": {"type": "string", "minLength": 1},
                                 "polarity": {"enum": ["want", "avoid"], "default": "want"},
                                 "catalog": _or_null(_STR),
                                 "said": _or_null(_text(
                                     500, description="an agent's request only: the "
                                                      "caller's own words"))}},
        "PreferenceRemoval": {"type": "object", "required": ["attribute", "value"],
                              "properties": {"attribute": {"type": "string", "minLength": 1},
                                             "value": {"type": "string", "minLength": 1},
                                             "catalog": _or_null(_STR)}},
        "Event": {"oneOf": [
            {"type": "object", "required": ["type", "query"], "properties": {
                "type": {"const": "search"}, "query": _text(500, words=True),
                "product_id": _or_null(_STR)}},
            {"type": "object", "required": ["type", "product_id"], "properties": {
                "type": {"enum": ["view", "add_to_cart", "purchase"]},
                "product_id": {"type": "string", "minLength": 1},
                "query": _or_null(_STR)}}],
            "properties": {
                "at": _or_null({"type": "string", "format": "date-time",
                                "description": "when (default now); a time without a zone "
                                               "is UTC; between 1970 and now"}),
                "recipient": _or_null({"type": "string", "maxLength": 64,
                                       "description": "who it was for, e.g. 'husband'"}),
                "catalog": _or_null(_STR)}},
        "EventRecorded": {"type": "object", "required": ["shopper_id", "type", "recorded"],
                          "properties": {"shopper_id": _STR, "type": _STR,
                                         "product_id": {"type": ["string", "null"]},
                                         "query": {"type": ["string", "null"]},
                                         "at": {"type": ["string", "null"]},
                                         "recorded": {"const": True}}},
        "EventList": {"type": "object", "required": ["shopper_id", "events"], "properties": {
            "shopper_id": _STR, "events": {"type": "array", "items": {
                "type": "object", "required": ["type", "at"], "properties": {
                    "type": _STR, "product_id": {"type": ["string", "null"]},
                    "title": {"type": ["string", "null"]},
                    "catalog": {"type": ["string", "null"]},
                    "query": {"type": ["string", "null"]}, "at": _STR,
                    "recipient": {"type": ["string", "null"]}}}}}},
        "Profile": {"type": "object", "required": ["shopper_id", "stated", "inferred",
                                                   "effective"],
                    "properties": {"shopper_id": _STR,
                                   **{k: arr("Preference")
                                      for k in ("stated", "inferred", "effective")}}},
        "Export": {"type": "object", "required": ["shopper_id", "profile", "tables"],
                   "properties": {"shopper_id": _STR, "profile": _ref("Profile"),
                                  "tables": {"type": "object", "additionalProperties": {
                                      "type": "array", "items": {"type": "object"}}}}},
        "Recipient": {"type": "object", "required": ["shopper_id", "name", "attributes"],
                      "properties": {"shopper_id": _STR, "name": _STR,
                                     "attributes": {"type": "object",
                                                    "additionalProperties": _STR},
                                     "note": {"type": ["string", "null"]},
                                     "updated_at": _STR}},
        "Contact": {"type": "object", "required": ["email"],
                    "properties": {"email": {"type": "string", "format": "email",
                                             "maxLength": 254}}},
        "ContactSaved": {"type": "object", "required": ["shopper_id", "email"],
                         "properties": {"shopper_id": _STR, "email": _STR}},
        "ShopperFound": {"type": "object", "required": ["shopper_id"],
                         "properties": {"shopper_id": _STR}},
        "RecipientList": {"type": "object", "required": ["shopper_id", "recipients"],
                          "properties": {"shopper_id": _STR,
                                         "recipients": arr("Recipient")}},
        "RecipientChange": {
            "type": "object",
            "description": "attributes, text or note (text is read with the catalog's words)",
            "properties": {
                "attributes": {"type": "object", "maxProperties": 30,
                               "propertyNames": {"minLength": 1, "maxLength": 64},
                               "additionalProperties": {"type": "string", "minLength": 1,
                                                        "maxLength": 100}},
                "text": _or_null(_text(500)), "note": _text(500),
                "catalog": _or_null(_STR)}},
        "Picks": {"type": "object", "required": ["picks"], "properties": {
            "picks": arr("Pick")}},
        "Product": {"type": "object", "required": ["product_id", "title", "attributes",
                                                   "catalog"],
                    "properties": {"product_id": _STR, "title": _STR,
                                   "attributes": {"type": "object",
                                                  "additionalProperties": _STR},
                                   "price": {"type": ["number", "null"]},
                                   "currency": {"type": ["string", "null"]},
                                   "description": {"type": ["string", "null"]},
                                   "catalog": _STR, "purchase_kind": _STR}},
        "Code": {"type": "object", "required": ["code"],
                 "properties": {"code": {"type": "string", "maxLength": 40}}},
        "LinkCode": {"type": "object", "required": ["shopper_id", "code", "expires_at"],
                     "properties": {"shopper_id": _STR, "code": _STR, "expires_at": _STR}},
        "Link": {"type": "object", "required": ["conversation_id", "linked", "message"],
                 "properties": {"conversation_id": _STR, "linked": {"type": "boolean"},
                                "message": _STR}},
        "Share": {"type": "object",
                  "required": ["url", "path", "qr_svg_url", "product_ids", "expires_at"],
                  "properties": {"url": _STR, "path": _STR, "qr_svg_url": _STR,
                                 "product_ids": {"type": "array", "items": _STR},
                                 "expires_at": _STR}},
        "Health": {"type": "object", "required": ["status"], "properties": {
            "status": {"const": "ok"},
            "catalogs": {"type": "object", "additionalProperties": {"type": "integer"}}}},
    }


def openapi_document(max_body_bytes: int = 64 * 1024) -> dict[str, Any]:
    """The whole API as OpenAPI 3.1 (``max_body_bytes``: the app's MAX_CONTENT_LENGTH)."""
    conv_id = {"name": "conversation_id", "in": "path", "required": True, "schema": _STR}
    shopper = {"name": "shopper_id", "in": "path", "required": True, "schema": _ID}
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9 \-]{0,63}$",
                       "description": "who the shopper shops for, e.g. 'husband' or 'my "
                                      "niece' (1-64 letters, digits, spaces or -)"}}
    catalog = {"name": "catalog", "in": "query", "schema": _STR}
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    # Shopper data: the server key, or an agent's console session (shoppers it looked up).
    shop: list[dict[str, list[str]]] = [{"bearer": []}, {"console": []}]
    turn_ok = _json("Turn", "A Turn")
    paths: dict[str, Any] = {
        "/healthz": {"get": _op("Ready to serve turns?", "200", _json("Health", "ready"), (),
                                security=[])},
        "/api/v1/openapi.json": {"get": _op(
            "This document", "200", {"description": "OpenAPI 3.1",
                                     "content": {"application/json": {
                                         "schema": {"type": "object"}}}}, (), security=[])},
        "/api/v1/conversations": {"post": _op(
            "Start a conversation", "201",
            _json("NewConversationTurn", "A Turn with conversation_id and token"),
            (401, 403, 404, 429), security=[{}, {"bearer": []}, {"console": []}],
            body="NewConversation",
            description="Anyone may start one without shopper_id (rate limited per client: "
                        "429 with Retry-After); with shopper_id only the server key (or an "
                        "agent, phone channel, for a shopper it looked up).")},
        "/api/v1/conversations/{conversation_id}/turns": {"post": _op(
            "One shopper turn", "200", turn_ok, (401, 403, 404, 409), security=shop,
            parameters=[conv_id], body="TurnRequest",
            description=f"text is at most {MAX_TEXT} characters (422 past that).")},
        "/api/v1/conversations/{conversation_id}": {"get": _op(
            "The conversation with every turn", "200", _json("Conversation", "conversation"),
            (401, 403, 404), security=shop, parameters=[conv_id])},
        "/api/v1/shoppers/{shopper_id}/profile": {"get": _op(
            "Stated, inferred and effective preferences", "200", _json("Profile", "profile"),
            (401, 403, 404, 422), security=shop, parameters=[shopper, catalog])},
        "/api/v1/shoppers/{shopper_id}/preferences": {
            "put": _op("Store a stated preference", "200", _json("Profile", "profile"),
                       (401, 403, 404), security=shop, parameters=[shopper],
                       body="PreferenceChange"),
            "delete": _op("Remove a preference (stated, or dismiss an inferred one)", "200",
                          _json("Profile", "profile"), (401, 403, 404), security=shop,
                          parameters=[shopper], body="PreferenceRemoval")},
        "/api/v1/shoppers/{shopper_id}/events": {
            "post": _op("Record a view, cart add, purchase or search", "201",
                        _json("EventRecorded", "recorded"), (401, 403, 404), security=bearer,
                        parameters=[shopper], body="Event"),
            "get": _op("The shopper's events, newest first, with product titles", "200",
                       _json("EventList", "events"), (401, 403, 422), security=shop,
                       parameters=[shopper])},
        "/api/v1/shoppers/{shopper_id}/export": {"get": _op(
            "Every row kept about the shopper", "200", _json("Export", "export"),
            (401, 403, 422), security=bearer, parameters=[shopper])},
        "/api/v1/shoppers/{shopper_id}": {"delete": _op(
            "Forget the shopper entirely", "204", {"description": "forgotten"},
            (401, 403, 422), security=bearer, parameters=[shopper])},
        "/api/v1/shoppers/{shopper_id}/contact": {"put": _op(
            "Keep the shopper's e-mail, so a phone agent can find them by it", "200",
            _json("ContactSaved", "kept"), (401, 403, 422), security=bearer,
            parameters=[shopper], body="Contact")},
        "/api/v1/shoppers": {"get": _op(
            "Find a shopper by the e-mail the shop gave (server key or agent; audited)",
            "200", _json("ShopperFound", "found"), (401, 403, 404, 422),
            security=[{"bearer": []}, {"console": []}], parameters=[
                {"name": "email", "in": "query", "required": True,
                 "schema": {"type": "string", "maxLength": 254}}])},
        "/api/v1/shoppers/{shopper_id}/recipients": {"get": _op(
            "The people the shopper shops for", "200", _json("RecipientList", "recipients"),
            (401, 403, 422), security=bearer, parameters=[shopper])},
        "/api/v1/shoppers/{shopper_id}/recipients/{name}": {
            "get": _op("One person the shopper shops for", "200",
                       _json("Recipient", "recipient"), (401, 403, 404, 422),
                       security=bearer, parameters=[shopper, name]),
            "put": _op("Keep what a person likes: attributes, text or a note", "200",
                       _json("Recipient", "recipient"), (401, 403, 404), security=bearer,
                       parameters=[shopper, name], body="RecipientChange"),
            "delete": _op("Forget one person", "204", {"description": "removed"},
                          (401, 403, 404, 422), security=bearer,
                          parameters=[shopper, name])},
        "/api/v1/search": {"get": _op(
            "One-shot ranked search", "200", _json("Picks", "picks"), (401, 403, 404, 422),
            security=[{}, {"bearer": []}, {"console": []}], parameters=[
                {"name": "q", "in": "query",
                 "schema": {"type": "string", "maxLength": 500},
                 "description": "required unless product_id is given"},
                {"name": "shopper_id", "in": "query", "schema": _ID,
                 "description": "personalised: the server key (or an agent) only"},
                {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                        "maximum": 100, "default": 10}},
                catalog,
                {"name": "product_id", "in": "query", "schema": _STR,
                 "description": "products like this one (never it)"}])},
        "/api/v1/products/{product_id}": {"get": _op(
            "A product with all its attributes", "200", _json("Product", "product"), (404,),
            security=[], parameters=[
                {"name": "product_id", "in": "path", "required": True, "schema": _STR},
                catalog])},
    }
    _add_door_paths(paths, conv_id, shopper)
    return {
        "openapi": "3.1.0",
        "info": {"title": "personal-shopper", "version": "1",
                 "description": "The conversational shopping assistant's HTTP API "
                                "(../shared/API.md plus the additions documented here). "
                                f"Limits: a message (text) is at most {MAX_TEXT} "
                                f"characters (422 past that); a body at most {max_body_bytes} "
                                "bytes (413); no string in a body may hold control "
                                "characters other than tab, CR and LF (422); a body that is "
                                "not JSON is 400 on every path, even where it is ignored. "
                                "Errors are application/problem+json."},
        "paths": paths,
        "components": {"schemas": _schemas(), "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "the server key, or a conversation's token"},
            "console": {"type": "apiKey", "in": "cookie", "name": "shopper_console",
                        "description": "an agent's console session; state-changing "
                                       "requests also send its X-CSRF-Token header"}}},
    }


def _add_door_paths(paths: dict[str, Any], conv_id: dict[str, Any],
                    shopper: dict[str, Any]) -> None:
    """The widget's, kiosk's and console's additions (web/handoff.py, web/console.py)."""
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    paths["/api/v1/shoppers/{shopper_id}/link-code"] = {"post": _op(
        "A one-time code (10 minutes) the shopper enters at a kiosk to link their profile; "
        "made by the shop's backend for its profile page", "201",
        _json("LinkCode", "{shopper_id, code, expires_at}"), (401, 403, 422),
        security=bearer, parameters=[shopper])}
    paths["/api/v1/conversations/{conversation_id}/link"] = {
        "post": _op("Attach the shopper named by a link code (conversation token)", "200",
                    _json("Link", "{conversation_id, linked, message}"), (401, 403, 404, 429),
                    security=bearer, parameters=[conv_id], body="Code"),
        "delete": _op("Detach the linked shopper (the kiosk does when they leave)", "200",
                      _json("Link", "{conversation_id, linked: false}"), (401, 403, 404),
                      security=bearer, parameters=[conv_id])}
    paths["/api/v1/conversations/{conversation_id}/handoff"] = {"post": _op(
        "The shopper asks for a person: state 'handoff' and a 6-digit code (handoff_code, "
        "valid 30 minutes) to read out on the phone", "200",
        _json("HandoffTurn", "A Turn plus handoff_code and handoff_expires_at"),
        (401, 403, 404, 409), security=bearer, parameters=[conv_id])}
    paths["/api/v1/handoffs"] = {"post": _op(
        "An agent (console session + X-CSRF-Token) continues a handed-off conversation by "
        "its code; returns the conversation with every turn", "200",
        _json("Conversation", "the conversation, as GET returns it"), (401, 403, 404),
        security=[{"console": []}, {"bearer": []}], body="Code")}
    paths["/api/v1/conversations/{conversation_id}/share"] = {"post": _op(
        "A signed link (30 minutes) to the current picks' product ids, never the shopper's "
        "data; the page is GET /p/{token}, its QR code GET /p/{token}/qr.svg", "200",
        _json("Share", "the link"), (401, 403, 404, 422), security=bearer,
        parameters=[conv_id])}
