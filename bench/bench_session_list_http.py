"""HTTP throughput of ``GET /api/sessions`` served by ``asci serve --only web``, beside a static file.

    ASCI_TEST_POSTGRES_URL=postgresql://... .venv/bin/python bench/bench_session_list_http.py \\
        [--rows 40] [--requests 2000] [--concurrency 32] [--rounds 2] \\
        [--checkout before=/old/checkout] [--checkout after=.] [--checkout after-2=.,ASCI_WEB_PROCESSES=2]

Resets the schema of the database named by ``ASCI_TEST_POSTGRES_URL`` (use a database of your own),
writes ``--rows`` session rows of one user (and as many of another), and starts, on this machine:

- Python's ``http.server`` serving a file holding exactly the bytes of the API's reply (the baseline:
  what a Python HTTP server does with no application behind it);
- ``asci serve --only web`` of each checkout named by ``--checkout LABEL=DIR[,ASCI_X=VALUE...]``
  (default: this one, as ``after``; give the base commit's files, e.g. ``git archive BASE | tar -x -C
  DIR``, as ``before``; ``ASCI_WEB_PROCESSES=2`` and the like try other settings), one at a time, on
  the same database and data directory.

ApacheBench (``ab``, one new connection per request for both servers, no keep-alive) sends
``--requests`` requests with ``--concurrency`` clients to each, alternating baseline and API
``--rounds`` times so that the shared machine's load falls on both alike. Every API reply must be
200 with the same length (``ab`` counts others as failures). Prints a JSON summary: requests per
second, p50/p99 in ms, failures, the API's share of the baseline's requests per second, and the CPU
time the web part's processes spent per API request (less sensitive to the machine's load than rates).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from asci import db  # noqa: E402
from asci.config import Settings  # noqa: E402
from broker.models import DesktopSession, Experiment, Node  # noqa: E402
from builder.models import EnvironmentVersion  # noqa: E402
from tests.support import make_world, reset_postgres  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, headers: dict | None = None, timeout_s: float = 60.0) -> bytes:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as reply:
                return reply.read()
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer within {timeout_s} s")
            time.sleep(0.2)


def ab(url: str, requests: int, concurrency: int, headers: dict | None = None) -> dict:
    """One ApacheBench run: requests/s, p50 and p99 latency (ms), failures."""
    command = ["ab", "-q", "-n", str(requests), "-c", str(concurrency), "-s", "30"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(command + [url], capture_output=True, text=True, timeout=600).stdout

    def number(pattern: str) -> float:
        match = re.search(pattern, output, re.MULTILINE)
        if not match:
            raise SystemExit(f"cannot read {pattern!r} from ab's output:\n{output}")
        return float(match.group(1))

    non_2xx = re.search(r"^Non-2xx responses:\s+(\d+)", output, re.MULTILINE)
    return {"requests_per_s": number(r"^Requests per second:\s+([\d.]+)"),
            "p50_ms": number(r"^\s+50%\s+(\d+)"), "p99_ms": number(r"^\s+99%\s+(\d+)"),
            "max_ms": number(r"^\s+100%\s+(\d+)"),
            "failed": int(number(r"^Failed requests:\s+(\d+)")) + (int(non_2xx.group(1)) if non_2xx else 0),
            "complete": int(number(r"^Complete requests:\s+(\d+)"))}


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by ``root`` and its live descendants (the web part's
    processes under ``asci serve``)."""
    parents, used = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            used[int(entry.name)] = int(fields[11]) + int(fields[12])
    tree, grown = {root}, True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grown = bool(more)
    return sum(used.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def seed(settings: Settings, rows: int) -> str:
    """The schema, a world and ``rows`` stopped sessions of alice (and of bob); alice's API token."""
    reset_postgres(settings.database_url)
    db.upgrade(settings)
    world = make_world(settings, [dict(name="n1", docker_url="unix:///n1.sock", cpus=64, memory_bytes=256 << 30)])
    with db.session_scope(settings) as session:
        version = session.scalar(select(EnvironmentVersion).where(EnvironmentVersion.version == "v1"))
        experiment = session.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        node = session.scalar(select(Node))
        for who in ("alice", "bob"):
            session.add_all([DesktopSession(
                user_id=world["ids"][who], experiment_id=experiment.id, environment_version_id=version.id,
                environment=world["env"], version="v1", image="127.0.0.1:5000/env@sha256:" + "0" * 64,
                image_digest="sha256:" + "0" * 64, node_id=node.id,
                state="stopped", message="stopped by the user", backend_state={"container_id": "0" * 64})
                for _ in range(rows)])
    return world["tokens"]["alice"]


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--checkout", action="append", default=[], metavar="LABEL=DIR[,ASCI_X=VALUE...]",
                        help="a checkout to serve the API from, with extra settings (default: after=this one)")
    args = parser.parse_args()
    url = os.environ.get("ASCI_TEST_POSTGRES_URL")
    if not url:
        sys.exit("set ASCI_TEST_POSTGRES_URL to a PostgreSQL database of your own (its schema is reset)")
    work = Path(tempfile.mkdtemp(prefix="asci-bench-http-"))
    settings = Settings(data_dir=work / "data", database_url=url, log_format="text")
    token = seed(settings, args.rows)
    headers = {"Authorization": f"Bearer {token}"}
    checkouts = [("after", str(ROOT))] if not args.checkout else []
    for item in args.checkout:
        label, spec = item.split("=", 1)
        checkouts.append((label, spec))

    static_dir = work / "static"
    static_dir.mkdir()
    static_port = free_port()
    static = start([sys.executable, "-m", "http.server", str(static_port), "--bind", "127.0.0.1",
                    "--directory", str(static_dir)], dict(os.environ), work / "static.log")
    result: dict = {"rows_of_the_user": args.rows, "requests": args.requests, "concurrency": args.concurrency,
                    "cpus": os.cpu_count(), "load_average_before": os.getloadavg()[0], "servers": {}}
    try:
        for label, spec in checkouts:
            checkout, *variables = spec.split(",")
            port = free_port()
            environ = {**os.environ, **settings.to_environ(), "PYTHONPATH": checkout, "ASCI_WEB_PORT": str(port),
                       "ASCI_SERVE_PARTS": "web", "ASCI_PUBLIC_URL": f"http://127.0.0.1:{port}",
                       **dict(variable.split("=", 1) for variable in variables)}
            serve = start([sys.executable, "-m", "asci", "serve", "--only", "web"], environ,
                          work / f"serve-{label}.log")
            try:
                api_url = f"http://127.0.0.1:{port}/api/sessions"
                body = wait_for(api_url, headers)
                assert len(json.loads(body)["sessions"]) == min(args.rows, 100)
                (static_dir / "sessions.json").write_bytes(body)
                static_url = f"http://127.0.0.1:{static_port}/sessions.json"
                wait_for(static_url)
                ab(api_url, 200, args.concurrency, headers)  # warm up both
                ab(static_url, 200, args.concurrency)
                rounds = []
                for _ in range(args.rounds):
                    baseline = ab(static_url, args.requests, args.concurrency)
                    cpu_before = tree_cpu_s(serve.pid)
                    api = ab(api_url, args.requests, args.concurrency, headers)
                    used_s = tree_cpu_s(serve.pid) - cpu_before
                    api["web_cpu_ms_per_request"] = round(used_s / args.requests * 1000, 2)
                    rounds.append({"static_http_server": baseline, "api_sessions": api,
                                   "ratio": round(api["requests_per_s"] / baseline["requests_per_s"], 3)})
                result["servers"][label] = {"checkout": checkout, "variables": variables, "reply_bytes": len(body),
                                            "rounds": rounds}
            finally:
                stop(serve)
    finally:
        stop(static)
    result["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
