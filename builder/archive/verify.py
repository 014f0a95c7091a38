"""``asci env verify FILE``: check every digest and checksum of a version archive in one streaming pass."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from asci.progress import LogSink, discard
from builder.archive import oci
from builder.errors import ArchiveError
from builder.lock import lock_digest

SMALL = 4 << 20  # blobs up to this size (manifests, configs) are kept for reading


@dataclass
class Checked:
    """What a verified archive holds."""

    path: Path
    record: dict = field(default_factory=dict)  # asci/version.json
    manifest: bytes = b""
    media_type: str = ""
    digest: str = ""  # the manifest's
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> size (config and layers)
    rpms: int = 0
    image_bytes: int = 0  # config + layers
    recipe: str = ""  # the recipe text at its commit
    members: int = 0

    @property
    def environment(self) -> str:
        return self.record["environment"]["name"]

    @property
    def version(self) -> str:
        return self.record["version"]["version"]

    def lines(self) -> list[str]:
        return [f"{self.path}: {self.environment} {self.version} verified",
                f"  manifest {self.digest} ({self.media_type})",
                f"  {len(self.blobs)} image blobs, {self.image_bytes / 2**20:.1f} MiB, every sha256 matches its name",
                f"  lock sha256:{self.record['version']['lock_digest']} matches; {self.rpms} RPM files match the lock",
                f"  {self.members} members checked against asci/SHA256SUMS"]


def verify_archive(path: Path, log: LogSink = discard) -> Checked:
    """Read the archive at ``path`` once and check it whole; ArchiveError names every problem."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such archive")
    checked, problems = Checked(path), []
    seen: dict[str, str] = {}  # member -> sha256
    sizes: dict[str, int] = {}
    kept: dict[str, bytes] = {}
    meter = oci.Meter(log, "verified", path.stat().st_size)
    try:
        with open(path, "rb") as handle:
            for name, size, stream in oci.members(handle):
                if name in seen:
                    problems.append(f"{name} appears twice")
                reader = oci.HashingReader(stream, meter.add)
                keep = size <= SMALL and (name.startswith("blobs/") or not name.startswith(oci.RPM_FOLDER))
                parts = []
                while data := reader.read():
                    if keep:
                        parts.append(data)
                seen[name], sizes[name] = reader.hexdigest, size
                if keep:
                    kept[name] = b"".join(parts)
    except (OSError, ValueError, EOFError) as exc:
        raise ArchiveError(f"{path}: not a readable archive ({exc})") from None
    except Exception as exc:  # tarfile.ReadError and friends
        raise ArchiveError(f"{path}: not a readable archive ({exc})") from None
    meter.report()
    _check_layout(checked, seen, sizes, kept, problems)
    _check_records(checked, seen, kept, problems)
    if problems:
        raise ArchiveError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems[:8]))
    checked.members = len(seen)
    return checked


def _json(kept: dict[str, bytes], name: str, problems: list[str]):
    if name not in kept:
        problems.append(f"{name} is missing")
        return None
    try:
        return json.loads(kept[name])
    except ValueError as exc:
        problems.append(f"{name} is not JSON ({exc})")
        return None


def _check_layout(checked: Checked, seen, sizes, kept, problems) -> None:
    for name, digest in seen.items():
        named = oci.digest_of_path(name)
        if named is not None and named != f"sha256:{digest}":
            problems.append(f"{name}: content has sha256:{digest}")
    layout = _json(kept, "oci-layout", problems)
    if layout is not None and layout.get("imageLayoutVersion") != oci.OCI_LAYOUT["imageLayoutVersion"]:
        problems.append(f"oci-layout: version {layout.get('imageLayoutVersion')!r}")
    index = _json(kept, "index.json", problems)
    if index is None:
        return
    descriptors = index.get("manifests") or []
    if len(descriptors) != 1:
        problems.append(f"index.json names {len(descriptors)} manifests, one expected")
        return
    descriptor = descriptors[0]
    checked.digest, checked.media_type = descriptor.get("digest", ""), descriptor.get("mediaType", "")
    member = oci.blob_path(checked.digest) if ":" in checked.digest else ""
    if member not in kept:
        problems.append(f"the manifest {checked.digest} is not in the archive")
        return
    if sizes[member] != descriptor.get("size"):
        problems.append(f"the manifest is {sizes[member]} bytes, index.json says {descriptor.get('size')}")
    checked.manifest = kept[member]
    manifest = _json(kept, member, problems) or {}
    for blob in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
        name = oci.blob_path(blob.get("digest", "x:x"))
        if name not in sizes:
            problems.append(f"blob {blob.get('digest')} of the manifest is not in the archive")
        elif sizes[name] != blob.get("size"):
            problems.append(f"blob {blob.get('digest')}: {sizes[name]} bytes, the manifest says {blob.get('size')}")
        else:
            checked.blobs[blob["digest"]] = blob["size"]
            checked.image_bytes += blob["size"]


def _check_records(checked: Checked, seen, kept, problems) -> None:
    sums_text = kept.get(oci.SUMS_FILE)
    if sums_text is None:
        problems.append(f"{oci.SUMS_FILE} is missing")
        return
    try:
        sums = oci.parse_sums(sums_text.decode())
    except ValueError as exc:
        problems.append(f"{oci.SUMS_FILE} is unreadable ({exc})")
        return
    for name, digest in sums.items():
        if name not in seen:
            problems.append(f"{name} (in SHA256SUMS) is missing")
        elif seen[name] != digest:
            problems.append(f"{name}: sha256 {seen[name]}, SHA256SUMS says {digest}")
    unlisted = sorted(set(seen) - set(sums) - {oci.SUMS_FILE})
    if unlisted:
        problems.append(f"members not in SHA256SUMS: {', '.join(unlisted[:5])}")
    record = _json(kept, oci.VERSION_FILE, problems)
    if record is None:
        return
    checked.record = record
    version = record.get("version") or {}
    lock = version.get("lock") or {}
    if version.get("image_digest") != checked.digest:
        problems.append(f"the archive's manifest is {checked.digest}, the version records {version.get('image_digest')}")
    if lock_digest(lock) != version.get("lock_digest"):
        problems.append("the recorded lock does not match its lock digest")
    recipe = kept.get(oci.RECORDS + "recipe.yaml")
    if recipe is None:
        problems.append("asci/recipe.yaml is missing")
    else:
        wanted = (lock.get("recipe") or {}).get("sha256")
        if wanted and hashlib.sha256(recipe).hexdigest() != wanted:
            problems.append("asci/recipe.yaml is not the recipe text the lock names")
        checked.recipe = recipe.decode("utf-8", errors="replace")
    for pkg in lock.get("packages") or []:
        name = oci.RPM_FOLDER + pkg["filename"]
        if name not in seen:
            problems.append(f"the RPM {pkg['filename']} of the lock is missing")
        elif seen[name] != pkg["sha256"]:
            problems.append(f"{pkg['filename']}: sha256 {seen[name]}, the lock says {pkg['sha256']}")
        else:
            checked.rpms += 1
