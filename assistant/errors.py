"""Errors the assistant raises; web/ maps them to HTTP status codes.

    AssistantError
    ├── NotFound                  (404)
    │   ├── ConversationNotFound
    │   ├── ProductNotFound
    │   └── CatalogNotFound
    ├── InvalidInput              (422)
    │   └── MalformedRequest      (400)
    ├── ConversationClosed        (409)
    ├── Conflict                  (409)
    └── Unavailable               (503)
"""

from __future__ import annotations

__all__ = [
    "AssistantError",
    "CatalogNotFound",
    "Conflict",
    "ConversationClosed",
    "ConversationNotFound",
    "InvalidInput",
    "MalformedRequest",
    "NotFound",
    "ProductNotFound",
    "Unavailable",
]


class AssistantError(Exception):
    """Base of every error the assistant raises on purpose."""

    title = "Assistant error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(AssistantError):
    title = "Not found"


class ConversationNotFound(NotFound):
    title = "Conversation not found"


class ProductNotFound(NotFound):
    title = "Product not found"


class CatalogNotFound(NotFound):
    title = "Catalog not found"


class InvalidInput(AssistantError):
    title = "Invalid input"


class MalformedRequest(InvalidInput):
    title = "Malformed request"


class ConversationClosed(AssistantError):
    title = "Conversation closed"


class Conflict(AssistantError):
    title = "Conflict"


class Unavailable(AssistantError):
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
