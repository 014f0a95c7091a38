"""What a desktop's network mode costs at start (bounded): container create and start times.

    .venv/bin/python bench/bench_desktop_start.py [--runs 10]

Creates and starts a container of this checkout's ``debian12-mate`` base image (``sleep`` as its
command, so only the engine's work is timed) in four network modes, alternating them run by run so
that a busy machine weighs on each alike: ``host`` (what desktops had before issue 11), ``none``
(``--network none``: a network sandbox made by Docker), ``disabled`` (Docker's ``NetworkDisabled``:
the runtime makes the namespace, loopback only; what ``ASCI_SESSION_NETWORK=none`` uses), and
``none+disabled``. Every container is labelled ``asci.test`` and removed. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from asci.config import PROJECT_ROOT  # noqa: E402
from builder.base_images import build_base_image, load_definition  # noqa: E402

MODES = {"host": {"network_mode": "host"}, "none": {"network_mode": "none"},
         "disabled": {"network_disabled": True}, "none+disabled": {"network_mode": "none", "network_disabled": True}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
    image = build_base_image(load_definition(PROJECT_ROOT / "recipes", "debian12-mate"), client, log=lambda line: None)
    timings: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    interfaces: dict[str, list[str]] = {}
    load_before = os.getloadavg()[0]
    try:
        for run in range(args.runs):
            for mode, options in MODES.items():
                began = time.monotonic()
                container = client.containers.create(image, entrypoint=["sleep", "60"], detach=True,
                                                      labels={"asci.test": "1"}, **options)
                created = time.monotonic()
                try:
                    container.start()
                    timings[mode].append((created - began, time.monotonic() - created))
                    if run == 0:
                        lines = container.exec_run(["cat", "/proc/net/dev"]).output.decode().splitlines()[2:]
                        interfaces[mode] = [line.split(":")[0].strip() for line in lines]
                finally:
                    container.remove(force=True)
    finally:
        client.close()
    result = {"image": image, "runs": args.runs, "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    for mode, values in timings.items():
        result[mode] = {"create_p50_s": round(statistics.median(v[0] for v in values), 3),
                        "start_p50_s": round(statistics.median(v[1] for v in values), 3),
                        "start_p95_s": round(sorted(v[1] for v in values)[int(0.95 * (len(values) - 1))], 3),
                        "interfaces": interfaces.get(mode)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
