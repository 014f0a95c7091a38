"""Session list benchmark (no Docker): GET /api/sessions with N session rows on PostgreSQL.

    ASCI_TEST_POSTGRES_URL=postgresql://... .venv/bin/python bench/bench_session_list.py [--rows 1000] [--requests 300]

Resets the schema of the database named by ``ASCI_TEST_POSTGRES_URL`` (use a database of your own),
writes N session rows of one user (plus as many of others, so the per-user filter matters), then
times the API through the Flask test client (routing, bearer-token check, the query, JSON): the
default page (100 sessions), the whole list in one page (``limit=1000``), and a walk over every page.
Prints a JSON summary (milliseconds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select  # noqa: E402

from asci import db  # noqa: E402
from asci.config import Settings  # noqa: E402
from broker.models import DesktopSession, Experiment, Node  # noqa: E402
from builder.models import EnvironmentVersion  # noqa: E402
from tests.support import make_world  # noqa: E402
from web import create_app  # noqa: E402


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(timings: list[float]) -> dict:
    ms = [t * 1000 for t in timings]
    return {"p50": round(statistics.median(ms), 1), "p95": round(pct(ms, 0.95), 1), "p99": round(pct(ms, 0.99), 1),
            "max": round(max(ms), 1), "n": len(ms)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    url = os.environ.get("ASCI_TEST_POSTGRES_URL")
    if not url:
        sys.exit("set ASCI_TEST_POSTGRES_URL to a PostgreSQL database of your own (its schema is reset)")
    from tests.support import reset_postgres

    reset_postgres(url)
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="asci-bench-list-")), database_url=url,
                        log_format="text")
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
                for _ in range(args.rows)])
    with db.session_scope(settings) as session:
        session.execute(select(DesktopSession.id).limit(1))
    from sqlalchemy import text

    with db.engine_for(url).begin() as connection:
        connection.execute(text("ANALYZE"))
    client = create_app(settings).test_client()
    headers = {"Authorization": f"Bearer {world['tokens']['alice']}"}

    def timed(path: str, expect: int) -> dict:
        for _ in range(10):  # warm up
            client.get(path, headers=headers)
        timings, cpu = [], []
        for _ in range(args.requests):
            began, began_cpu = time.perf_counter(), time.process_time()
            reply = client.get(path, headers=headers)
            timings.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
            assert reply.status_code == 200 and len(reply.json["sessions"]) == expect, reply.status_code
        return {**summary(timings), "cpu_of_this_process": summary(cpu)}

    result = {"database": "postgresql", "rows_of_the_user": args.rows, "rows_in_table": 2 * args.rows,
              "load_average_before": os.getloadavg()[0],
              "default_page_100_ms": timed("/api/sessions", min(100, args.rows)),
              "whole_list_limit_1000_ms": timed(f"/api/sessions?limit={min(args.rows, 1000)}", min(args.rows, 1000))}
    walks = []
    for _ in range(max(10, args.requests // 10)):
        began, after, seen = time.perf_counter(), None, 0
        while True:
            reply = client.get("/api/sessions" + (f"?after={after}" if after else ""), headers=headers)
            seen += len(reply.json["sessions"])
            after = reply.json["next"]
            if after is None:
                break
        walks.append(time.perf_counter() - began)
        assert seen == args.rows
    result["walk_every_page_of_100_ms"] = summary(walks)
    result["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
