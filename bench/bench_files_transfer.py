"""Files in and out of a running desktop: the files API against ``docker cp``, and the web process's memory.

    .venv/bin/python bench/bench_files_transfer.py [--size-mib 1024] [--rounds 3] [--out FILE]

A real stack on this machine: the web application in its own process, served by waitress as
``asci serve`` serves it (``web.server.serve_web``), the broker in it on the local Docker daemon,
a desktop of the base image (pushed to 127.0.0.1:5000) launched through the API. A file of
``--size-mib`` random bytes on the host, then, alternately, ``--rounds`` times each:

* API upload: ``PUT /api/sessions/<id>/files/bench.bin?overwrite=1`` with ``requests`` streaming the
  file from disk, until the 201 (the file is whole in the desktop's home, written by ``docker exec``
  as the session's uid);
* ``docker cp FILE <container>:<home>/cp.bin`` (the CLI, through the engine's archive API, as root);
* API download: ``GET .../files/bench.bin`` streamed to a file on the host, until its last byte;
* ``docker cp <container>:<home>/bench.bin FILE``.

Meanwhile the web process's resident memory (``VmRSS``) is sampled every 50 ms: its peak during
each transfer against its value before the first one (flat when the transfer streams). Every copy
is checked for its size, and the first API round trip for its SHA-256. Prints (and writes to
``--out``) a JSON summary: median MiB/s of each, the API/docker-cp ratios, memory figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402
import requests  # noqa: E402

from asci import db  # noqa: E402
from asci.config import PROJECT_ROOT, load_settings  # noqa: E402
from broker import register_node  # noqa: E402
from builder.base_images import build_base_image, load_definition  # noqa: E402
from tests.support import free_port, make_world, remove_sessions, shared_push  # noqa: E402

MAIN = "unix:///var/run/docker.sock"
CHUNK = 1 << 20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Sampler:
    """The peak RSS of ``pid`` while a ``with`` block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()

    def __enter__(self):
        self.peak = rss_kib(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed(function) -> float:
    began = time.monotonic()
    function()
    return time.monotonic() - began


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK * 4):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    client = docker.DockerClient(base_url=MAIN, version="1.41", timeout=300)
    repository = f"127.0.0.1:5000/asci-bench-{uuid.uuid4().hex[:8]}"
    base = build_base_image(load_definition(PROJECT_ROOT / "recipes", "debian12-mate"), client, log=lambda line: None)
    client.images.get(base).tag(repository, "v1")
    digest = shared_push(client, repository, "v1")  # with the registry credentials of this machine
    tmp = Path(tempfile.mkdtemp(prefix="asci-bench-files-"))
    port = free_port(21000, 29000)
    environment = {**os.environ, "ASCI_DATA_DIR": str(tmp / "data"),
                   "ASCI_BROKER_INSTANCE": f"files{uuid.uuid4().hex[:6]}",
                   "ASCI_WEB_HOST": "127.0.0.1", "ASCI_WEB_PORT": str(port), "ASCI_LOG_FORMAT": "text",
                   "ASCI_SESSION_START_TIMEOUT_S": "120", "ASCI_DATABASE_URL": f"sqlite:///{tmp / 'asci.db'}",
                   "ASCI_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    os.environ.update({key: value for key, value in environment.items() if key.startswith("ASCI_")})
    settings = load_settings()
    db.upgrade(settings)
    world = make_world(settings, [], image=f"{repository}:v1", digest=digest)
    with db.session_scope(settings) as session_db:
        register_node(settings, session_db, "local", MAIN)
    web = subprocess.Popen([sys.executable, "-c", "from asci.config import load_settings\n"
                            "from web.server import serve_web\nserve_web(load_settings())"],
                           env=environment, stdout=subprocess.DEVNULL, stderr=open(tmp / "web.log", "wb"))
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {world['tokens']['alice']}"}
    source, back, cp_back = tmp / "source.bin", tmp / "back.bin", tmp / "cp-back.bin"
    result: dict = {"size_mib": args.size_mib, "rounds": args.rounds, "load_average_before": os.getloadavg()}
    try:
        for _ in range(200):
            try:
                requests.get(url + "/healthz", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        reply = requests.post(url + "/api/sessions", json={"environment": world["env"], "experiment": world["e1"],
                                                            "memory": "2g"}, headers=auth, timeout=180)
        reply.raise_for_status()
        session = reply.json()
        files = f"{url}/api/sessions/{session['id']}/files"
        container = next(c for c in client.containers.list(filters={"label": f"asci.session={session['id']}"})
                         if c.labels.get("asci.broker") == environment["ASCI_BROKER_INSTANCE"])
        home = next(item.split("=", 1)[1] for item in container.attrs["Config"]["Env"] if item.startswith("HOME="))
        with source.open("wb") as handle:
            for _ in range(args.size_mib):
                handle.write(os.urandom(CHUNK))
        size = source.stat().st_size
        baseline = rss_kib(web.pid)
        figures: dict[str, list[float]] = {"api_upload": [], "cp_upload": [], "api_download": [], "cp_download": []}
        peaks: dict[str, list[int]] = {"api_upload": [], "api_download": []}

        def api_upload() -> None:
            with source.open("rb") as body:
                answer = requests.put(files + "/bench.bin?overwrite=1", data=body, timeout=1800,
                                      headers={**auth, "Content-Length": str(size)})
            assert answer.status_code == 201 and answer.json()["size"] == size, answer.text

        def api_download() -> None:
            with requests.get(files + "/bench.bin", headers=auth, stream=True, timeout=1800) as answer, \
                    back.open("wb") as out:
                answer.raise_for_status()
                for block in answer.iter_content(CHUNK):
                    out.write(block)
            assert back.stat().st_size == size

        def cp_upload() -> None:
            subprocess.run(["docker", "cp", str(source), f"{container.id}:{home}/cp.bin"], check=True,
                           stdout=subprocess.DEVNULL)

        def cp_download() -> None:
            cp_back.unlink(missing_ok=True)
            subprocess.run(["docker", "cp", f"{container.id}:{home}/bench.bin", str(cp_back)], check=True,
                           stdout=subprocess.DEVNULL)
            assert cp_back.stat().st_size == size

        for round_number in range(args.rounds):
            for name, step in (("api_upload", api_upload), ("cp_upload", cp_upload), ("api_download", api_download),
                               ("cp_download", cp_download)):
                with Sampler(web.pid) as sampler:
                    seconds = timed(step)
                figures[name].append(size / (1 << 20) / seconds)
                if name in peaks:
                    peaks[name].append(sampler.peak)
                print(f"round {round_number + 1} {name}: {figures[name][-1]:.0f} MiB/s, web RSS peak "
                      f"{sampler.peak / 1024:.0f} MiB", flush=True)
            if round_number == 0:
                assert sha256(back) == sha256(source), "the API round trip changed the bytes"
        result.update({
            "throughput_mib_s": {name: round(statistics.median(values), 1) for name, values in figures.items()},
            "all_mib_s": {name: [round(v, 1) for v in values] for name, values in figures.items()},
            "ratio_upload": round(statistics.median(figures["api_upload"]) /
                                  statistics.median(figures["cp_upload"]), 2),
            "ratio_download": round(statistics.median(figures["api_download"]) /
                                    statistics.median(figures["cp_download"]), 2),
            "web_rss_mib": {"before": round(baseline / 1024, 1),
                            **{f"peak_{name}": round(max(values) / 1024, 1) for name, values in peaks.items()}},
            "load_average_after": os.getloadavg(),
        })
    finally:
        web.terminate()
        try:
            web.wait(timeout=20)
        except subprocess.TimeoutExpired:
            web.kill()
        remove_sessions(MAIN, environment["ASCI_BROKER_INSTANCE"], world["names"].values())
        for path in (source, back, cp_back):
            path.unlink(missing_ok=True)
        client.images.remove(f"{repository}:v1", noprune=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
