"""Benchmark: publish → new version built, smoke-tested, pushed and current (issue 5).

Runs against the real services that `bash .ci/provision setup` starts (dockerd, the registry on
127.0.0.1:5000) with SQLite in a temporary data directory, a temporary recipes git repository
holding one environment (the viewer), and a worker thread (poll 0.2 s, debounce 1 s). Each run
publishes a new viewer release (built here with rpmbuild from tests/fixtures/rpms/app.spec.in)
and measures until the environment's current version holds it. Prints the figures as Markdown.

    .venv/bin/python bench/bench_ci.py [--runs 5]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import git
from sqlalchemy import select

import rpmrepo
from asci import db
from asci.config import PROJECT_ROOT, Settings
from builder import registry
from builder.models import Environment
from ci.worker import Worker

TEMPLATE = PROJECT_ROOT / "tests" / "fixtures" / "rpms" / "app.spec.in"
RECIPE = """name: {name}
beamline: BENCH
description: ci benchmark environment
base: debian12-mate
packages:
  - bench-viewer
launchers:
  - name: Viewer
    command: /usr/bin/bench-viewer
checks:
  - /usr/bin/bench-viewer --version
"""


def build_rpm(version: str, out: Path) -> Path:
    """A bench-viewer RPM of ``version`` made with rpmbuild from the fixture template."""
    top = Path(tempfile.mkdtemp(prefix="bench-rpm-"))
    spec = top / "bench.spec"
    text = TEMPLATE.read_text()
    for key, value in {"@NAME@": "bench-viewer", "@EPOCH@": "", "@VERSION@": version, "@RELEASE@": "1",
                       "@BUILDARCH@": "BuildArch: noarch", "@REQUIRES@": "", "@PROVIDES@": "",
                       "@SUMMARY@": "benchmark viewer", "@VARIANT@": "bench"}.items():
        text = text.replace(key, value)
    spec.write_text(text)
    subprocess.run(["rpmbuild", "--quiet", "-bb", "--define", f"_topdir {top}", "--define", f"_rpmdir {out}",
                    "--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm", str(spec)],
                   check=True, capture_output=True)
    shutil.rmtree(top)
    return out / f"bench-viewer-{version}-1.noarch.rpm"


def current(settings: Settings, name: str) -> str | None:
    with db.session_scope(settings) as session:
        return session.scalar(select(Environment.current_version).where(Environment.name == name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="asci-bench-ci-"))
    name = f"bench-ci-{uuid.uuid4().hex[:6]}"
    shutil.copytree(PROJECT_ROOT / "recipes" / "base", work / "recipes" / "base")
    (work / "recipes" / "environments").mkdir()
    shutil.copy(PROJECT_ROOT / "recipes" / "environments" / "schema.yaml", work / "recipes" / "environments")
    (work / "recipes" / "environments" / f"{name}.yaml").write_text(RECIPE.format(name=name))
    repo = git.Repo.init(work)
    repo.git.add(A=True)
    actor = git.Actor("bench", "bench@example.invalid")
    repo.index.commit("bench recipe", author=actor, committer=actor)
    settings = Settings(data_dir=work / "data", recipes_dir=work / "recipes", ci_debounce_s=1.0, ci_poll_s=0.2)
    db.upgrade(settings)
    rpms = work / "rpms"
    rpms.mkdir()
    rpmrepo.publish(settings, [build_rpm("1.0", rpms)])
    stop = threading.Event()
    worker = Worker(settings, "bench-worker", echo=lambda line: None)
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 600
        while current(settings, name) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        figures = []
        for run in range(1, args.runs + 1):
            before = current(settings, name)
            path = build_rpm(f"1.{run}", rpms)
            started = time.monotonic()
            rpmrepo.publish(settings, [path])
            while current(settings, name) == before and time.monotonic() - started < 600:
                time.sleep(0.1)
            figures.append(time.monotonic() - started)
            print(f"run {run}: {figures[-1]:.1f} s → {current(settings, name)}", flush=True)
    finally:
        stop.set()
        thread.join(timeout=120)
        for tag in registry.list_tags(settings.registry, name):
            registry.delete_manifest(settings.registry, name, tag)
        import docker

        client = docker.from_env()
        for image in client.images.list(name=f"{settings.registry}/{name}"):
            client.images.remove(image.id, force=True)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"| machine | {platform.node()}, {platform.processor() or platform.machine()}, 2 cores |")
    print(f"| date | {time.strftime('%Y-%m-%d')} |")
    print(f"| runs | {len(figures)} (debounce 1 s, poll 0.2 s) |")
    print(f"| publish → current, median | {statistics.median(figures):.1f} s |")
    print(f"| min / max | {min(figures):.1f} s / {max(figures):.1f} s |")


if __name__ == "__main__":
    main()
