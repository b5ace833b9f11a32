"""Domain errors. The web layer maps them to HTTP; the domain never knows about status codes."""

from __future__ import annotations


class DomainError(Exception):
    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason


class InvalidInput(DomainError):
    """The request is well-formed but its content is refused (unknown purpose, rule C11 ...)."""


class Conflict(DomainError):
    """The request contradicts stored data (an order id that belongs to another contact ...)."""


class NotFound(DomainError):
    pass
