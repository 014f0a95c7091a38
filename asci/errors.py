"""The root of every ASCI exception.

Each package (rpmrepo, builder, ci, broker, web) derives its own root from
:class:`AsciError`; the CLI prints any ``AsciError`` as one line and exits
non-zero, so expected failures never show a traceback.
"""


class AsciError(Exception):
    """An expected failure with a message fit for the user.

    ``exit_code`` is what the CLI exits with, ``http_status`` what an HTTP API answers.
    """

    exit_code = 1
    http_status = 500


class ConfigError(AsciError):
    """A setting has a value that cannot be used."""

    exit_code = 2


class DatabaseError(AsciError):
    """The database cannot be reached or migrated."""
