"""Exceptions of the web package."""

from asci.errors import AsciError


class WebError(AsciError):
    """Root of the web package's errors."""


class DemoError(WebError):
    """A step of the demo set-up failed."""
