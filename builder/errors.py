"""Exceptions of the builder package."""

from asci.errors import AsciError


class BuildError(AsciError):
    """Root of the builder's errors: a build, push or render that failed."""


class BaseImageError(BuildError):
    """A base image definition cannot be rendered or built."""


class DockerError(BuildError):
    """The Docker engine or the registry refused or failed an operation."""
