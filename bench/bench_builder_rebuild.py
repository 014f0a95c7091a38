"""Benchmark: rebuild of an environment after a one-package change, and registry storage per version.

    .venv/bin/python bench/bench_builder_rebuild.py [--rebuilds 3] [--payload-mb 8] [--workdir DIR]

Everything is private to the run: a ``docker-registry`` on a free 127.0.0.1 port with its own
storage folder (so its size on disk is measured exactly), a SQLite database, a repository and a
git repository of recipes. The base image ``debian12-mate`` is cached (built once beforehand).

1. Publish mx-process, mx-lib, asci-demo-viewer (fixture RPMs) and ``asci-bench-payload`` 1.0
   (``--payload-mb`` of random data, ``tests/fixtures/rpms/payload.spec``); build version 1 (its
   push carries the base layers into the empty registry).
2. ``--rebuilds`` times: publish the next release of the payload package only, and time
   ``build_environment`` (lock with dnf, docker build, verify, push, record) with its phases;
   measure the registry storage added by that version against the size of the changed RPM.

Prints a Markdown table and the machine description.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import git  # noqa: E402
import requests  # noqa: E402

import rpmrepo  # noqa: E402
from asci.config import Settings  # noqa: E402
from asci.db import upgrade  # noqa: E402
from builder.build import build_environment  # noqa: E402
from builder.docker_engine import client_for  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "rpms"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
PHASES = [("lock", "building "), ("docker build", "Successfully tagged"), ("verify + checks", "pushing "),
          ("push", "pushed "), ("record", None)]


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_registry(work: Path) -> tuple[subprocess.Popen, str, Path]:
    storage, port = work / "registry", free_port()
    storage.mkdir()
    config = work / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                return process, f"127.0.0.1:{port}", storage
        except requests.RequestException:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("the private registry did not start")


def build_rpms(work: Path, releases: int, payload_mb: int) -> Path:
    out = work / "rpms"
    subprocess.run([str(FIXTURES / "build.sh"), str(out)], check=True, capture_output=True)
    top = work / "rpmbuild"
    for minor in range(releases + 1):
        subprocess.run(["rpmbuild", "--quiet", "-bb", "--define", f"_topdir {top}", "--define", f"_rpmdir {out}",
                        "--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
                        "--define", f"pkgversion 1.{minor}", "--define", f"payload_bytes {payload_mb * 1_000_000}",
                        str(FIXTURES / "payload.spec")], check=True, capture_output=True)
    return out


def recipes(work: Path, name: str) -> Path:
    root = work / "recipes"
    shutil.copytree(ROOT / "recipes" / "base", root / "base")
    (root / "environments").mkdir()
    shutil.copy(ROOT / "recipes" / "environments" / "schema.yaml", root / "environments")
    (root / "environments" / f"{name}.yaml").write_text(
        f"name: {name}\nbeamline: BENCH\ndescription: Builder benchmark environment\nbase: debian12-mate\n"
        "packages:\n  - mx-process\n  - asci-demo-viewer\n  - asci-bench-payload\n"
        "launchers:\n  - name: Viewer\n    command: /usr/bin/asci-demo-viewer\n"
        "checks:\n  - /usr/bin/mx-process --version\n")
    repo = git.Repo.init(root)
    repo.git.add(A=True)
    repo.git.commit("-m", "bench recipes", env=GIT_ENV)
    return root


def timed_build(settings: Settings, name: str, client) -> tuple[float, dict[str, float], object]:
    marks: list[tuple[float, str]] = []
    start = time.perf_counter()
    row = build_environment(settings, name, log=lambda line: marks.append((time.perf_counter(), line)),
                            client=client, promote=True)
    end = time.perf_counter()
    phases, since = {}, start
    for label, marker in PHASES:
        at = next((t for t, line in marks if marker and line.startswith(marker) and t >= since), end)
        phases[label] = at - since
        since = at
    return end - start, phases, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rebuilds", type=int, default=3)
    parser.add_argument("--payload-mb", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="asci-bench-builder-", dir=args.workdir))
    client = client_for()
    name = f"bench-env-{os.getpid()}"
    registry_process, registry_addr, storage = start_registry(work)
    rows = []
    try:
        rpms = build_rpms(work, args.rebuilds, args.payload_mb)
        settings = Settings(data_dir=work / "data", registry=registry_addr, recipes_dir=recipes(work, name))
        upgrade(settings)
        rpmrepo.publish(settings, [rpms / f for f in ("mx-lib-2.0-1.noarch.rpm", "mx-process-1.0-1.noarch.rpm",
                                                       "asci-demo-viewer-1.0-1.noarch.rpm",
                                                       "asci-bench-payload-1.0-1.noarch.rpm")])
        total, phases, row = timed_build(settings, name, client)
        first_storage = dir_bytes(storage)
        print(f"first build {row.version}: {total:.1f} s, registry {first_storage / 1e6:.1f} MB", file=sys.stderr)
        before = first_storage
        for minor in range(1, args.rebuilds + 1):
            changed = rpms / f"asci-bench-payload-1.{minor}-1.noarch.rpm"
            rpmrepo.publish(settings, [changed])
            total, phases, row = timed_build(settings, name, client)
            after = dir_bytes(storage)
            rows.append({"version": row.version, "total": total, "phases": phases, "added": after - before,
                         "rpm": changed.stat().st_size})
            print(f"rebuild {row.version}: {total:.1f} s {phases}, +{(after - before) / 1e6:.2f} MB registry, "
                  f"changed RPM {changed.stat().st_size / 1e6:.2f} MB", file=sys.stderr)
            before = after
    finally:
        registry_process.terminate()
        registry_process.wait(timeout=10)
        for image in client.images.list():
            if any(tag.startswith(f"{registry_addr}/") for tag in image.tags):
                client.images.remove(image.id, force=True)
        shutil.rmtree(work, ignore_errors=True)

    median = lambda values: statistics.median(values)  # noqa: E731
    print(f"\n{dt.date.today()}, {platform.node()}: {os.cpu_count()} CPUs, Docker "
          f"{client.version().get('Version')}, payload package {args.payload_mb} MB of random data, "
          f"{args.rebuilds} rebuilds, first version {first_storage / 1e6:.0f} MB in the registry (base layers)\n")
    print("| measure | median | min–max |\n|---|---|---|")
    totals = [r["total"] for r in rows]
    print(f"| rebuild after a one-package change (lock → pushed, current) | {median(totals):.1f} s | "
          f"{min(totals):.1f}–{max(totals):.1f} s |")
    for label, _ in PHASES:
        values = [r["phases"][label] for r in rows]
        print(f"| … {label} | {median(values):.2f} s | {min(values):.2f}–{max(values):.2f} s |")
    added, sizes = [r["added"] for r in rows], [r["rpm"] for r in rows]
    print(f"| registry storage added per version | {median(added) / 1e6:.2f} MB | "
          f"{min(added) / 1e6:.2f}–{max(added) / 1e6:.2f} MB |")
    print(f"| size of the changed RPM | {median(sizes) / 1e6:.2f} MB | |")
    ratios = [a / s for a, s in zip(added, sizes)]
    print(f"| storage added / changed RPM size | {median(ratios):.2f} | {min(ratios):.2f}–{max(ratios):.2f} |")


if __name__ == "__main__":
    main()
