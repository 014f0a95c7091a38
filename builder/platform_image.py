"""The platform image of the compose deployment (``asci deploy image``), built without any registry.

It starts from the same debootstrap root file system as the desktop bases, installs Debian
packages from the mirror this machine's apt sources name, the project's pinned dependencies as
wheels made by this machine's pip, and this checkout (with its installed web assets). Its tag
carries the hash of everything that went in, so an unchanged checkout is not built twice.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jinja2

from asci.config import PROJECT_ROOT
from asci.progress import LogSink, discard
from builder import docker_engine
from builder.apt_sources import apt_mirror
from builder.base_images import rootfs_image
from builder.errors import BuildError

TEMPLATE = Path(__file__).resolve().parent / "templates" / "platform.Dockerfile.j2"
REPOSITORY = "asci/platform"
BUILD_TOOLS = ("setuptools>=68", "wheel")  # the editable install of the checkout needs them offline
IMAGE_PYTHON = "3.11.2"  # Debian bookworm's python3: wheels are chosen (and markers evaluated) for it
WHEEL_PLATFORMS = ("manylinux_2_36_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")


def requirements(project: Path = PROJECT_ROOT) -> list[str]:
    """The pinned runtime dependencies of ``pyproject.toml`` plus the build tools."""
    with (project / "pyproject.toml").open("rb") as handle:
        return [*tomllib.load(handle)["project"]["dependencies"], *BUILD_TOOLS]


def source_files(project: Path = PROJECT_ROOT) -> list[Path]:
    """The checkout's files (tracked and untracked, not ignored) and the installed web assets."""
    listed = subprocess.run(["git", "-C", str(project), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = [project / name for name in listed if name and (project / name).is_file()]
    assets = project / "web" / "node_modules"
    if not assets.is_dir():
        raise BuildError("web assets are not installed (web/node_modules): run bash .ci/provision setup")
    files += sorted(path for path in assets.rglob("*") if path.is_file())
    return files


def _pip_download(folder: Path, requirements: list[str]) -> None:
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    result = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                             "--python-version", IMAGE_PYTHON, "--implementation", "cp", "--abi", "cp311",
                             *platforms, "--dest", str(folder), *requirements], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"pip download of the wheels failed: {result.stderr.strip()[-400:]}")


def _missing_for_image(folder: Path) -> list[str]:
    """Requirements of the downloaded wheels that the image's Python needs and no wheel satisfies.

    pip evaluates ``python_full_version`` markers for the Python running it, not for
    ``--python-version``: a dependency needed only below 3.11.3 (the image has 3.11.2) is missed.
    """
    import email.parser
    import zipfile

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename

    environment = default_environment() | {"python_full_version": IMAGE_PYTHON, "python_version": "3.11",
                                           "implementation_version": IMAGE_PYTHON}
    present = {canonicalize_name(parse_wheel_filename(path.name)[0]): path for path in folder.glob("*.whl")}
    missing = []
    for path in present.values():
        with zipfile.ZipFile(path) as wheel:
            name = next(item for item in wheel.namelist() if item.endswith(".dist-info/METADATA"))
            metadata = email.parser.Parser().parsestr(wheel.read(name).decode())
        for text in metadata.get_all("Requires-Dist") or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(environment | {"extra": ""}):
                continue
            if canonicalize_name(requirement.name) not in present:
                missing.append(f"{requirement.name}{requirement.specifier}")
    return sorted(set(missing))


def download_wheels(folder: Path, pins: list[str]) -> None:
    """Wheels of ``pins`` and everything they need on the image's Python, into ``folder``."""
    _pip_download(folder, ["-r", str(folder / "requirements.txt")])
    for _round in range(5):
        missing = _missing_for_image(folder)
        if not missing:
            return
        _pip_download(folder, missing)
        with (folder / "requirements.txt").open("a") as handle:
            handle.write("\n".join(missing) + "\n")
    raise BuildError(f"the wheels' requirements do not settle: still missing {', '.join(missing)}")


def _tree_hash(files: list[Path], project: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(project)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_platform_image(client, log: LogSink = discard, stage: LogSink = discard,
                         project: Path = PROJECT_ROOT) -> str:
    """Build the platform image when its inputs changed; returns its tag (``asci/platform:<hash>``)."""
    mirror = apt_mirror("bookworm")
    stage("root file system (debootstrap, reused when present)")
    rootfs = rootfs_image(client, "bookworm", "minbase", mirror, log, stage)
    files = source_files(project)
    pins = requirements(project)
    dockerfile = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(
        TEMPLATE.read_text()).render(rootfs_image=rootfs, apt_mirror=mirror, extra_packages="",
                                     source_hash=_tree_hash(files, project))
    key = hashlib.sha256((dockerfile + "\n".join(pins)).encode()).hexdigest()[:12]
    tag = f"{REPOSITORY}:{key}"
    if docker_engine.image_exists(client, tag):
        stage(f"{tag} exists: nothing to build")
        return tag
    with tempfile.TemporaryDirectory(prefix="asci-platform-") as folder:
        context = Path(folder)
        stage(f"wheels of {len(pins)} pinned dependencies for Python {IMAGE_PYTHON} (pip download)")
        (context / "wheels").mkdir()
        (context / "wheels" / "requirements.txt").write_text("\n".join(pins) + "\n")
        download_wheels(context / "wheels", pins)
        stage(f"copying the checkout ({len(files)} files)")
        for path in files:
            target = context / "src" / path.relative_to(project)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        (context / "Dockerfile").write_text(dockerfile)

        def steps(line: str) -> None:
            log(line)
            if line.startswith("Step "):
                stage(line.split(" && ")[0][:110])

        docker_engine.build_image(client, folder, tag, steps)
    stage(f"built {tag}")
    return tag
