"""Notice metadata changed on disk by other means (someone ran createrepo_c by hand, restored a backup).

:func:`detect_external_changes` compares each repository's ``all/repodata/repomd.xml`` revision
with the revision of its last recorded event and records an ``external`` event when they differ.
It takes the repository lock without waiting, so a publish in progress is never mistaken for an
outside change (a busy repository is simply checked on the next call).
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET

from sqlalchemy import select
from sqlalchemy.orm import Session

from asci.config import Settings
from rpmrepo.errors import LockTimeout
from rpmrepo.events import last_event, record_event
from rpmrepo.metadata import REPO_NS, read_revision
from rpmrepo.models import RepoEvent, RpmPackage
from rpmrepo.store import RepoLayout, list_repos, repo_lock

COMMON_NS = "{http://linux.duke.edu/metadata/common}"


def primary_nevras(view_dir) -> set[str]:
    """NEVRAs listed in a view's primary metadata (``name-[epoch:]version-release.arch``)."""
    repodata = view_dir / "repodata"
    root = ET.parse(repodata / "repomd.xml").getroot()
    href = None
    for data in root.iter(f"{REPO_NS}data"):
        if data.get("type") == "primary":
            location = data.find(f"{REPO_NS}location")
            href = location.get("href") if location is not None else None
    if not href or not href.startswith("repodata/"):
        return set()
    nevras = set()
    with gzip.open(repodata / href[len("repodata/"):]) as stream:
        for _, elem in ET.iterparse(stream):
            if elem.tag == f"{COMMON_NS}package":
                name = elem.findtext(f"{COMMON_NS}name")
                arch = elem.findtext(f"{COMMON_NS}arch")
                ver = elem.find(f"{COMMON_NS}version")
                if name and arch and ver is not None:
                    epoch = ver.get("epoch", "0")
                    prefix = f"{epoch}:" if epoch not in ("", "0") else ""
                    nevras.add(f"{name}-{prefix}{ver.get('ver')}-{ver.get('rel')}.{arch}")
                elem.clear()
    return nevras


def detect_external_changes(settings: Settings, db: Session) -> list[RepoEvent]:
    """Record an ``external`` event for each repository whose metadata revision changed unseen.

    The event lists the NEVRAs in the metadata that the index does not know (often none).
    Returns the events added (flushed; the caller's session commits them).
    """
    added: list[RepoEvent] = []
    for name in list_repos(settings):
        layout = RepoLayout.of(settings, name)
        try:
            with repo_lock(layout, timeout_s=0):
                revision = read_revision(layout.all_dir)
                if revision is None:
                    continue
                last = last_event(db, name)
                if last is not None and last.revision == revision:
                    continue
                known = {row.nevra for row in db.scalars(select(RpmPackage).where(RpmPackage.repo == name))}
                unknown = sorted(primary_nevras(layout.all_dir) - known)
                added.append(record_event(db, name, "external", unknown, revision))
        except LockTimeout:
            continue
    return added
