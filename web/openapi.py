"""The OpenAPI 3.1 document of the API (GET /api/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_STR = {"type": "string"}
_PROBLEM = {"description": "An RFC 9457 problem",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _json(ref: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _PROBLEM for c in codes}


def openapi_document() -> dict[str, Any]:
    """The whole API as OpenAPI 3.1."""
    conv_id = {"name": "conversation_id", "in": "path", "required": True, "schema": _STR}
    shopper_id = {"name": "shopper_id", "in": "path", "required": True, "schema": _STR}
    bearer = [{"bearer": []}]
    schemas: dict[str, Any] = {
        "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                    "properties": {"type": _STR, "title": _STR, "status": {"type": "integer"},
                                   "detail": _STR}},
        "Option": {"type": "object", "properties": {"value": _STR, "label": _STR,
                                                    "count": {"type": "integer"}}},
        "Question": {"type": ["object", "null"], "properties": {
            "attribute": _STR, "prompt": _STR,
            "options": {"type": "array", "items": {"$ref": "#/components/schemas/Option"}},
            "allows_free_text": {"type": "boolean"}}},
        "Pick": {"type": "object", "properties": {
            "product_id": _STR, "title": _STR, "price": {"type": ["number", "null"]},
            "currency": {"type": ["string", "null"]},
            "attributes": {"type": "object", "additionalProperties": _STR},
            "score": {"type": "number"}, "reasons": {"type": "array", "items": _STR}}},
        "Preference": {"type": "object", "properties": {
            "attribute": _STR, "value": _STR, "polarity": {"enum": ["want", "avoid"]},
            "source": {"enum": ["stated", "inferred"]}, "strength": {"type": "number"},
            "evidence": _STR, "updated_at": _STR}},
        "Turn": {"type": "object", "required": ["state", "message", "question", "picks"],
                 "properties": {
                     "state": _STR, "message": _STR,
                     "question": {"$ref": "#/components/schemas/Question"},
                     "picks": {"type": "array", "items": {"$ref": "#/components/schemas/Pick"}},
                     "preferences": {"type": "array",
                                     "items": {"$ref": "#/components/schemas/Preference"}}}},
        "NewConversation": {"type": "object", "additionalProperties": False, "properties": {
            "channel": {"enum": ["web", "kiosk", "phone"]}, "shopper_id": _STR,
            "catalog": _STR, "store_id": _STR, "text": {"type": "string", "maxLength": 2000}}},
        "TurnRequest": {"oneOf": [
            {"type": "object", "required": ["text"], "additionalProperties": False,
             "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 2000}}},
            {"type": "object", "required": ["answer"], "additionalProperties": False,
             "properties": {"answer": {"type": "object", "required": ["attribute", "value"],
                                       "properties": {"attribute": _STR,
                                                      "value": {"type": ["string", "null"]}}}}},
            {"type": "object", "required": ["action"], "additionalProperties": False,
             "properties": {"action": {"enum": ["more", "cheaper", "start_over", "done"]}}},
            {"type": "object", "required": ["feedback"], "additionalProperties": False,
             "properties": {"feedback": {"type": "object", "required": ["product_id", "kind"],
                                         "properties": {"product_id": _STR, "kind": {"enum": [
                                             "like", "dislike", "not_interested",
                                             "already_own"]}}}}}]},
        "PreferenceChange": {"type": "object", "required": ["attribute", "value"],
                             "properties": {"attribute": _STR, "value": _STR,
                                            "polarity": {"enum": ["want", "avoid"]}}},
        "Event": {"type": "object", "required": ["type"], "properties": {
            "type": {"enum": ["view", "add_to_cart", "purchase", "search"]},
            "product_id": _STR, "query": _STR, "at": {"type": "string", "format": "date-time"},
            "recipient": _STR, "catalog": _STR}},
        "Profile": {"type": "object", "properties": {
            "shopper_id": _STR,
            **{k: {"type": "array", "items": {"$ref": "#/components/schemas/Preference"}}
               for k in ("stated", "inferred", "effective")}}},
    }
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Ready to serve turns?", "responses": {
            "200": {"description": "ready"}, **_errors(503)}}},
        "/api/v1/conversations": {"post": {
            "summary": "Start a conversation", "security": [{}, {"bearer": []}],
            "requestBody": {"required": True, **_json("NewConversation")},
            "responses": {"201": {"description": "A Turn with conversation_id and token",
                                  **_json("Turn")},
                          **_errors(400, 401, 403, 404, 413, 422, 429, 503)}}},
        "/api/v1/conversations/{conversation_id}/turns": {"post": {
            "summary": "One shopper turn", "security": bearer, "parameters": [conv_id],
            "requestBody": {"required": True, **_json("TurnRequest")},
            "responses": {"200": {"description": "A Turn", **_json("Turn")},
                          **_errors(400, 401, 403, 404, 409, 413, 422, 503)}}},
        "/api/v1/conversations/{conversation_id}": {"get": {
            "summary": "The conversation with every turn", "security": bearer,
            "parameters": [conv_id],
            "responses": {"200": {"description": "conversation"}, **_errors(401, 403, 404)}}},
        "/api/v1/shoppers/{shopper_id}/profile": {"get": {
            "summary": "Stated, inferred and effective preferences", "security": bearer,
            "parameters": [shopper_id],
            "responses": {"200": {"description": "profile", **_json("Profile")},
                          **_errors(401, 403, 422)}}},
        "/api/v1/shoppers/{shopper_id}/preferences": {
            "put": {"summary": "Store a stated preference", "security": bearer,
                    "parameters": [shopper_id],
                    "requestBody": {"required": True, **_json("PreferenceChange")},
                    "responses": {"200": {"description": "profile", **_json("Profile")},
                                  **_errors(400, 401, 403, 422)}},
            "delete": {"summary": "Remove a preference (stated, or dismiss an inferred one)",
                       "security": bearer, "parameters": [shopper_id],
                       "requestBody": {"required": True, **_json("PreferenceChange")},
                       "responses": {"200": {"description": "profile", **_json("Profile")},
                                     **_errors(400, 401, 403, 422)}}},
        "/api/v1/shoppers/{shopper_id}/events": {"post": {
            "summary": "Record a view, cart add, purchase or search", "security": bearer,
            "parameters": [shopper_id], "requestBody": {"required": True, **_json("Event")},
            "responses": {"201": {"description": "recorded"},
                          **_errors(400, 401, 403, 404, 422)}}},
        "/api/v1/shoppers/{shopper_id}/export": {"get": {
            "summary": "Every row kept about the shopper", "security": bearer,
            "parameters": [shopper_id],
            "responses": {"200": {"description": "export"}, **_errors(401, 403, 422)}}},
        "/api/v1/shoppers/{shopper_id}": {"delete": {
            "summary": "Forget the shopper entirely", "security": bearer,
            "parameters": [shopper_id],
            "responses": {"204": {"description": "forgotten"}, **_errors(401, 403, 422)}}},
        "/api/v1/search": {"get": {
            "summary": "One-shot ranked search", "parameters": [
                {"name": "q", "in": "query", "required": True,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 500}},
                {"name": "shopper_id", "in": "query", "schema": _STR},
                {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                        "maximum": 100}},
                {"name": "catalog", "in": "query", "schema": _STR}],
            "responses": {"200": {"description": "picks"}, **_errors(401, 403, 404, 422)}}},
        "/api/v1/products/{product_id}": {"get": {
            "summary": "A product with all its attributes", "parameters": [
                {"name": "product_id", "in": "path", "required": True, "schema": _STR},
                {"name": "catalog", "in": "query", "schema": _STR}],
            "responses": {"200": {"description": "product"}, **_errors(404)}}},
    }
    _add_door_paths(paths, schemas, conv_id, shopper_id)
    return {
        "openapi": "3.1.0",
        "info": {"title": "personal-shopper", "version": "1",
                 "description": "The conversational shopping assistant's HTTP API."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "the server key, or a conversation's token"},
            "console": {"type": "apiKey", "in": "cookie", "name": "shopper_console",
                        "description": "an agent's console session; state-changing "
                                       "requests also send its X-CSRF-Token header"}}},
    }


def _add_door_paths(paths: dict[str, Any], schemas: dict[str, Any], conv_id: dict[str, Any],
                    shopper_id: dict[str, Any]) -> None:
    """The widget's, kiosk's and console's additions (web/handoff.py, web/console.py)."""
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    console: list[dict[str, list[str]]] = [{"bearer": []}, {"console": []}]
    schemas["Pick"]["properties"].update({
        "in_store": {"type": ["boolean", "null"],
                     "description": "only in a conversation with a store_id: true in stock "
                                    "in that store, false not, null unknown (ask staff)"},
        "in_store_label": {**_STR, "description": "'In stock here', 'Ask staff', ..."},
        "store_quantity": {"type": ["integer", "null"]}})
    code_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["code"], "properties": {"code": _STR}}}}}
    paths["/api/v1/shoppers/{shopper_id}/link-code"] = {"post": {
        "summary": "A one-time code (10 minutes) the shopper enters at a kiosk to link "
                   "their profile; made by the shop's backend for its profile page",
        "security": bearer, "parameters": [shopper_id],
        "responses": {"201": {"description": "{shopper_id, code, expires_at}"},
                      **_errors(401, 403, 422)}}}
    paths["/api/v1/conversations/{conversation_id}/link"] = {
        "post": {"summary": "Attach the shopper named by a link code (conversation token)",
                 "security": bearer, "parameters": [conv_id], "requestBody": code_body,
                 "responses": {"200": {"description": "{conversation_id, linked, message}"},
                               **_errors(401, 403, 404, 422, 429)}},
        "delete": {"summary": "Detach the linked shopper (the kiosk does when they leave)",
                   "security": bearer, "parameters": [conv_id],
                   "responses": {"200": {"description": "{conversation_id, linked: false}"},
                                 **_errors(401, 403, 404)}}}
    paths["/api/v1/conversations/{conversation_id}/handoff"] = {"post": {
        "summary": "The shopper asks for a person: state 'handoff' and a 6-digit code "
                   "(handoff_code, valid 30 minutes) to read out on the phone",
        "security": bearer, "parameters": [conv_id],
        "responses": {"200": {"description": "A Turn plus handoff_code and "
                                             "handoff_expires_at", **_json("Turn")},
                      **_errors(401, 403, 404, 409)}}}
    paths["/api/v1/handoffs"] = {"post": {
        "summary": "An agent (console session + X-CSRF-Token) continues a handed-off "
                   "conversation by its code; returns the conversation with every turn",
        "security": console, "requestBody": code_body,
        "responses": {"200": {"description": "the conversation, as GET returns it"},
                      **_errors(401, 403, 404, 422)}}}
    paths["/api/v1/conversations/{conversation_id}/share"] = {"post": {
        "summary": "A signed link (30 minutes) to the current picks' product ids, never the "
                   "shopper's data: {url, path, qr_svg_url, product_ids, expires_at}; the "
                   "page is GET /p/{token}, its QR code GET /p/{token}/qr.svg",
        "security": bearer, "parameters": [conv_id],
        "responses": {"200": {"description": "the link"}, **_errors(401, 403, 404, 422)}}}
    paths["/api/v1/shoppers/{shopper_id}/events"]["get"] = {
        "summary": "The shopper's events, newest first, with product titles",
        "security": console, "parameters": [shopper_id],
        "responses": {"200": {"description": "{shopper_id, events: [...]}"},
                      **_errors(401, 403, 422)}}
