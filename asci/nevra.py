"""The one parser and formatter of RPM package identities (``name-[epoch:]version-release.arch``).

Every package uses these: the repository index, locks, diffs, ci's change events and the pages.
The epoch is written only when it is not 0, as rpm itself does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from asci.errors import InvalidNevra

_NEVRA_RE = re.compile(
    r"^(?P<name>.+)-(?:(?P<epoch>\d+):)?(?P<version>[^-:]+)-(?P<release>[^-:]+)\.(?P<arch>[a-z0-9_]+)$")


def format_evr(epoch: int | str, version: str, release: str) -> str:
    """``[epoch:]version-release`` (the epoch only when it is not 0)."""
    return f"{epoch}:{version}-{release}" if int(epoch or 0) else f"{version}-{release}"


def format_nevra(name: str, epoch: int | str, version: str, release: str, arch: str) -> str:
    """``name-[epoch:]version-release.arch``."""
    return f"{name}-{format_evr(epoch, version, release)}.{arch}"


@dataclass(frozen=True)
class Nevra:
    """A parsed package identity."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str

    def __str__(self) -> str:
        return format_nevra(self.name, self.epoch, self.version, self.release, self.arch)

    @property
    def evr(self) -> str:
        """``[epoch:]version-release``."""
        return format_evr(self.epoch, self.version, self.release)

    @classmethod
    def of(cls, package: Mapping[str, Any]) -> "Nevra":
        """From a mapping with ``name``, ``epoch``, ``version``, ``release`` and ``arch`` (a lock entry)."""
        return cls(str(package["name"]), int(package.get("epoch") or 0), str(package["version"]),
                   str(package["release"]), str(package["arch"]))


def parse_nevra(text: str) -> Nevra:
    """Parse ``name-[epoch:]version-release.arch`` (a trailing ``.rpm`` is accepted)."""
    text = str(text).strip()
    if text.endswith(".rpm"):
        text = text[:-4]
    match = _NEVRA_RE.match(text)
    if not match:
        raise InvalidNevra(f"{text!r} is not a NEVRA (name-[epoch:]version-release.arch)")
    return Nevra(match["name"], int(match["epoch"] or 0), match["version"], match["release"], match["arch"])


def package_name(nevra: str) -> str:
    """The name part of a NEVRA string (``mx-lib-1:2.1-1.noarch`` → ``mx-lib``)."""
    return parse_nevra(nevra).name
