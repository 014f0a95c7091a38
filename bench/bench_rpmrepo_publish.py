"""Benchmark: publish one package into a repository of N packages vs a full createrepo_c run.

    .venv/bin/python bench/bench_rpmrepo_publish.py [--sizes 2000,10000] [--payload-kb 0,256] [--repeat 5]

For each size N:

1. generate N distinct noarch RPMs with ``tests/fixtures/rpms/build_many.sh`` (rpmbuild, one spec
   with 500 lua-generated subpackages per run, so every package has its own real header), either
   empty (payload 0: ~6 KB files) or each carrying a file of random bytes (``--payload-kb``);
2. seed a repository with them: hard-link into ``all/`` and ``current/`` and run
   ``rpmrepo.reindex(..., regenerate_metadata=True)`` (index rows from ``rpm -qp``, full metadata);
3. time ``rpmrepo.publish`` of one new package, ``--repeat`` times (validation, lock, createrepo_c
   --update in a staging generation, symlink swap, index row, event): the new metadata is visible
   when the call returns; the createrepo_c/swap part is also reported on its own;
4. time a full ``createrepo_c`` run (same flags: --no-database) over the same folder into a fresh
   output folder, ``--repeat`` times.

Prints a Markdown table (medians; min-max in brackets) and the machine description.
"""

from __future__ import annotations

import argparse
import datetime as dt
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

from asci.config import Settings  # noqa: E402
from asci.db import upgrade  # noqa: E402
from rpmrepo import metadata  # noqa: E402
from rpmrepo import publish, reindex, repo_path  # noqa: E402
from rpmrepo.metadata import read_revision  # noqa: E402

BUILD_MANY = ROOT / "tests" / "fixtures" / "rpms" / "build_many.sh"


def _generate(count: int, out: Path, prefix: str, payload_kb: int) -> float:
    started = time.perf_counter()
    subprocess.run([str(BUILD_MANY), str(count), str(out), prefix, str(os.cpu_count() or 2), str(payload_kb)],
                   check=True)
    return time.perf_counter() - started


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s [{min(values):.2f}-{max(values):.2f}]"


def bench_size(work: Path, size: int, repeat: int, payload_kb: int) -> dict:
    base = work / f"n{size}-p{payload_kb}"
    settings = Settings(data_dir=base / "data")
    upgrade(settings)
    gen_time = _generate(size, base / "pkgs", f"bench{size}", payload_kb)
    extra_dir = base / "extra"
    _generate(repeat, extra_dir, f"extra{size}", payload_kb)

    all_dir = repo_path(settings, view="all")
    current_dir = repo_path(settings, view="current")
    all_dir.mkdir(parents=True)
    current_dir.mkdir(parents=True)
    for rpm in (base / "pkgs").glob("*.rpm"):
        os.link(rpm, all_dir / rpm.name)
        os.link(rpm, current_dir / rpm.name)
    started = time.perf_counter()
    seeded = reindex(settings, regenerate_metadata=True)
    seed_time = time.perf_counter() - started
    assert len(seeded.added) == size, (len(seeded.added), seeded.skipped[:3])

    regen_times: list[float] = []
    original = metadata.regenerate

    def timed_regenerate(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            regen_times.append(time.perf_counter() - t0)

    metadata.regenerate = timed_regenerate  # publish.py calls metadata.regenerate
    publish_times = []
    try:
        for rpm in sorted(extra_dir.glob("*.rpm")):
            before = read_revision(current_dir)
            t0 = time.perf_counter()
            result = publish(settings, [rpm])
            publish_times.append(time.perf_counter() - t0)
            assert result.published and read_revision(current_dir) != before
    finally:
        metadata.regenerate = original

    full_times = []
    for _ in range(repeat):
        out = Path(tempfile.mkdtemp(dir=base, prefix="full-"))
        t0 = time.perf_counter()
        subprocess.run(["createrepo_c", "--quiet", "--no-database", "--outputdir", str(out), str(all_dir)], check=True)
        full_times.append(time.perf_counter() - t0)
        shutil.rmtree(out)
    disk = sum(p.stat().st_size for p in all_dir.glob("*.rpm"))
    shutil.rmtree(base, ignore_errors=True)
    return {"size": size, "payload_kb": payload_kb, "bytes": disk, "generate": gen_time, "seed": seed_time, "publish": publish_times,
            "regenerate": regen_times, "full": full_times, "total_packages": size + repeat}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,10000")
    parser.add_argument("--payload-kb", default="0,256", help="payload per package in KiB (list)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="where to work (a temp dir otherwise)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="asci-bench-rpmrepo-"))
    work.mkdir(parents=True, exist_ok=True)
    createrepo_version = subprocess.run(["createrepo_c", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {os.cpu_count()} CPUs; {' '.join(platform.uname())}")
    print(f"createrepo_c: {createrepo_version}; python {platform.python_version()}; database: SQLite")
    rows = []
    cases = [(int(p), int(n)) for p in args.payload_kb.split(",") for n in args.sizes.split(",")]
    try:
        for payload_kb, size in cases:
            r = bench_size(work, size, args.repeat, payload_kb)
            rows.append(r)
            print(f"  n={size}, payload {payload_kb} KiB ({r['bytes'] / 2**20:.0f} MiB): generated in "
                  f"{r['generate']:.1f} s, seeded (reindex + full metadata) in {r['seed']:.1f} s", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("| packages in repo | repo size | publish one package, until new metadata is visible | of which createrepo_c --update + swap | full createrepo_c run |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']:,} | {r['bytes'] / 2**20:,.0f} MiB | {_fmt(r['publish'])} | {_fmt(r['regenerate'])} | {_fmt(r['full'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
