"""20 packages published at once from several processes: every one lands, dnf still reads the repo."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from asci.db import session_scope
import rpmrepo
from rpmrepo.metadata import read_revision

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _publish_each(settings, paths: list[str], barrier) -> list[str]:
    barrier.wait()
    return [rpmrepo.publish(settings, [Path(p)]).packages[0].status for p in paths]


def test_twenty_concurrent_publishes_from_four_processes(db_settings, many_rpms, dnf_client):
    files = sorted(str(p) for p in many_rpms.glob("*.rpm"))
    assert len(files) == 20
    url = rpmrepo.repo_path(db_settings, view="current").as_uri()
    seen_revisions: set[str] = set()
    stop = threading.Event()

    def reader():  # a client polling the metadata the whole time must never see it half-written
        while not stop.is_set():
            revision = read_revision(rpmrepo.repo_path(db_settings, view="current"))
            if revision:
                seen_revisions.add(revision)
            time.sleep(0.005)

    watcher = threading.Thread(target=reader)
    watcher.start()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as pool:
            chunks = [files[i::4] for i in range(4)]
            results = pool.starmap(_publish_each, [(db_settings, chunk, barrier) for chunk in chunks])
    stop.set()
    watcher.join()

    assert sorted(s for chunk in results for s in chunk) == ["published"] * 20
    expected = {f"gen-pkg-{i:05d}-1.0-1.noarch" for i in range(1, 21)}
    with session_scope(db_settings) as session:
        assert {p.nevra for p in rpmrepo.list_packages(session, "beamline")} == expected
        events = rpmrepo.events_after(session, 0, 100)
    assert len(events) == 20
    assert [e.id for e in events] == sorted(e.id for e in events)
    revisions = [int(e.revision) for e in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == 20
    assert seen_revisions  # the reader read complete repomd.xml files throughout

    assert dnf_client(url).available() == expected
    assert dnf_client(rpmrepo.repo_path(db_settings, view="all").as_uri()).available() == expected
