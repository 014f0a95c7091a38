"""/metrics scrape benchmark (no Docker): what a Prometheus scrape costs with N session and build rows on
PostgreSQL, the histograms being derived from those rows at scrape time.

    ASCI_TEST_POSTGRES_URL=postgresql://... .venv/bin/python bench/bench_metrics_scrape.py [--rows 10000] [--scrapes 50]

Resets the schema of the database named by ``ASCI_TEST_POSTGRES_URL`` (use a database of your own), writes
N finished sessions and N/5 finished build jobs with varied durations across 10 nodes, then times
``GET /metrics`` through the Flask test client with a metrics token (the registry check is left out: it is a
network call, not the database's cost). Prints a JSON summary (milliseconds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select, text  # noqa: E402

from asci import db  # noqa: E402
from asci.config import Settings  # noqa: E402
from asci.db import utcnow  # noqa: E402
from broker.models import DesktopSession, Experiment, Node  # noqa: E402
from builder.models import EnvironmentVersion  # noqa: E402
from ci.models import BuildJob  # noqa: E402
from tests.support import make_world  # noqa: E402


def summary(timings: list[float]) -> dict:
    ms = sorted(t * 1000 for t in timings)
    return {"p50": round(statistics.median(ms), 1), "p95": round(ms[int(0.95 * (len(ms) - 1))], 1),
            "max": round(ms[-1], 1), "n": len(ms)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    url = os.environ.get("ASCI_TEST_POSTGRES_URL")
    if not url:
        sys.exit("set ASCI_TEST_POSTGRES_URL to a PostgreSQL database of your own (its schema is reset)")
    from tests.support import reset_postgres

    reset_postgres(url)
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="asci-bench-metrics-")), database_url=url,
                        log_format="text")
    db.upgrade(settings)
    world = make_world(settings, [dict(name=f"n{i}", docker_url=f"unix:///n{i}.sock", cpus=64,
                                       memory_bytes=256 << 30) for i in range(10)])
    rng, now = random.Random(7), utcnow()
    with db.session_scope(settings) as session:
        version = session.scalar(select(EnvironmentVersion).where(EnvironmentVersion.version == "v1"))
        experiment = session.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        nodes = [node.id for node in session.scalars(select(Node))]
        rows = []
        for number in range(args.rows):
            created = now - dt.timedelta(minutes=rng.uniform(0, 60 * 24 * 60))
            seconds = rng.lognormvariate(1.5, 0.6)
            failed = number % 20 == 0
            rows.append(DesktopSession(
                user_id=world["ids"]["alice" if number % 2 else "bob"], experiment_id=experiment.id,
                environment_version_id=version.id, node_id=rng.choice(nodes), created_at=created,
                state="failed" if failed else ("running" if number % 50 == 1 else "stopped"),
                started_at=None if failed else created + dt.timedelta(seconds=seconds),
                stopped_at=created + dt.timedelta(seconds=seconds + (0 if failed else 3600))))
        session.add_all(rows)
        session.add_all([BuildJob(environment=f"env-{number % 40}", state="failed" if number % 10 == 0 else "succeeded",
                                  started_at=now - dt.timedelta(hours=number), not_before=now,
                                  finished_at=now - dt.timedelta(hours=number) + dt.timedelta(seconds=rng.uniform(30, 900)))
                         for number in range(args.rows // 5)])
    with db.engine_for(url).begin() as connection:
        connection.execute(text("ANALYZE"))
    import web.metrics
    from web import create_app

    web.metrics.registry_status = lambda settings: {"ok": True}  # the network call is not what is measured
    client = create_app(settings).test_client()
    headers = {"Authorization": f"Bearer {world['tokens']['root']}"}
    for _ in range(5):
        client.get("/metrics", headers=headers)
    timings = []
    for _ in range(args.scrapes):
        began = time.perf_counter()
        reply = client.get("/metrics", headers=headers)
        timings.append(time.perf_counter() - began)
        assert reply.status_code == 200 and b"asci_session_start_seconds_bucket" in reply.data
    print(json.dumps({"database": "postgresql", "sessions": args.rows, "build_jobs": args.rows // 5, "nodes": 10,
                      "exposition_bytes": len(reply.data), "load_average_before": os.getloadavg()[0],
                      "scrape_ms": summary(timings)}, indent=2))


if __name__ == "__main__":
    main()
