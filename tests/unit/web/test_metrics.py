"""``/metrics``: every series an operator needs, parsed from the exposition (prometheus_client's parser),
with values computed from the rows other processes wrote (on SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asci.config import Settings
from asci.db import session_scope, utcnow
from asci.heartbeats import Heartbeat
from broker.models import DesktopSession, Node, SessionState
from builder.models import EnvironmentVersion
from ci.models import BuildJob, JobState
from tests.support import make_world
from web import create_app

NODES = [dict(name="n1", docker_url="unix:///fake1.sock", cpus=16, memory_bytes=64 << 30, max_sessions=10,
              reserve_cpus=2, cpu_overcommit=2.0),
         dict(name="n2", docker_url="unix:///fake2.sock", cpus=4, memory_bytes=8 << 30, max_sessions=10,
              state="down")]


def _scrape(client, token) -> dict:
    reply = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.data
    assert reply.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(reply.data.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted((key, str(value)) for key, value in labels.items())))]


@pytest.fixture
def world_app(db_settings, monkeypatch):
    import web.metrics

    monkeypatch.setattr(web.metrics, "registry_status", lambda settings: {"ok": True})
    world = make_world(db_settings, NODES)
    now = utcnow()
    ago = lambda seconds: now - dt.timedelta(seconds=seconds)  # noqa: E731
    with session_scope(db_settings) as db:
        nodes = {node.name: node.id for node in db.query(Node)}
        version = db.query(EnvironmentVersion).filter_by(version="v1").one().id

        def desktop(user, state, created, started=None, stopped=None, node="n1", cpu=1.0, memory=1 << 30):
            db.add(DesktopSession(user_id=world["ids"][user], experiment_id=1, environment_version_id=version,
                                  state=state, node_id=nodes[node], cpu_guarantee=cpu, memory_guarantee_bytes=memory,
                                  created_at=created, started_at=started, stopped_at=stopped))

        desktop("alice", SessionState.RUNNING, ago(100), started=ago(97.5), cpu=1.5, memory=2 << 30)  # 2.5 s
        desktop("alice", SessionState.RUNNING, ago(50), started=ago(49), cpu=0.5, memory=1 << 30)  # 1 s
        desktop("bob", SessionState.FAILED, ago(40 * 86400), stopped=ago(40 * 86400 - 30))  # failed after 30 s
        desktop("bob", SessionState.STOPPED, ago(3 * 86400), started=ago(3 * 86400 - 7), stopped=ago(2 * 86400))
        desktop("root", SessionState.STARTING, ago(1), node="n2")  # still starting: not a launch outcome yet
        for state, started, finished in ((JobState.SUCCEEDED, ago(400), ago(280)), (JobState.FAILED, ago(100), ago(91)),
                                         (JobState.QUEUED, None, None), (JobState.RUNNING, ago(5), None)):
            db.add(BuildJob(environment=f"env-{state}", state=state, started_at=started, finished_at=finished,
                            not_before=now))
        db.add_all([Heartbeat(part="worker", instance="a:1", beat_at=ago(300)),
                    Heartbeat(part="worker", instance="b:2", beat_at=ago(20)),
                    Heartbeat(part="cull", instance="a:3", beat_at=ago(600))])
    return db_settings, world, create_app(db_settings).test_client()


def test_every_series_is_read_from_the_database(world_app):
    settings, world, client = world_app
    samples = _scrape(client, world["tokens"]["root"])
    assert _value(samples, "asci_sessions", state="running") == 2
    assert _value(samples, "asci_sessions", state="failed") == 1
    assert _value(samples, "asci_sessions", state="lost") == 0
    assert _value(samples, "asci_nodes") == 2 and _value(samples, "asci_nodes_up") == 1
    assert _value(samples, "asci_node_up", node="n2") == 0
    # n1: (16 - 2) * 2 schedulable CPUs; guarantees of its active sessions only
    assert _value(samples, "asci_node_schedulable_cpus", node="n1") == 28
    assert _value(samples, "asci_node_guaranteed_cpus", node="n1") == 2.0
    assert _value(samples, "asci_node_guaranteed_memory_bytes", node="n1") == 3 << 30
    assert _value(samples, "asci_node_schedulable_memory_bytes", node="n2") == 8 << 30
    assert _value(samples, "asci_node_guaranteed_cpus", node="n2") == 1.0  # a starting session holds its guarantee
    # launches: 2.5 s, 1 s and 7 s succeeded; one failed after 30 s
    assert _value(samples, "asci_session_start_seconds_count", outcome="success") == 3
    assert _value(samples, "asci_session_start_seconds_sum", outcome="success") == pytest.approx(10.5, abs=0.01)
    assert _value(samples, "asci_session_start_seconds_bucket", outcome="success", le="1.0") == 1
    assert _value(samples, "asci_session_start_seconds_bucket", outcome="success", le="3.0") == 2
    assert _value(samples, "asci_session_start_seconds_bucket", outcome="success", le="8.0") == 3
    assert _value(samples, "asci_session_start_seconds_bucket", outcome="failure", le="21.0") == 0
    assert _value(samples, "asci_session_start_seconds_bucket", outcome="failure", le="+Inf") == 1
    # builds: one succeeded in 120 s, one failed in 9 s; the queued and the running one are not outcomes
    assert _value(samples, "asci_build_queue_length") == 1 and _value(samples, "asci_builds_running") == 1
    assert _value(samples, "asci_build_seconds_count", outcome="succeeded") == 1
    assert _value(samples, "asci_build_seconds_sum", outcome="succeeded") == pytest.approx(120, abs=0.01)
    assert _value(samples, "asci_build_seconds_bucket", outcome="succeeded", le="60.0") == 0
    assert _value(samples, "asci_build_seconds_bucket", outcome="succeeded", le="120.0") == 1
    assert _value(samples, "asci_build_seconds_bucket", outcome="failed", le="10.0") == 1
    assert _value(samples, "asci_build_seconds_count", outcome="cancelled") == 0
    # active users: alice and root today (bob's last desktop ended two days ago), bob too this month
    assert _value(samples, "asci_active_users", period="day") == 2
    assert _value(samples, "asci_active_users", period="month") == 3
    # the newest beat of any instance counts
    assert _value(samples, "asci_part_heartbeat_age_seconds", part="worker") == pytest.approx(20, abs=5)
    assert _value(samples, "asci_part_heartbeat_age_seconds", part="cull") == pytest.approx(600, abs=5)
    assert _value(samples, "asci_database_up") == 1 and _value(samples, "asci_registry_up") == 1


def test_http_requests_are_observed_by_route_and_status_class(world_app):
    settings, world, client = world_app
    before = _scrape(client, world["tokens"]["root"])
    key = ("asci_http_request_seconds_count", (("route", "/api/sessions/<session_id>"), ("status", "4xx")))
    client.get("/api/sessions/999999", headers={"Authorization": f"Bearer {world['tokens']['alice']}"})
    client.get("/no/such/page")
    after = _scrape(client, world["tokens"]["root"])
    assert after[key] == before.get(key, 0) + 1
    assert after[("asci_http_request_seconds_count", (("route", "unmatched"), ("status", "4xx")))] >= 1
    assert after[("asci_http_request_seconds_count", (("route", "/metrics"), ("status", "2xx")))] >= 1


def test_only_administrators_and_metrics_tokens_read_it(world_app, monkeypatch):
    import web.metrics

    settings, world, client = world_app
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {world['tokens']['alice']}"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    monkeypatch.setattr(web.metrics, "registry_status", lambda settings: {"ok": False})
    assert _value(_scrape(client, world["tokens"]["root"]), "asci_registry_up") == 0


def test_an_unreachable_database_is_reported_and_nothing_else(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", database_url="postgresql://nobody:x@127.0.0.1:1/none")
    client = create_app(settings).test_client()
    reply = client.get("/metrics")
    assert reply.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(reply.data.decode())}
    assert list(families) == ["asci_database_up"]
    assert families["asci_database_up"].samples[0].value == 0
