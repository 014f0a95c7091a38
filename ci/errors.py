"""Exceptions of the ci package; an error of a shared kind (``asci.errors``) mixes that kind in."""

from asci import errors
from asci.errors import AsciError


class CiError(AsciError):
    """Root of the ci package's errors."""


class JobNotFound(CiError, errors.NotFound):
    """No build job with that id."""

    http_status = 404


class GateFailed(CiError):
    """The smoke test refused a new version (it stays not current)."""
