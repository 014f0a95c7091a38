"""Find the Debian mirror this machine's own apt sources name (read at run time)."""

from __future__ import annotations

import re
from pathlib import Path

from builder.errors import BaseImageError

APT_DIR = Path("/etc/apt")


def _one_line_entries(text: str):
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
        if match:
            yield match.group(1), [match.group(2)]


def _deb822_entries(text: str):
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split()


def apt_mirror(suite: str = "bookworm", apt_dir: Path = APT_DIR) -> str:
    """The first enabled ``deb`` URI that serves ``suite`` (not its security suite)."""
    candidates: list[tuple[str, list[str]]] = []
    sources_list = apt_dir / "sources.list"
    if sources_list.exists():
        candidates += _one_line_entries(sources_list.read_text())
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                candidates += _one_line_entries(path.read_text())
            elif path.suffix == ".sources":
                candidates += _deb822_entries(path.read_text())
    for uri, suites in candidates:
        if suite in suites and uri.startswith(("http://", "https://", "file:/")):
            return uri.rstrip("/")
    raise BaseImageError(f"no apt source for {suite!r} in {apt_dir}/sources.list or sources.list.d")
