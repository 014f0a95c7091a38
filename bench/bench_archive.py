"""Benchmark: export, verify and import of a version archive; archive size against the image size.

    .venv/bin/python bench/bench_archive.py [--runs 3]

Everything is private to the run: a SQLite data directory, a git repository of recipes, the fixture
RPMs (mx-process, mx-lib, asci-demo-viewer), and ``docker-registry`` behind the authenticating proxy on
free 127.0.0.1 ports. One version is built (on the cached ``debian12-mate`` base) and pushed to the
first registry; then ``--runs`` times: ``asci env export`` (registry → archive file), ``asci env
verify`` (one streaming pass) and ``asci env import`` into an empty platform (a fresh data directory
and a fresh registry of its own, so every blob is uploaded). Prints a Markdown table (median [min-max])
and the machine description.
"""

from __future__ import annotations

import argparse
import datetime as dt
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

import json  # noqa: E402

import rpmrepo  # noqa: E402
from asci.config import Settings  # noqa: E402
from asci.db import upgrade  # noqa: E402
from builder.archive import export_version, import_archive, verify_archive  # noqa: E402
from builder.base_images import build_base_image, load_definition  # noqa: E402
from builder.build import build_environment  # noqa: E402
from builder.docker_engine import client_for  # noqa: E402
from tests.support import PrivateRegistry, RecipesRepo, free_port, recipe_text  # noqa: E402


def private_registry(folder: Path) -> PrivateRegistry:
    folder.mkdir(parents=True)
    folder.chmod(0o711)
    return PrivateRegistry(folder, free_port(32000, 36000), free_port(36000, 40000)).start()


def platform_settings(folder: Path, registry: PrivateRegistry, recipes: Path) -> Settings:
    settings = registry.settings(Settings(data_dir=folder / "data", recipes_dir=recipes))
    upgrade(settings)
    return settings


def span(values: list[float], unit: str = "s", digits: int = 1) -> str:
    return (f"{statistics.median(values):.{digits}f} {unit} [{min(values):.{digits}f}-{max(values):.{digits}f}]")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = max(1, min(args.runs, 5))
    client = client_for("unix:///var/run/docker.sock")
    build_base_image(load_definition(ROOT / "recipes", "debian12-mate"), client, log=lambda line: None)
    top = Path(tempfile.mkdtemp(prefix="asci-bench-archive-", dir="/tmp"))
    top.chmod(0o711)
    registries = []
    try:
        rpms = top / "rpms"
        subprocess.run([str(ROOT / "tests/fixtures/rpms/build.sh"), str(rpms)], check=True, capture_output=True)
        recipes = RecipesRepo(top / "recipes")
        name = "asci-bench-archive"
        recipes.write(name, recipe_text(name, ["mx-process", "asci-demo-viewer"]))
        source = private_registry(top / "registry-a")
        registries.append(source)
        settings = platform_settings(top / "a", source, recipes.root)
        rpmrepo.publish(settings, [rpms / f for f in ("asci-demo-viewer-1.0-1.noarch.rpm", "mx-lib-2.0-1.noarch.rpm",
                                                      "mx-process-1.0-1.noarch.rpm")])
        row = build_environment(settings, name, log=lambda line: None, client=client, promote=True)
        exports, verifies, imports, sizes, image = [], [], [], [], 0
        for run in range(runs):
            target = top / f"export-{run}.tar"
            began = time.monotonic()
            result = export_version(settings, name, row.version, target)
            exports.append(time.monotonic() - began)
            sizes.append(result["archive_bytes"])
            image = result["image_bytes"]
            began = time.monotonic()
            verify_archive(target)
            verifies.append(time.monotonic() - began)
            empty = private_registry(top / f"registry-b{run}")
            registries.append(empty)
            other = platform_settings(top / f"b{run}", empty, RecipesRepo(top / f"recipes-b{run}").root)
            began = time.monotonic()
            imported = import_archive(other, target)
            imports.append(time.monotonic() - began)
            assert imported.digest == row.image_digest and imported.blobs_present == 0
            target.unlink()
            empty.stop()
        uncompressed = client.images.get(row.image_reference).attrs["Size"]
        print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}: "
              f"{platform.platform()}, {runs} runs, version {row.version} ({row.image_digest[:19]})")
        print()
        print("| image (compressed layers + config) | image unpacked (docker) | archive | archive / image "
              "| export | verify | import into an empty platform |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {image / 2**20:.1f} MiB | {uncompressed / 2**20:.1f} MiB | {statistics.median(sizes) / 2**20:.1f} MiB "
              f"| {statistics.median(sizes) / image:.4f} | {span(exports)} | {span(verifies)} | {span(imports)} |")
        print(json.dumps({"image_bytes": image, "archive_bytes": sizes, "export_s": exports, "verify_s": verifies,
                          "import_s": imports}))
    finally:
        for registry in registries:
            registry.stop()
        for image in client.images.list():
            for reference in image.tags:
                if any(reference.startswith(r.host + "/") or reference.startswith(r.push_host + "/")
                       for r in registries):
                    client.images.remove(reference, noprune=True)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
