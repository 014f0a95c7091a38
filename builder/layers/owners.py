"""Which package owns which path: the image's own rpm database, queried in a container."""

from __future__ import annotations

from dataclasses import dataclass

RPMFILE_GHOST = 1 << 6
PACKAGES_QF = r"%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}\n"
FILES_QF = r"[%{=NAME}\t%{FILEFLAGS}\t%{FILEMTIMES}\t%{FILENAMES}\n]"
# One shell line printing both queries, separated by a marker line no rpm output contains.
SEPARATOR = "#asci-files"
QUERY_COMMAND = f"rpm -qa --qf '{PACKAGES_QF}' && echo '{SEPARATOR}' && rpm -qa --qf '{FILES_QF}'"


@dataclass
class Owners:
    """The rpm database's view of the image."""

    packages: dict[str, str]  # name -> epoch:version-release.arch
    paths: dict[str, list[str]]  # "/abs/path" -> owning package names, sorted
    mtimes: dict[tuple[str, str], int]  # (package, path) -> mtime in the package header
    ghosts: set[tuple[str, str]]  # (package, path) of %ghost files (not in the payload)

    def owners_of(self, path: str) -> list[str]:
        """Packages that installed ``path`` (relative tar name), ghosts left out."""
        absolute = "/" + path
        return [n for n in self.paths.get(absolute, ()) if (n, absolute) not in self.ghosts]


def parse_owners(output: str) -> Owners:
    """Parse :data:`QUERY_COMMAND` output. A file name holding a tab or a newline cannot be told
    apart in this format: such a line is refused rather than mis-assigned."""
    head, sep, files_out = output.partition(SEPARATOR + "\n")
    if not sep:
        raise ValueError("rpm query output lacks its separator line")
    packages = {}
    for line in head.splitlines():
        if line.strip():
            name, evr = line.split("\t")
            packages[name] = evr
    packages.pop("gpg-pubkey", None)
    paths: dict[str, set[str]] = {}
    mtimes, ghosts = {}, set()
    for line in files_out.splitlines():
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 4 or parts[0] not in packages:
            raise ValueError(f"unparseable rpm file line {line!r} (a tab or newline in a file name?)")
        name, flags, mtime, path = parts
        if path == "(none)":
            continue
        paths.setdefault(path, set()).add(name)
        mtimes[(name, path)] = int(mtime)
        if int(flags) & RPMFILE_GHOST:
            ghosts.add((name, path))
    return Owners(packages, {p: sorted(n) for p, n in paths.items()}, mtimes, ghosts)
