"""Base desktop images from ``recipes/base/<name>``: hash, render and build.

A definition is a folder with ``base.yaml`` and ``Dockerfile.j2``; the shared
entrypoint lives in ``recipes/base/common``. The image tag is
``asci/base-<name>:<hash>`` where the hash covers every file of the
definition and of ``common``, so an unchanged definition is never rebuilt.

Buildable here: definitions with ``bootstrap.tool: debootstrap`` (a minbase
root file system from the machine's own apt mirror, ``docker import``ed, then
the desktop layer built on top). Others (CentOS 7, Rocky 9) render only.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from asci.progress import LogSink, discard
from builder import docker_engine
from builder.apt_sources import apt_mirror
from builder.errors import BaseImageError

COMMON = "common"
IMAGE_PREFIX = "asci/base-"
ROOTFS_PREFIX = "asci/rootfs-"


@dataclass(frozen=True)
class BaseDefinition:
    """A base image definition folder and its parsed ``base.yaml``."""

    name: str
    folder: Path
    spec: dict

    @property
    def buildable(self) -> bool:
        return bool(self.spec.get("buildable"))

    @property
    def definition_hash(self) -> str:
        """12 hex digits of SHA-256 over every file of the definition and ``common``."""
        digest = hashlib.sha256()
        for folder in (self.folder, self.folder.parent / COMMON):
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                digest.update(f"{folder.name}/{path.relative_to(folder)}\0".encode())
                digest.update(path.read_bytes())
                digest.update(b"\0")
        return digest.hexdigest()[:12]

    @property
    def image_tag(self) -> str:
        return f"{IMAGE_PREFIX}{self.name}:{self.definition_hash}"


def base_root(recipes_dir: Path) -> Path:
    return recipes_dir / "base"


def list_definitions(recipes_dir: Path) -> list[BaseDefinition]:
    """Every base definition under ``recipes_dir/base``."""
    root = base_root(recipes_dir)
    return [load_definition(recipes_dir, p.name) for p in sorted(root.iterdir())
            if p.is_dir() and p.name != COMMON]


def load_definition(recipes_dir: Path, name: str) -> BaseDefinition:
    """Load ``recipes/base/<name>``, checking it has what a definition needs."""
    folder = base_root(recipes_dir) / name
    if not (folder / "base.yaml").is_file():
        known = ", ".join(p.name for p in base_root(recipes_dir).iterdir() if p.is_dir() and p.name != COMMON)
        raise BaseImageError(f"unknown base image {name!r} (known: {known})")
    try:
        spec = yaml.safe_load((folder / "base.yaml").read_text()) or {}
    except yaml.YAMLError as exc:
        raise BaseImageError(f"{folder / 'base.yaml'}: invalid YAML: {exc}") from None
    if spec.get("name") != name:
        raise BaseImageError(f"{folder / 'base.yaml'}: name must be {name!r}, got {spec.get('name')!r}")
    if not (folder / "Dockerfile.j2").is_file():
        raise BaseImageError(f"{folder}: missing Dockerfile.j2")
    return BaseDefinition(name=name, folder=folder, spec=spec)


def parse_params(definition: BaseDefinition, pairs) -> dict[str, str]:
    """Turn ``KEY=VALUE`` strings into render parameters, refusing unknown or missing ones."""
    declared = definition.spec.get("params") or {}
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in declared:
            raise BaseImageError(f"{definition.name}: unknown parameter {key!r} (declared: {', '.join(declared) or 'none'})")
        if any(ch in value for ch in "\n\r'\"\\`$ ") or not value:
            raise BaseImageError(f"{definition.name}: parameter {key} has an unsafe or empty value {value!r}")
        values[key] = value
    missing = [key for key in declared if key not in values]
    if missing:
        raise BaseImageError(f"{definition.name}: missing parameters {', '.join(missing)} "
                             "(give each with --param KEY=VALUE)")
    return values


def render_dockerfile(definition: BaseDefinition, **context: str) -> str:
    """Render the definition's ``Dockerfile.j2`` (undefined variables are errors)."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(definition.folder)),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    context.setdefault("definition_hash", definition.definition_hash)
    try:
        return environment.get_template("Dockerfile.j2").render(**context)
    except jinja2.TemplateError as exc:
        raise BaseImageError(f"{definition.folder / 'Dockerfile.j2'}: {exc}") from None


def _bootstrap_rootfs(definition: BaseDefinition, client, mirror: str, log: LogSink, stage: LogSink) -> str:
    boot = definition.spec.get("bootstrap") or {}
    return rootfs_image(client, boot.get("suite", "bookworm"), boot.get("variant", "minbase"), mirror, log, stage)


def rootfs_image(client, suite: str, variant: str, mirror: str, log: LogSink = discard,
                 stage: LogSink = discard) -> str:
    """The ``debootstrap --variant=VARIANT SUITE`` root file system as a local image (made once, from
    ``mirror``, then reused); returns its reference. What every image of the project starts from."""
    key = hashlib.sha256(f"{suite}/{variant}".encode()).hexdigest()[:12]
    repository, tag = f"{ROOTFS_PREFIX}{suite}-{variant}", key
    reference = f"{repository}:{tag}"
    if docker_engine.image_exists(client, reference):
        log(f"root file system {reference} exists, reusing it")
        return reference
    if shutil.which("debootstrap") is None:
        raise BaseImageError("debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="asci-rootfs-") as tmp:
        target = Path(tmp) / "root"
        log(f"debootstrap --variant={variant} {suite} from {mirror}")
        stage(f"debootstrap --variant={variant} {suite} (about 30 s)")
        result = subprocess.run(["debootstrap", f"--variant={variant}", suite, str(target), mirror],
                                capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
            raise BaseImageError("debootstrap failed: " + " | ".join(tail))
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(target), "--numeric-owner", "-cf", str(tarball), "."], check=True)
        log(f"docker import {reference}")
        stage(f"docker import {reference}")
        docker_engine.import_rootfs(client, str(tarball), repository, tag)
    return reference


def build_base_image(definition: BaseDefinition, client, log: LogSink = print,
                     force: bool = False, stage: LogSink = discard) -> str:
    """Build the base image unless an image with its hash exists; returns its tag.

    ``log`` receives every line (debootstrap, docker build); ``stage`` one line per stage.
    """
    if not definition.buildable:
        raise BaseImageError(f"base image {definition.name} cannot be built on this machine "
                             "(no mirror for its distribution); it is rendered and checked only")
    tag = definition.image_tag
    if not force and docker_engine.image_exists(client, tag):
        log(f"base image {tag} exists, skipping the build")
        stage(f"{tag} exists: nothing to build")
        return tag
    mirror = apt_mirror(definition.spec.get("bootstrap", {}).get("suite", "bookworm"))
    stage(f"building {tag} from the mirror {mirror}")
    rootfs = _bootstrap_rootfs(definition, client, mirror, log, stage)
    with tempfile.TemporaryDirectory(prefix="asci-base-") as context_dir:
        Path(context_dir, "Dockerfile").write_text(
            render_dockerfile(definition, rootfs_image=rootfs, apt_mirror=mirror))
        shutil.copy2(definition.folder.parent / COMMON / "asci-desktop-entrypoint", context_dir)
        log(f"building {tag}")

        def steps(line: str) -> None:
            log(line)
            if line.startswith("Step "):  # "Step 3/8 : RUN apt-get ..." from the docker build
                stage(line.split(" && ")[0][:110])

        docker_engine.build_image(client, context_dir, tag, steps)
    client.images.get(tag).tag(f"{IMAGE_PREFIX}{definition.name}", "latest")
    stage(f"built {tag}")
    return tag
