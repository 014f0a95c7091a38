"""The broker's exceptions: one root, each with the HTTP status the API answers with.

An error of a kind the packages share (``asci.errors``) mixes that kind into the broker's root.
"""

from asci import errors
from asci.errors import AsciError


class BrokerError(AsciError):
    """Root of every broker error; ``http_status`` is the HTTP status for the API."""

    http_status = 400


class BadRequest(BrokerError, errors.BadRequest):
    """The request is malformed or asks for something absurd."""


class NotFound(BrokerError, errors.NotFound):
    """No such thing, or not one the caller may see."""

    http_status = 404


class Forbidden(BrokerError, errors.Forbidden):
    """The caller is known but not allowed to do this."""

    http_status = 403


class QuotaExceeded(BrokerError):
    """The user already runs as many sessions as allowed."""

    http_status = 429


class NoCapacity(BrokerError):
    """No node that is up has room (or a free GPU) for the session right now: try again later."""

    http_status = 503
    retry_after = 30


class Conflict(BrokerError, errors.Conflict):
    """The request is sound but the thing it acts on is not in a state that allows it (sharing a stopped
    desktop)."""

    http_status = 409


class Unprocessable(BrokerError):
    """Well-formed, but its parts contradict each other (a guarantee above its limit)."""

    http_status = 422


class Unsatisfiable(Unprocessable):
    """No registered node could ever hold the session, even empty: asking again will not help."""


class BackendError(BrokerError):
    """A backend (Docker, Swarm) refused or failed an operation."""

    http_status = 502


class NodeUnreachable(BackendError):
    """A node's daemon does not answer."""


class ImportFailed(BrokerError, errors.BadRequest):
    """A row of an experiment import is bad; nothing was imported."""


class ForeignServer(BackendError):
    """A session's VNC socket is served by something other than the session's own desktop."""


class NotListening(BackendError):
    """A session's VNC socket is there but refuses connections: its server has bound it and not listened yet
    (a window that load widens), or has gone; readiness waits, the start time-out and ``poll`` decide."""
