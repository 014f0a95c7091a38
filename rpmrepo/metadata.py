"""Repository metadata: ``createrepo_c --update`` into a staging folder, then an atomic swap.

Each regeneration builds ``.meta/stage-*/{all,current}/repodata`` reusing the previous generation
(``--update-md-path``, so only new packages are read), renames the stage to ``.meta/<revision>``
and replaces the ``<view>/repodata`` symlinks with ``rename(2)``: a reader sees either the old or
the new metadata, never a mix. A failed ``createrepo_c`` leaves the previous generation in place.
The data files of the previous generation are hard-linked into the new one, so a client that
read the old ``repomd.xml`` just before the swap can still fetch what it names.
Callers must hold the repository lock (:func:`rpmrepo.store.repo_lock`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from rpmrepo.errors import MetadataError
from rpmrepo.store import VIEWS, RepoLayout

REPO_NS = "{http://linux.duke.edu/metadata/repo}"
KEEP_GENERATIONS = 3


def read_revision(view_dir: Path) -> str | None:
    """The ``<revision>`` of ``view_dir/repodata/repomd.xml``, or None when there is no metadata."""
    repomd = view_dir / "repodata" / "repomd.xml"
    try:
        root = ET.parse(repomd).getroot()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ET.ParseError as exc:
        raise MetadataError(f"{repomd}: unreadable repomd.xml ({exc})") from None
    node = root.find(f"{REPO_NS}revision")
    return node.text.strip() if node is not None and node.text else ""


def _data_files(repodata: Path) -> list[str]:
    """File names referenced by ``repodata/repomd.xml``."""
    try:
        root = ET.parse(repodata / "repomd.xml").getroot()
    except (OSError, ET.ParseError):
        return []
    names = []
    for location in root.iter(f"{REPO_NS}location"):
        href = location.get("href", "")
        if href.startswith("repodata/") and "/" not in href[len("repodata/"):]:
            names.append(href[len("repodata/"):])
    return names


def next_revision(layout: RepoLayout) -> int:
    """A revision greater than the current one, close to the Unix time."""
    current = read_revision(layout.all_dir)
    try:
        previous = int(current or 0)
    except ValueError:
        previous = 0
    return max(previous + 1, int(time.time()))


def _generation_of(view_dir: Path) -> Path | None:
    """The ``.meta/<rev>/<view>`` folder that ``view_dir/repodata`` points to."""
    link = view_dir / "repodata"
    if not link.is_symlink():
        return None
    return link.resolve().parent


def _createrepo(source: Path, output: Path, revision: int, reuse: list[Path]) -> None:
    output.mkdir(parents=True)
    args = ["createrepo_c", "--quiet", "--no-database", "--update", "--revision", str(revision),
            "--outputdir", str(output)]
    for folder in reuse:
        if (folder / "repodata" / "repomd.xml").is_file():
            args += ["--update-md-path", str(folder)]
    args.append(str(source))
    try:
        proc = subprocess.run(args, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                              timeout=3600)
    except FileNotFoundError:
        raise MetadataError("createrepo_c is not installed") from None
    except subprocess.TimeoutExpired:
        raise MetadataError("createrepo_c ran for more than an hour") from None
    if proc.returncode != 0 or not (output / "repodata" / "repomd.xml").is_file():
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise MetadataError(f"createrepo_c failed on {source.name}: {detail[-1] if detail else proc.returncode}")


def _carry_previous(previous: Path | None, new_repodata: Path) -> None:
    if previous is None:
        return
    for name in _data_files(previous / "repodata"):
        source, target = previous / "repodata" / name, new_repodata / name
        if source.is_file() and not target.exists():
            os.link(source, target)


def _point(view_dir: Path, target: Path) -> None:
    """Atomically make ``view_dir/repodata`` a symlink to ``target`` (relative)."""
    tmp = view_dir / f".repodata-{uuid.uuid4().hex}"
    os.symlink(os.path.relpath(target, view_dir), tmp)
    os.replace(tmp, view_dir / "repodata")


def _adopt(layout: RepoLayout, view: str) -> None:
    """Turn a ``repodata`` folder written in place by someone else into a generation we can swap.

    Only happens after a manual ``createrepo_c``; the view has no metadata for the instant between
    the two renames.
    """
    repodata = layout.view_dir(view) / "repodata"
    if repodata.is_symlink() or not repodata.is_dir():
        return
    target = layout.meta_dir / f"adopted-{uuid.uuid4().hex}" / view
    target.mkdir(parents=True)
    os.rename(repodata, target / "repodata")
    _point(layout.view_dir(view), target / "repodata")


@dataclass
class Swap:
    """A completed regeneration, which the caller may undo if its own transaction fails."""

    layout: RepoLayout
    revision: int
    previous: dict[str, Path | None]

    def undo(self) -> None:
        """Point the views back at the previous generation (or remove repodata if there was none)."""
        for view, target in self.previous.items():
            view_dir = self.layout.view_dir(view)
            if target is None:
                (view_dir / "repodata").unlink(missing_ok=True)
            else:
                _point(view_dir, target / "repodata")


def regenerate(layout: RepoLayout, *, separate_current: bool, revision: int | None = None,
               full: bool = False) -> Swap:
    """Rebuild both views' metadata and swap it in; returns the :class:`Swap` done.

    ``separate_current`` is False when no package is retracted: then ``current`` shares the
    metadata of ``all`` and createrepo_c runs once. ``full`` ignores the previous metadata.
    """
    layout.create()
    for view in VIEWS:
        _adopt(layout, view)
    revision = revision if revision is not None else next_revision(layout)
    previous = {view: _generation_of(layout.view_dir(view)) for view in VIEWS}
    stage = layout.meta_dir / f"stage-{uuid.uuid4().hex}"
    try:
        reuse_all = [] if full or previous["all"] is None else [previous["all"]]
        _createrepo(layout.all_dir, stage / "all", revision, reuse_all)
        if separate_current:
            _createrepo(layout.current_dir, stage / "current", revision, [stage / "all"])
        for view in VIEWS:
            if (stage / view).is_dir():
                _carry_previous(previous[view], stage / view / "repodata")
        final = layout.meta_dir / str(revision)
        if final.exists():
            shutil.rmtree(final)
        os.rename(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _point(layout.all_dir, final / "all" / "repodata")
    _point(layout.current_dir, final / ("current" if separate_current else "all") / "repodata")
    return Swap(layout=layout, revision=revision, previous=previous)


def prune(layout: RepoLayout, keep: int = KEEP_GENERATIONS) -> None:
    """Remove old generations and abandoned stages, keeping the newest ``keep`` and those in use."""
    if not layout.meta_dir.is_dir():
        return
    in_use = {_generation_of(layout.view_dir(view)) for view in VIEWS}
    in_use = {path.parent for path in in_use if path is not None}
    generations = sorted((p for p in layout.meta_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for old in generations[:-keep] if keep else generations:
        if old.resolve() not in in_use:
            shutil.rmtree(old, ignore_errors=True)
    for adopted in layout.meta_dir.glob("adopted-*"):
        if adopted.resolve() not in in_use:
            shutil.rmtree(adopted, ignore_errors=True)
    for stale in layout.meta_dir.glob("stage-*"):
        shutil.rmtree(stale, ignore_errors=True)  # the lock is held: no stage is being written
