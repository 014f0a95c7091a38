"""Reading RPM headers and checking digests/signatures with the ``rpm`` programs (subprocess).

Every call uses a private rpm database (``--dbpath``) so the system rpmdb is never read or written.
Callers pass only paths they created themselves (uploaded names are never used as paths).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from asci.nevra import format_nevra
from rpmrepo.errors import InvalidPackage

RPM_LEAD_MAGIC = b"\xed\xab\xee\xdb"

# One XML document per package: every value comes from rpm's own ``:xml`` formatter, which escapes
# '<', '>' and '&', so no text inside a header field (a newline in the Summary, say) can open or close
# an element: a field can never be read as another one. The branch texts (``rsa`` ...) are ours.
_FIELDS = ("NAME", "EPOCH", "VERSION", "RELEASE", "ARCH", "SUMMARY", "BUILDTIME", "SOURCERPM", "SIGNED")
_QUERYFORMAT = (
    "<header>"
    "<f n='NAME'>%{NAME:xml}</f>"
    "<f n='EPOCH'>%|EPOCH?{%{EPOCH:xml}}:{<integer>0</integer>}|</f>"
    "<f n='VERSION'>%{VERSION:xml}</f>"
    "<f n='RELEASE'>%{RELEASE:xml}</f>"
    "<f n='ARCH'>%{ARCH:xml}</f>"
    "<f n='SUMMARY'>%{SUMMARY:xml}</f>"
    "<f n='BUILDTIME'>%{BUILDTIME:xml}</f>"
    "<f n='SOURCERPM'>%|SOURCERPM?{%{SOURCERPM:xml}}:{<string></string>}|</f>"
    "<f n='SIGNED'><string>"
    "%|RSAHEADER?{rsa}:{%|DSAHEADER?{dsa}:{%|SIGPGP?{pgp}:{%|SIGGPG?{gpg}:{none}|}|}|}|"
    "</string></f>"
    "[<req>%{REQUIRENEVRS:xml}</req>]"
    "[<prov>%{PROVIDENEVRS:xml}</prov>]"
    "</header>"
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


def _control_free(label: str, what: str, value: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidPackage(f"{label}: the {what} in the RPM header contains control characters")
    return value


def _value(label: str, what: str, element: ET.Element | None) -> str:
    """The text of the one ``<string>`` or ``<integer>`` inside ``element``."""
    children = list(element) if element is not None else []
    if len(children) != 1 or children[0].tag not in ("string", "integer"):
        raise InvalidPackage(f"{label}: RPM header lacks a single {what}")
    return _control_free(label, what, children[0].text or "")


def parse_query(xml_text: str, label: str) -> RpmHeader:
    """The :class:`RpmHeader` of ``rpm --queryformat`` output made with ``_QUERYFORMAT``."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        raise InvalidPackage(f"{label}: the RPM header has fields rpm cannot write as XML "
                             "(control characters or invalid text)") from None
    if root.tag != "header":
        raise InvalidPackage(f"{label}: unreadable RPM header")
    fields = {}
    for element in root.findall("f"):
        name = element.get("n", "")
        if name in fields:
            raise InvalidPackage(f"{label}: RPM header field {name} appears twice")
        fields[name] = element
    values = {key.lower(): _value(label, key.lower(), fields.get(key)) for key in _FIELDS}
    requires: list[str] = []
    provides: list[str] = []
    for tag, target, what in (("req", requires, "requires"), ("prov", provides, "provides")):
        for element in root.findall(tag):
            value = _value(label, what, element)
            if value not in target and not (tag == "req" and value.startswith("rpmlib(")):
                target.append(value)
    try:
        epoch = int(values["epoch"])
        buildtime = dt.datetime.fromtimestamp(int(values["buildtime"]), dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise InvalidPackage(f"{label}: RPM header has a malformed epoch or build time") from None
    return RpmHeader(
        name=values["name"], epoch=epoch, version=values["version"], release=values["release"],
        arch=values["arch"], summary=values["summary"], buildtime=buildtime,
        source_package=values["sourcerpm"] in {"(none)", ""}, signed=values["signed"] != "none",
        requires=requires, provides=provides,
    )


def read_header(path: Path, dbpath: Path, label: str) -> RpmHeader:
    """Read the header of ``path`` with ``rpm -qp --queryformat`` (XML-escaped values, see ``_QUERYFORMAT``)."""
    check_magic(path, label)
    proc = _run(["rpm", "-qp", "--dbpath", str(dbpath), "--nosignature", "--nodigest",
                 "--queryformat", _QUERYFORMAT, "--", str(path)])
    if proc.returncode != 0:
        raise InvalidPackage(f"{label}: not a readable RPM package ({_first_error(proc.stderr, path, label)})")
    return parse_query(proc.stdout, label)


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
