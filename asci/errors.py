"""The root of every ASCI exception, and the errors of the shared core.

Each package (rpmrepo, builder, broker, ci, web) derives its own root from :class:`AsciError`
in its ``errors.py``. The CLI prints any ``AsciError`` as one line and exits with its
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


class AccountError(AsciError):
    """A user or token operation was refused."""

    http_status = 400


class InvalidNevra(AsciError):
    """A string that is not ``name-[epoch:]version-release.arch``."""

    http_status = 400


class BadRequest(AsciError):
    """A request is malformed (an HTTP 400)."""

    http_status = 400


class Unauthorized(AsciError):
    """The caller is not logged in or sent an invalid token (an HTTP 401)."""

    http_status = 401


class Forbidden(AsciError):
    """The caller is known but may not do this (an HTTP 403)."""

    http_status = 403
