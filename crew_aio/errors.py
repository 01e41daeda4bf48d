"""The one error tree of crew_aio.

::

    CrewError                    code
    ├── NotFound                 not_found        an id that does not exist
    ├── Invalid                  invalid          a malformed or invalid request (names the field)
    ├── TooLarge                 too_large        a body or message over its size limit
    ├── Conflict                 conflict         the request does not fit the current state
    │   └── StaleLease           stale_lease      wrong worker, or a lease that is no longer current
    ├── Unauthorized             unauthorized     no or wrong token
    ├── Forbidden                forbidden        a token without the rights for the call
    └── StoreUnavailable         store_unavailable the store cannot commit right now

Errors carry a stable ``code`` and never an HTTP status: ``http_api`` owns the single table that
turns codes into statuses (and WebSocket error frames).
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "CrewError",
    "Forbidden",
    "Internal",
    "Invalid",
    "NotFound",
    "StaleLease",
    "StoreUnavailable",
    "TimedOut",
    "TooLarge",
    "Unauthorized",
]


class CrewError(Exception):
    """Base of every error crew_aio reports to a client."""

    code = "error"
    close_connection = False  # the request's stream cannot be trusted: answer, then close

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


class NotFound(CrewError):
    code = "not_found"


class Invalid(CrewError):
    code = "invalid"


class TooLarge(CrewError):
    code = "too_large"


class Conflict(CrewError):
    code = "conflict"


class StaleLease(Conflict):
    code = "stale_lease"


class Unauthorized(CrewError):
    code = "unauthorized"


class Forbidden(CrewError):
    code = "forbidden"


class TimedOut(CrewError):
    """The client took too long to send its request (answered 408; the connection closes)."""

    code = "timeout"
    close_connection = True


class StoreUnavailable(CrewError):
    code = "store_unavailable"


class Internal(CrewError):
    """A bug on the server's side (logged where it happened); answered 500."""

    code = "internal"
