"""Reading RPM headers and checking digests/signatures with the ``rpm`` programs (subprocess).

Every call uses a private rpm database (``--dbpath``) so the system rpmdb is never read or written.
Callers pass only paths they created themselves (uploaded names are never used as paths).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from asci.nevra import format_nevra
from rpmrepo.errors import InvalidPackage

RPM_LEAD_MAGIC = b"\xed\xab\xee\xdb"

_FIELDS = ("NAME", "EPOCH", "VERSION", "RELEASE", "ARCH", "SUMMARY", "BUILDTIME", "SOURCERPM", "SIGNED")
_QUERYFORMAT = (
    "NAME\t%{NAME}\n"
    "EPOCH\t%|EPOCH?{%{EPOCH}}:{0}|\n"
    "VERSION\t%{VERSION}\n"
    "RELEASE\t%{RELEASE}\n"
    "ARCH\t%{ARCH}\n"
    "SUMMARY\t%{SUMMARY}\n"
    "BUILDTIME\t%{BUILDTIME}\n"
    "SOURCERPM\t%{SOURCERPM}\n"
    "SIGNED\t%|RSAHEADER?{rsa}:{%|DSAHEADER?{dsa}:{%|SIGPGP?{pgp}:{%|SIGGPG?{gpg}:{none}|}|}|}|\n"
    "[REQ\t%{REQUIRENEVRS}\n]"
    "[PROV\t%{PROVIDENEVRS}\n]"
)
_ENV = {**os.environ, "LC_ALL": "C", "LANG": "C"}


@dataclass(frozen=True)
class RpmHeader:
    """What ASCI keeps from a package header."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str
    summary: str
    buildtime: dt.datetime
    source_package: bool
    signed: bool
    requires: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)

    @property
    def nevra(self) -> str:
        """``name-[epoch:]version-release.arch``."""
        return format_nevra(self.name, self.epoch, self.version, self.release, self.arch)

    @property
    def filename(self) -> str:
        """The canonical stored file name ``N-V-R.A.rpm`` (the epoch lives in metadata only)."""
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, env=_ENV, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise InvalidPackage(f"cannot check packages: {args[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise InvalidPackage(f"{args[0]} took longer than {timeout}s to read the package") from None


def _first_error(stderr: str, path: Path | None = None, label: str = "") -> str:
    """The first meaningful line of rpm's stderr, with our staging path replaced by the user's label."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "GPG_TTY" not in line]
    text = lines[0] if lines else "unreadable"
    if path is not None:
        text = text.replace(f"{path}: ", "").replace(str(path), label)
    return text.removeprefix("error: ")


def check_magic(path: Path, label: str) -> None:
    """Refuse anything that does not start with the RPM lead (rpm would read a text file as a manifest)."""
    with path.open("rb") as handle:
        if handle.read(4) != RPM_LEAD_MAGIC:
            raise InvalidPackage(f"{label}: not an RPM package (no RPM lead)")


def read_header(path: Path, dbpath: Path, label: str) -> RpmHeader:
    """Read the header of ``path`` with ``rpm -qp --queryformat``."""
    check_magic(path, label)
    proc = _run(["rpm", "-qp", "--dbpath", str(dbpath), "--nosignature", "--nodigest",
                 "--queryformat", _QUERYFORMAT, "--", str(path)])
    if proc.returncode != 0:
        raise InvalidPackage(f"{label}: not a readable RPM package ({_first_error(proc.stderr, path, label)})")
    values: dict[str, str] = {}
    requires: list[str] = []
    provides: list[str] = []
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("\t")
        if key == "REQ":
            if not value.startswith("rpmlib(") and value not in requires:
                requires.append(value)
        elif key == "PROV":
            if value not in provides:
                provides.append(value)
        elif key in _FIELDS and key not in values:
            values[key] = value
    missing = [key for key in _FIELDS if key not in values]
    if missing:
        raise InvalidPackage(f"{label}: RPM header lacks {', '.join(missing)}")
    try:
        epoch = int(values["EPOCH"])
        buildtime = dt.datetime.fromtimestamp(int(values["BUILDTIME"]), dt.timezone.utc)
    except ValueError:
        raise InvalidPackage(f"{label}: RPM header has a malformed epoch or build time") from None
    return RpmHeader(
        name=values["NAME"], epoch=epoch, version=values["VERSION"], release=values["RELEASE"],
        arch=values["ARCH"], summary=values["SUMMARY"], buildtime=buildtime,
        source_package=values["SOURCERPM"] in {"(none)", ""}, signed=values["SIGNED"] != "none",
        requires=requires, provides=provides,
    )


def import_keys(dbpath: Path, keys: tuple[Path, ...]) -> None:
    """Import armored GPG public keys into the private rpm database at ``dbpath``."""
    for key in keys:
        if not key.is_file():
            raise InvalidPackage(f"signature check: GPG key file {key} does not exist")
        proc = _run(["rpmkeys", "--dbpath", str(dbpath), "--import", str(key)])
        if proc.returncode != 0:
            raise InvalidPackage(f"signature check: cannot import GPG key {key}: {_first_error(proc.stderr)}")


def verify(path: Path, dbpath: Path, label: str, *, require_signature: bool, signed: bool) -> None:
    """Check digests (truncation, damage) and, when required, a signature by an imported key (``rpm -K``)."""
    args = ["rpmkeys", "-K", "--dbpath", str(dbpath)]
    if require_signature:
        if not signed:
            raise InvalidPackage(f"{label}: package is not signed, and this repository requires signatures")
        args += ["--define", "_pkgverify_level all"]
    else:
        args += ["--nosignature"]
    proc = _run(args + ["--", str(path)])
    if proc.returncode != 0:
        detail = proc.stdout.strip().replace(str(path), label).split(":", 1)[-1].strip() or _first_error(proc.stderr, path, label)
        if require_signature and "SIGNATURES NOT OK" in proc.stdout and "DIGESTS" not in proc.stdout:
            raise InvalidPackage(f"{label}: signature not made by a configured GPG key ({detail})")
        raise InvalidPackage(f"{label}: damaged or truncated RPM, digest check failed ({detail})")
