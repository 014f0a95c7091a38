"""Benchmark: rebuild of an environment after a one-package release; registry storage and node pulls.

    .venv/bin/python bench/bench_builder_rebuild.py [--packages 5] [--payload-mib 16] [--rebuilds 4] [--classic]

Everything is private to the run: a ``docker-registry`` behind the authenticating proxy (nginx) on
free 127.0.0.1 ports with its own storage folder (so its size on disk is measured exactly), a second
``dockerd`` (own data root and socket) standing in for a node, a SQLite database, a repository and a
git repository of recipes. The base image ``debian12-mate`` is cached (built once beforehand).

1. Publish mx-process, mx-lib, asci-demo-viewer (fixture RPMs) and ``--packages`` payload packages
   ``asci-bench-a``, ``-b``... 1.0 (``--payload-mib`` of random data each, ``payload.spec``); build
   version 1 (its push carries the base layers into the empty registry); the node pulls it.
2. ``--rebuilds`` times: publish the next release of one payload package (in turn: the middle one,
   the first, the last, the middle one again...), time ``build_environment`` (lock, docker build,
   verify, re-layer + push + pull-back check, record) with its phases, measure the registry storage it
   added, and let the node (holding the previous version) pull the new one, counting the bytes of
   the layers it did not have.

``--classic`` pushes the image as built (one layer for all RPMs): the figures before layering.
Prints a Markdown table and the machine description.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402
import git  # noqa: E402

import rpmrepo  # noqa: E402
from asci.config import Settings  # noqa: E402
from asci.db import upgrade  # noqa: E402
from builder import registry  # noqa: E402
from builder.build import build_environment  # noqa: E402
from builder.docker_engine import client_for  # noqa: E402
from tests.support import PrivateRegistry, free_port  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "rpms"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
PHASES = [("lock", "building "), ("docker build", "Successfully tagged"), ("verify + checks", "pushing "),
          ("read back + re-layer", "layer stack:"), ("push", "layers: "), ("pull back + compare", "pushed image holds"),
          ("record", None)]


def build_rpms(work: Path, names: list[str], releases: int, payload_mib: int) -> Path:
    out = work / "rpms"
    subprocess.run([str(FIXTURES / "build.sh"), str(out)], check=True, capture_output=True)
    top = work / "rpmbuild"
    for name in names:
        for minor in range(releases + 1):
            subprocess.run(["rpmbuild", "--quiet", "-bb", "--define", f"_topdir {top}", "--define", f"_rpmdir {out}",
                            "--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
                            "--define", f"pkgname {name}", "--define", f"pkgversion 1.{minor}",
                            "--define", f"payload_bytes {payload_mib * 2**20}", str(FIXTURES / "payload.spec")],
                           check=True, capture_output=True)
    return out


def recipes(work: Path, name: str, payloads: list[str]) -> Path:
    root = work / "recipes"
    shutil.copytree(ROOT / "recipes" / "base", root / "base")
    (root / "environments").mkdir()
    shutil.copy(ROOT / "recipes" / "environments" / "schema.yaml", root / "environments")
    (root / "environments" / f"{name}.yaml").write_text(
        f"name: {name}\nbeamline: BENCH\ndescription: Builder benchmark environment\nbase: debian12-mate\n"
        "packages:\n  - mx-process\n  - asci-demo-viewer\n" + "".join(f"  - {p}\n" for p in payloads) +
        "launchers:\n  - name: Viewer\n    command: /usr/bin/asci-demo-viewer\n"
        "checks:\n  - /usr/bin/mx-process --version\n")
    repo = git.Repo.init(root)
    repo.git.add(A=True)
    repo.git.commit("-m", "bench recipes", env=GIT_ENV)
    return root


class Node:
    """A second Docker daemon standing in for a node (own data root, exec root and socket)."""

    def __init__(self, work: Path):
        self.socket = f"/tmp/asci-bench-node-{os.getpid()}.sock"
        self.exec_root = Path(f"/tmp/asci-bench-node-{os.getpid()}")
        self.log = open(work / "node-dockerd.log", "ab")
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(work / "node"), "--exec-root", str(self.exec_root),
             "--pidfile", str(work / "node.pid"), "-H", f"unix://{self.socket}", "--bridge=none",
             "--iptables=false", "--ip6tables=false"], stdout=self.log, stderr=self.log)
        for _ in range(120):
            try:
                self.client = docker.DockerClient(base_url=f"unix://{self.socket}", timeout=600)
                self.client.ping()
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.5)
        raise RuntimeError("the node daemon did not start")

    def pull(self, host: str, name: str, digest: str) -> tuple[int, int, int]:
        """Pull ``name@digest``; (bytes downloaded, layers downloaded, layers already there)."""
        status: dict[str, set] = {}
        for chunk in self.client.api.pull(f"{host}/{name}", tag=digest, stream=True, decode=True):
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            if chunk.get("id"):
                status.setdefault(chunk["id"], set()).add(chunk.get("status", ""))
        layers = json.loads(registry.get_manifest(host, name, digest)[0])["layers"]
        fetched = [layer for layer in layers if "Already exists" not in status.get(layer["digest"][7:19], set())]
        return sum(layer["size"] for layer in fetched), len(fetched), len(layers) - len(fetched)

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=60)
        shutil.rmtree(self.exec_root, ignore_errors=True)


def timed_build(settings: Settings, name: str, client) -> tuple[float, dict[str, float], object, list[str]]:
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
    return end - start, phases, row, [f"{t - start:7.2f} {line}" for t, line in marks] + [f"{end - start:7.2f} end"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", type=int, default=5)
    parser.add_argument("--payload-mib", type=int, default=16)
    parser.add_argument("--rebuilds", type=int, default=4)
    parser.add_argument("--classic", action="store_true", help="push as built (one RUN layer): the figures before")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--trace", type=Path, help="append every build line with its time to this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="asci-bench-builder-", dir=args.workdir))
    work.chmod(0o711)  # the proxy's workers reach the registry's socket below it
    client = client_for()
    name = f"bench-env-{os.getpid()}"
    payloads = [f"asci-bench-{chr(ord('a') + i)}" for i in range(args.packages)]
    order = [payloads[len(payloads) // 2], payloads[0], payloads[-1]]
    changes = [order[i % len(order)] for i in range(args.rebuilds)]
    private = PrivateRegistry(work / "registry", free_port(32000, 36000), free_port(36000, 40000)).start()
    node = Node(work)
    rows, releases = [], {p: 0 for p in payloads}
    try:
        rpms = build_rpms(work, payloads, max(changes.count(p) for p in payloads), args.payload_mib)
        settings = private.settings(Settings(data_dir=work / "data", recipes_dir=recipes(work, name, payloads),
                                             builder_layered=not args.classic))
        upgrade(settings)
        rpmrepo.publish(settings, [rpms / f for f in ("mx-lib-2.0-1.noarch.rpm", "mx-process-1.0-1.noarch.rpm",
                                                       "asci-demo-viewer-1.0-1.noarch.rpm")]
                        + [rpms / f"{p}-1.0-1.noarch.rpm" for p in payloads])
        total, _phases, row, _lines = timed_build(settings, name, client)
        first_storage = private.storage_bytes()
        pulled, n_pulled, _ = node.pull(private.host, name, row.image_digest)
        print(f"first build {row.version}: {total:.1f} s, registry {first_storage / 1e6:.1f} MB; node pulled "
              f"{pulled / 1e6:.1f} MB in {n_pulled} layers", file=sys.stderr)
        before = first_storage
        for changed_name in changes:
            releases[changed_name] += 1
            changed = rpms / f"{changed_name}-1.{releases[changed_name]}-1.noarch.rpm"
            rpmrepo.publish(settings, [changed])
            total, phases, row, lines = timed_build(settings, name, client)
            after = private.storage_bytes()
            pulled, n_pulled, n_present = node.pull(private.host, name, row.image_digest)
            stack = next((line[8:] for line in lines if line[8:].startswith("layer stack:")), "")
            if args.trace:
                with open(args.trace, "a") as trace:
                    trace.write(f"--- {row.version} {changed_name} {json.dumps(row.layers.get('timings', {}))}\n"
                                + "\n".join(lines) + "\n")
            rows.append({"version": row.version, "package": changed_name, "total": total, "phases": phases,
                         "added": after - before, "rpm": changed.stat().st_size, "pulled": pulled,
                         "stack": stack})
            print(f"rebuild {row.version} ({changed_name} 1.{releases[changed_name]}): {total:.1f} s "
                  f"{ {k: round(v, 2) for k, v in phases.items()} }, +{(after - before) / 1e6:.2f} MB registry, "
                  f"node pulled {pulled / 1e6:.2f} MB ({n_pulled} layers, {n_present} present), changed RPM "
                  f"{changed.stat().st_size / 1e6:.2f} MB; {stack}", file=sys.stderr)
            before = after
    finally:
        node.stop()
        private.stop()
        for image in client.images.list():
            for reference in image.tags + image.attrs.get("RepoDigests", []):
                if reference.startswith((private.host + "/", private.push_host + "/", "asci-build/")):
                    try:
                        client.images.remove(reference, noprune=True)
                    except docker.errors.APIError:
                        pass
        shutil.rmtree(work, ignore_errors=True)

    median = statistics.median
    print(f"\n{dt.date.today()}, {platform.node()}: {os.cpu_count()} CPUs, Docker {client.version().get('Version')}, "
          f"{'classic (one RUN layer)' if args.classic else 'layered by package'}, {args.packages} packages of "
          f"{args.payload_mib} MiB random data + 3 small ones, {args.rebuilds} one-package releases "
          f"({', '.join(changes)}), first version {first_storage / 1e6:.0f} MB in the registry (base layers)\n")
    print("| measure | median | min–max |\n|---|---|---|")
    totals = [r["total"] for r in rows]
    print(f"| rebuild after a one-package release (lock → pushed, current) | {median(totals):.1f} s | "
          f"{min(totals):.1f}–{max(totals):.1f} s |")
    for label, _ in PHASES:
        values = [r["phases"][label] for r in rows]
        print(f"| … {label} | {median(values):.2f} s | {min(values):.2f}–{max(values):.2f} s |")
    for key, label in (("added", "registry storage added per version"),
                       ("pulled", "downloaded by a node holding the previous version")):
        values = [r[key] for r in rows]
        ratios = [r[key] / r["rpm"] for r in rows]
        print(f"| {label} | {median(values) / 1e6:.2f} MB ({median(ratios):.2f} × the changed RPM) | "
              f"{min(values) / 1e6:.2f}–{max(values) / 1e6:.2f} MB ({min(ratios):.2f}–{max(ratios):.2f} ×) |")
    print(f"| size of the changed RPM | {median([r['rpm'] for r in rows]) / 1e6:.2f} MB | |")
    for r in rows:
        print(f"\n{r['version']} {r['package']}: {r['stack']}", end="")
    print()


if __name__ == "__main__":
    main()
