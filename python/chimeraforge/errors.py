"""The exceptions chimeraforge raises.

Every one carries the engine's own message, which names the endpoint and says what went wrong
(and, where it can, what to do). A failed request's exception also carries its ``result``: the
:class:`~chimeraforge.Completion` with whatever text arrived before the failure and the figures
measured so far.

::

    ChimeraError
    ├── BadInputError        (also a ValueError)        the request or configuration is wrong
    ├── ConnectionError      (also builtins.ConnectionError)  the endpoint cannot be reached
    ├── TimeoutError         (also builtins.TimeoutError)     first-token, idle or total timeout
    ├── ServerError                                      the server failed the request
    │   ├── HTTPStatusError                              ... with a non-200 status
    │   └── ProtocolError                                ... with a malformed or cut-off response
    └── CancelledError                                   cancelled, by something other than
                                                         the caller's own asyncio task

``except ConnectionError`` and ``except TimeoutError`` with the builtins also catch ours.
Cancelling the asyncio task that awaits a request raises :class:`asyncio.CancelledError` as
usual (the engine's request is cancelled and the server's slot freed).
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ._native import Completion

__all__ = [
    "ChimeraError",
    "BadInputError",
    "ConnectionError",
    "TimeoutError",
    "ServerError",
    "HTTPStatusError",
    "ProtocolError",
    "CancelledError",
    "error_for",
]


class ChimeraError(Exception):
    """The base of every chimeraforge exception.

    Attributes:
        message: the engine's message.
        kind: the engine's error kind (``"connect"``, ``"timeout"``, ...) or ``None``.
        result: the failed request's Completion (partial text, figures), when a request failed.
    """

    def __init__(self, message: str, *, kind: Optional[str] = None,
                 result: "Optional[Completion]" = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.result = result


class BadInputError(ChimeraError, ValueError):
    """The request or the configuration is wrong (an unknown key, a bad URL, no such pool, a
    model file that cannot be loaded). Fix it and try again."""


class ConnectionError(ChimeraError, builtins.ConnectionError):  # noqa: A001 - like requests'
    """The endpoint cannot be reached: refused, unresolvable, or no connection in time."""


class TimeoutError(ChimeraError, builtins.TimeoutError):  # noqa: A001
    """A timeout ran out: first token, idle between tokens, or the whole request."""


class ServerError(ChimeraError):
    """The server failed the request (an error object, possibly mid-stream)."""


class HTTPStatusError(ServerError):
    """The server answered with a non-200 status (``status_code``)."""

    def __init__(self, message: str, *, kind: Optional[str] = None,
                 result: "Optional[Completion]" = None, status_code: int = 0) -> None:
        super().__init__(message, kind=kind, result=result)
        self.status_code = status_code


class ProtocolError(ServerError):
    """The response was malformed (not JSON, a record over the size limit) or ended early."""


class CancelledError(ChimeraError):
    """The request was cancelled by something other than the awaiting task (the engine was
    closed, or ``cancel()`` was called on it)."""


_BY_KIND = {
    "bad_request": BadInputError,
    "connect": ConnectionError,
    "timeout": TimeoutError,
    "http_status": HTTPStatusError,
    "server": ServerError,
    "protocol": ProtocolError,
    "truncated": ProtocolError,
    "cancelled": CancelledError,
}


def error_for(result: "Completion") -> ChimeraError:
    """The exception for a failed request's Completion."""
    kind = result.error_kind or "server"
    cls = _BY_KIND.get(kind, ChimeraError)
    message = result.error_message or f"the request failed ({kind})"
    if cls is HTTPStatusError:
        return HTTPStatusError(message, kind=kind, result=result, status_code=result.http_status)
    return cls(message, kind=kind, result=result)
