"""The root of every ASCI exception, the kinds of refusal every package shares, and the core's errors.

Each package (rpmrepo, builder, broker, ci, web) derives its own root from :class:`AsciError`
in its ``errors.py``. The kinds (:class:`BadRequest`, :class:`Unauthorized`, :class:`Forbidden`,
:class:`NotFound`, :class:`Conflict`) are defined here only; a package's error of that kind mixes
the kind into its own root (``class NotFound(BrokerError, asci.errors.NotFound)``), so
``except asci.errors.NotFound`` catches every package's and ``except BrokerError`` still catches the broker's. The CLI prints any ``AsciError`` as one line and exits with its
``exit_code``; every HTTP route answers it as JSON with its ``http_status`` (``asci.http``).
"""


class AsciError(Exception):
    """An expected failure with a message fit for the user.

    ``exit_code`` is what the CLI exits with, ``http_status`` what an HTTP API answers;
    ``retry_after`` (seconds), when set, tells an HTTP client when to try again.
    """

    exit_code = 1
    http_status = 500
    retry_after: int | None = None


class ConfigError(AsciError):
    """A setting has a value that cannot be used."""

    exit_code = 2


class DatabaseError(AsciError):
    """The database cannot be reached or migrated."""


class BadRequest(AsciError):
    """A request is malformed or asks for something that cannot be (an HTTP 400)."""

    http_status = 400


class Unauthorized(AsciError):
    """The caller is not logged in or sent an invalid token (an HTTP 401)."""

    http_status = 401


class Forbidden(AsciError):
    """The caller is known but may not do this (an HTTP 403)."""

    http_status = 403


class NotFound(AsciError):
    """No such thing, or not one the caller may see (an HTTP 404)."""

    http_status = 404


class Conflict(AsciError):
    """The thing acted on is not in a state that allows the request (an HTTP 409)."""

    http_status = 409


class AccountError(BadRequest):
    """A user or token operation was refused."""


class InvalidNevra(BadRequest):
    """A string that is not ``name-[epoch:]version-release.arch``."""
