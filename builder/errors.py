"""Exceptions of the builder package; an error of a shared kind (``asci.errors``) mixes that kind in."""

from asci import errors
from asci.errors import AsciError


class BuildError(AsciError):
    """Root of the builder's errors: a build, push or render that failed."""


class BaseImageError(BuildError):
    """A base image definition cannot be rendered or built."""


class DockerError(BuildError):
    """The Docker engine or the registry refused or failed an operation."""


class RecipeError(BuildError):
    """A recipe is malformed or holds a value the schema refuses (message names file, line, field)."""

    exit_code = 2


class LockError(BuildError):
    """A recipe cannot be resolved against the repository (unknown package, conflict...)."""


class VerifyError(BuildError):
    """A built image does not hold exactly the locked packages, or a check failed."""


class VersionError(BuildError):
    """A version is unknown, not in the expected state, or already pushed."""


class UnknownVersion(VersionError, errors.NotFound):
    """No such environment or version."""

    http_status = 404


class NotLaunchable(VersionError, errors.BadRequest):
    """The version exists but did not succeed (or was never pushed)."""

    http_status = 400


class UpToDate(BuildError, errors.Conflict):
    """Nothing changed: the lock equals the current version's, so no version is made."""

    http_status = 409

    def __init__(self, environment: str, version: str) -> None:
        super().__init__(f"{environment} is up to date: {version}")
        self.environment, self.version = environment, version


class ArchiveError(BuildError, errors.BadRequest):
    """A version archive cannot be written, is damaged, or does not fit this platform."""

    exit_code = 2
    http_status = 400
