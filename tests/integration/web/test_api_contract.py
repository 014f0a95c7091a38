"""Schemathesis against the live application (served on 127.0.0.1), every check on.

The document is /api/openapi.json as the application serves it. Schemathesis generates valid and
invalid requests for every operation (examples, coverage and fuzzing phases, a fixed seed) with an
administrator's token carrying every scope, and checks each answer: no 5xx, status codes,
content types, headers and bodies as documented, valid data accepted, invalid data refused,
405 with Allow for undocumented methods, 401 without credentials.

The world is seeded so that generated requests reach real work: an environment and an experiment
named ``0`` (the shortest names the schema's patterns allow, which the generator tries early), a
running session with id 1 on a node (the broker's fake backend) large enough for any request the
schema allows, and a per-user quota no run reaches.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is a test dependency (pip install -e '.[test]')")

import schemathesis  # noqa: E402
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

from asci import accounts  # noqa: E402
from asci.config import Settings  # noqa: E402
from asci.db import session_scope, upgrade  # noqa: E402
from tests.support import NVIDIA_SMI, FakeBackend, always_ready, free_port, serving  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# per operation and phase; the coverage phase adds its boundary cases on top (~40 s in all here).
# ASCI_CONTRACT_EXAMPLES=200 for a deeper run.
MAX_EXAMPLES = int(os.environ.get("ASCI_CONTRACT_EXAMPLES", "10"))
SEED = 1234
REACHED: dict[str, set[int]] = {}


def _seed(settings: Settings) -> str:
    """The world the generated requests meet; returns an administrator's token with every scope."""
    from broker.gpus import parse_nvidia_smi
    from broker.models import Experiment, ExperimentEnvironment, ExperimentMember, Node
    from builder.models import Environment, EnvironmentVersion, VersionStatus

    with session_scope(settings) as db:
        root = accounts.create_user(db, "root", "root-password", is_admin=True)
        token = accounts.issue_token(db, root, "schemathesis", scopes="sessions admin metrics publish:*")
        env = Environment(name="demo", current_version="v1")  # the document's example names
        db.add(env)
        db.flush()
        db.add(EnvironmentVersion(environment_id=env.id, version="v1", status=VersionStatus.SUCCEEDED,
                                  image_reference="127.0.0.1:5000/asci-contract:v1", image_digest="sha256:" + "0" * 64))
        data = settings.data_roots[0] / "contract"
        data.mkdir(parents=True, exist_ok=True)
        experiment = Experiment(code="DEMO-001", title="contract tests", data_path=str(data))
        db.add(experiment)
        db.flush()
        db.add_all([ExperimentMember(experiment_id=experiment.id, user_id=root.id),
                    ExperimentEnvironment(experiment_id=experiment.id, environment_id=env.id)])
        db.add(Node(name="big", docker_url="unix:///fake-contract.sock", cpus=1e6, memory_bytes=1 << 52,
                    max_sessions=100_000,
                    gpus=parse_nvidia_smi((NVIDIA_SMI / "a100x2.csv").read_text())))
        return token


@pytest.fixture(scope="module")
def contract_app(tmp_path_factory):
    """``(settings, base URL, token, backend)`` of a live application with the seeded world."""
    from broker import Broker
    from web import create_app

    port = free_port(21000, 29000)
    settings = Settings(data_dir=tmp_path_factory.mktemp("contract") / "data", public_url=f"http://127.0.0.1:{port}",
                        session_max_per_user=1000, gpu_share_count=64, log_format="text")
    upgrade(settings)
    token = _seed(settings)
    backend = FakeBackend()
    broker = Broker(settings, backend, ready=always_ready)
    with session_scope(settings) as db:
        root = accounts.get_user(db, "root")
        broker.launch(db, root, "demo", "current", "DEMO-001")  # session 1, running
    try:
        with serving(create_app(settings, broker=broker), port=port) as url:
            yield settings, url, token, backend
    finally:
        broker.close()


@pytest.fixture(scope="module")
def api_schema(contract_app):
    settings, url, token, _ = contract_app
    config = schemathesis.Config.from_dict({
        # a launch whose guarantee exceeds its limit is well-formed but impossible: 422, which the
        # document lists and JSON Schema cannot express
        "checks": {"enabled": True, "positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "5xx"]}},
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES,
                       # the document offers bearer OR cookie; without this schemathesis 4.10 makes both
                       # required parameters and reports the missing cookie as accepted negative data
                       "with-security-parameters": False},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                   "stateful": {"enabled": False}},
        "auth": {"openapi": {"bearer": {"bearer": token}}},
        "request-timeout": 20,
        "seed": SEED,
    })
    return schemathesis.openapi.from_url(f"{url}/api/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_contract(case):
    response = case.call_and_validate()
    REACHED.setdefault(case.operation.label, set()).add(response.status_code)


def test_the_generated_requests_reached_real_work(contract_app):
    """Not only 4xx: launches succeeded (the seeded names were found) and the seeded session was read."""
    settings, url, token, backend = contract_app
    assert REACHED, "the contract test did not run first"
    assert 201 in REACHED.get("POST /api/sessions", set()), REACHED.get("POST /api/sessions")
    assert 200 in REACHED.get("GET /api/sessions/{session_id}", set())
    assert len(backend.created) > 1
