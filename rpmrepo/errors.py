"""Errors of the RPM repository; :class:`RepoError` is this package's root.

``http_status`` is what the HTTP API answers for each kind of refusal; an error of a kind the
packages share (``asci.errors``: bad request, forbidden, not found, conflict) mixes that kind in.
"""

from asci import errors
from asci.errors import AsciError


class RepoError(AsciError):
    """A repository operation was refused or failed; nothing was changed."""

    http_status = 500


class InvalidPackage(RepoError, errors.BadRequest):
    """The file is not an acceptable RPM (not an RPM, damaged, wrong arch, unsigned...)."""

    http_status = 400


class PackageTooLarge(InvalidPackage):
    """The file is larger than ``repo_max_rpm_bytes``."""

    http_status = 413


class ConflictError(RepoError, errors.Conflict):
    """The NEVRA is already published with different bytes (published RPMs are immutable)."""

    http_status = 409


class PublishForbidden(RepoError, errors.Forbidden):
    """The caller may not publish into this repository (no grant, or a token without the scope)."""

    http_status = 403


class NotFound(RepoError, errors.NotFound):
    """No such repository or package."""

    http_status = 404


class InvalidName(RepoError, errors.BadRequest):
    """A repository name or NEVRA that cannot be used."""

    http_status = 400


class MetadataError(RepoError):
    """createrepo_c failed; the previous metadata is still in place."""


class LockTimeout(RepoError):
    """Another process held the repository lock for too long."""

    http_status = 503
