"""Debian's Prometheus with the project's configuration: promtool checks the configuration and runs the rule
tests of deploy/prometheus/tests/; a real Prometheus (127.0.0.1, a free port, its own storage) scrapes the
main job (``asci serve``) with a metrics token read from a file and answers ``up`` and the platform's series
through its HTTP API, with every recording rule and alert evaluating cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from asci import accounts
from asci.config import PROJECT_ROOT, Settings
from asci.db import session_scope
from broker.models import Node
from tests.support import free_port, need, wait_until

pytestmark = pytest.mark.integration
CONFIG_DIR = PROJECT_ROOT / "deploy" / "prometheus"
SERIES = ["asci_sessions", "asci_session_start_seconds_bucket", "asci_build_seconds_bucket", "asci_build_queue_length",
          "asci_nodes_up", "asci_node_up", "asci_node_guaranteed_cpus", "asci_node_schedulable_cpus",
          "asci_node_guaranteed_memory_bytes", "asci_node_schedulable_memory_bytes", "asci_active_users",
          "asci_http_request_seconds_bucket", "asci_part_heartbeat_age_seconds", "asci_database_up",
          "asci_registry_up"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed (apt install prometheus)")
    return path


def _configured(folder: Path, target: str, own_port: int, token: str, interval: str = "15s") -> Path:
    """The project's configuration copied into ``folder``: its target, the token file, the interval."""
    shutil.copytree(CONFIG_DIR, folder, dirs_exist_ok=True)
    config = yaml.safe_load((CONFIG_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [target if job["job_name"] == "asci" else f"127.0.0.1:{own_port}"]}]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    token_file = folder / config["scrape_configs"][0]["authorization"]["credentials_file"]
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return folder / "prometheus.yml"


def test_promtool_checks_the_configuration_and_runs_the_rule_tests(tmp_path):
    promtool = _tool("promtool")
    config = _configured(tmp_path / "prometheus", "127.0.0.1:8080", 9090, "a-token")
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and "rules found" in checked.stdout
    tests = sorted((CONFIG_DIR / "tests").glob("*.yml"))
    assert tests
    result = subprocess.run([promtool, "test", "rules", *map(str, tests)], capture_output=True, text=True,
                            cwd=CONFIG_DIR / "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    # every alert of the rules is exercised by a test that expects it to fire
    rules = yaml.safe_load((CONFIG_DIR / "rules" / "asci.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    fired = {case["alertname"] for test in tests for group in yaml.safe_load(test.read_text())["tests"]
             for case in group.get("alert_rule_test", []) if case["exp_alerts"]}
    assert alerts == fired


@pytest.fixture
def main_job(tmp_path):
    """``asci serve`` on SQLite with a node that does not answer, and a metrics token of a robot user."""
    port, ws_port = free_port(18000, 18500), free_port(18500, 19000)
    settings = Settings(data_dir=tmp_path / "data", web_port=port, websockify_port=ws_port,
                        reconcile_interval_s=1, cull_interval_s=1, ci_poll_s=0.5)
    environment = dict(os.environ, **settings.to_environ())
    subprocess.run([sys.executable, "-m", "asci", "db", "upgrade"], env=environment, check=True, capture_output=True)
    with session_scope(settings) as db:
        robot = accounts.create_user(db, "prometheus")
        token = accounts.issue_token(db, robot, "prometheus", scopes="metrics")
        db.add(Node(name="gone", docker_url=f"unix://{tmp_path}/no-such-docker.sock", cpus=8, memory_bytes=16 << 30))
    process = subprocess.Popen([sys.executable, "-m", "asci", "serve"], env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url + "/healthz"), 60, "the web part to answer")
        yield settings, f"127.0.0.1:{port}", token
    finally:
        process.terminate()
        process.wait(timeout=30)
        print(process.stdout.read()[-4000:])


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def prometheus(main_job, tmp_path):
    binary = _tool("prometheus")
    settings, target, token = main_job
    port = free_port(19000, 19500)
    config = _configured(tmp_path / "prometheus", target, port, token, interval="1s")
    process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _answers(url + "/-/ready"), 60, "Prometheus to be ready")
        assert process.poll() is None, process.stdout.read()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        print(process.stdout.read()[-4000:])


def _query(url: str, expression: str) -> list[dict]:
    reply = requests.get(f"{url}/api/v1/query", params={"query": expression}, timeout=5).json()
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def test_prometheus_scrapes_the_main_job(prometheus):
    url = prometheus
    [up] = wait_until(lambda: [row for row in _query(url, 'up{job="asci"}') if row["value"][1] == "1"], 60,
                      "Prometheus to scrape the platform")
    assert up["metric"]["instance"].startswith("127.0.0.1:")
    # every part of the main job beats; the node that does not answer is down (reconciliation said so)
    parts = wait_until(lambda: {row["metric"]["part"] for row in _query(url, "asci_part_heartbeat_age_seconds")}
                       >= {"web", "websockify", "worker", "reconcile", "cull"}, 60, "every part's heartbeat age")
    assert parts
    wait_until(lambda: _query(url, 'asci_node_up{node="gone"} == 0'), 60, "the unreachable node to be down")
    for name in SERIES:
        assert wait_until(lambda: _query(url, name), 30, f"series {name}"), name
    [schedulable] = _query(url, 'asci_node_schedulable_cpus{node="gone"}')
    assert float(schedulable["value"][1]) == 8
    [database] = _query(url, "asci_database_up")
    assert database["value"][1] == "1"
    # the rules load and evaluate without error (recording rules produce series once their inputs exist)
    def evaluated():
        groups = requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(rule.get("lastEvaluation", "").startswith("2") for rule in rules) else None

    rules = wait_until(evaluated, 30, "every rule to be evaluated")
    assert all(rule["health"] == "ok" for rule in rules), [r for r in rules if r["health"] != "ok"]
    assert {rule["name"] for rule in rules if rule["type"] == "alerting"} >= {"AsciNodeDown", "AsciPartSilent"}
    wait_until(lambda: _query(url, "asci:node_cpu_guarantee_ratio"), 30, "a recording rule's series")
    # the node that does not answer is a pending alert already (it fires after 5 minutes)
    alerts = wait_until(lambda: [alert for alert in requests.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]
                                 ["alerts"] if alert["labels"]["alertname"] == "AsciNodeDown"], 30, "AsciNodeDown")
    assert alerts[0]["labels"]["node"] == "gone" and alerts[0]["state"] == "pending"


def test_the_compose_entrypoint_runs_prometheus_with_the_token_init_writes(main_job, tmp_path):
    """deploy/prometheus-entrypoint (the compose stack's prometheus service) with the token file that
    ``asci deploy init --metrics-token-file`` writes: Prometheus scrapes the platform (15 s interval)."""
    from web.prometheus_token import write_metrics_token

    _tool("prometheus")
    settings, target, _token = main_job
    data = tmp_path / "stack"
    token_file = data / "prometheus" / "metrics-token"
    assert "written" in write_metrics_token(settings, token_file)
    assert "kept" in write_metrics_token(settings, token_file)  # a second init keeps the token
    assert token_file.stat().st_mode & 0o777 == 0o600
    port = free_port(19500, 20000)
    environment = dict(os.environ, ASCI_DATA_DIR=str(data), ASCI_WEB_PORT=target.rsplit(":", 1)[1],
                       ASCI_PROMETHEUS_PORT=str(port), ASCI_SOURCE_DIR=str(PROJECT_ROOT))
    process = subprocess.Popen(["sh", str(PROJECT_ROOT / "deploy" / "prometheus-entrypoint")], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _answers(url + "/-/ready"), 60, "Prometheus to be ready")
        assert process.poll() is None, process.stdout.read()
        wait_until(lambda: [row for row in _query(url, 'up{job="asci"}') if row["value"][1] == "1"], 60,
                   "Prometheus to scrape the platform with the token init wrote")
        assert _query(url, 'asci_database_up{job="asci"} == 1')
    finally:
        process.terminate()
        process.wait(timeout=30)
        print(process.stdout.read()[-4000:])
