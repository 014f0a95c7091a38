"""The facility deployment: the compose stack of deploy/ brought up with Debian's docker-compose, an
administrator logs in, an RPM is published through the upload API, the worker builds the environment,
a desktop is launched through the API, the stack's Prometheus counts both, and the stack is torn down."""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
import uuid

import pytest
import requests

from asci.config import PROJECT_ROOT
from tests.support import GIT_ENV, csrf_of, free_port, need, remove_sessions, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]
COMPOSE_FILE = PROJECT_ROOT / "deploy" / "docker-compose.yml"


def _compose(stack: dict, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    command = ["docker-compose", "-p", stack["project"], "-f", str(COMPOSE_FILE), "--env-file", str(stack["env"]),
               *args]
    # Compose substitutes ${VARIABLES} from the shell before the env file: the caller's ASCI_* (set-up
    # exports ASCI_DATA_DIR) would mount this machine's data directory instead of the stack's.
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("ASCI_", "POSTGRES_", "PG"))}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env={**clean, "COMPOSE_INTERACTIVE_NO_CLI": "1"})
    if check and result.returncode != 0:
        raise AssertionError(f"docker-compose {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


_wait = functools.partial(wait_until, pause=1.0)


@pytest.fixture(scope="module")
def platform_image(docker_client, base_image):
    """The platform image, built by the project's command (from the offline base; cached by its inputs)."""
    need(shutil.which("docker-compose") is not None, "docker-compose is not installed (apt install docker-compose)")
    import builder

    tag = builder.build_platform_image(docker_client)
    for image in docker_client.images.list(name=builder.platform_image.REPOSITORY):  # earlier checkouts' images
        if tag not in image.tags:
            docker_client.images.remove(image.id, force=True)
    return tag


@pytest.fixture
def stack(platform_image, tmp_path_factory, docker_client):
    """The stack up, with a recipes repository holding the demo recipe; torn down (volumes too) afterwards."""
    import git

    root = tmp_path_factory.mktemp("compose")
    data = root / "data"
    recipes = data / "recipes"
    shutil.copytree(PROJECT_ROOT / "recipes" / "base", recipes / "base")
    (recipes / "environments").mkdir()
    for name in ("schema.yaml", "demo.yaml"):
        shutil.copy(PROJECT_ROOT / "recipes" / "environments" / name, recipes / "environments" / name)
    repo = git.Repo.init(recipes)
    repo.git.add(A=True)
    repo.git.commit("-m", "recipes", env=GIT_ENV)
    password, admin_password = secrets.token_hex(16), secrets.token_hex(12)
    ports = {"pg": free_port(15400, 15500), "registry": free_port(15500, 15550), "push": free_port(15550, 15600),
             "web": free_port(15600, 15700), "ws": free_port(15700, 15800), "prom": free_port(15800, 15900)}
    project = f"ascict{uuid.uuid4().hex[:6]}"
    env = root / "platform.env"
    env.write_text("\n".join([
        f"ASCI_PLATFORM_IMAGE={platform_image}", f"ASCI_ENV_FILE={env}",
        f"ASCI_DATA_DIR={data}", f"ASCI_RECIPES_DIR={recipes}", f"ASCI_SESSION_RUN_DIR={data}/run",
        f"POSTGRES_PASSWORD={password}", f"PGPORT={ports['pg']}",
        f"ASCI_DATABASE_URL=postgresql://asci:{password}@127.0.0.1:{ports['pg']}/asci",
        f"ASCI_REGISTRY=127.0.0.1:{ports['registry']}", f"ASCI_REGISTRY_PUSH=127.0.0.1:{ports['push']}",
        f"ASCI_WEB_PORT={ports['web']}", f"ASCI_WEBSOCKIFY_PORT={ports['ws']}", f"ASCI_PROMETHEUS_PORT={ports['prom']}",
        f"ASCI_PUBLIC_URL=http://127.0.0.1:{ports['web']}", f"ASCI_SECRET_KEY={secrets.token_hex(32)}",
        f"ASCI_BROKER_INSTANCE={project}", "ASCI_CI_DEBOUNCE_S=0", "ASCI_CI_POLL_S=1", "ASCI_LOG_FORMAT=text",
        "ASCI_ADMIN_USER=admin", f"ASCI_ADMIN_PASSWORD={admin_password}", ""]))
    info = {"project": project, "env": env, "data": data, "ports": ports, "admin_password": admin_password,
            "url": f"http://127.0.0.1:{ports['web']}"}
    try:
        _compose(info, "up", "-d")
        yield info
    finally:
        print(_compose(info, "logs", "--no-color", "--tail", "40", check=False).stdout[-6000:])
        for log in sorted((data / "logs").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}")
        _compose(info, "down", "-v", "--remove-orphans", check=False)
        remove_sessions("unix:///var/run/docker.sock", project, ["admin"])
        for image in docker_client.images.list(name=f"127.0.0.1:{ports['registry']}/demo"):
            docker_client.images.remove(image.id, force=True)
        shutil.rmtree(data, ignore_errors=True)


def _answers(url: str, path: str = "/healthz") -> bool:
    try:
        return requests.get(url + path, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_the_compose_stack_serves_builds_and_launches(stack):
    from web.demo import build_sample_rpm

    url = stack["url"]
    _wait(lambda: _answers(url), 180, "the web service")
    services = _compose(stack, "ps", "--services", "--filter", "status=running").stdout.split()
    assert set(services) >= {"postgres", "registry", "registry-proxy", "web", "worker", "loops", "prometheus"}
    # the registry takes anonymous pulls, and refuses anonymous writes
    registry = f"http://127.0.0.1:{stack['ports']['registry']}"
    _wait(lambda: _answers(registry, "/v2/_catalog"), 120, "the registry behind its proxy")
    assert requests.post(f"{registry}/v2/demo/blobs/uploads/", timeout=10).status_code == 401

    # the administrator created by `asci deploy init` logs in through the form
    browser = requests.Session()
    token = csrf_of(browser.get(f"{url}/login", timeout=10).text)
    reply = browser.post(f"{url}/login", data={"username": "admin", "password": stack["admin_password"],
                                               "csrf_token": token}, allow_redirects=False, timeout=10)
    assert reply.status_code == 302
    assert "My experiments" in browser.get(url, timeout=10).text

    # publish the sample application over HTTP: the worker builds the demo environment by itself
    api_token = _compose(stack, "exec", "-T", "web", "asci", "user", "token", "issue", "admin", "--scope", "sessions",
                         "--scope", "publish:beamline", "--scope", "admin").stdout.strip()
    auth = {"Authorization": f"Bearer {api_token}"}
    rpm = build_sample_rpm(stack["data"].parent / "rpms")
    with rpm.open("rb") as handle:
        published = requests.post(f"{url}/api/repos/beamline/packages", headers=auth,
                                  files={"file": (rpm.name, handle)}, timeout=60)
    assert published.status_code == 201, published.text
    built = _wait(lambda: _current_build(url, auth), 600, "the demo environment to be built, gated and current",
                  pause=3)
    assert built["state"] == "succeeded", built

    # an experiment with data under the data root, then a desktop through the API
    experiment_data = stack["data"] / "experiments" / "CT-1"
    experiment_data.mkdir(parents=True)
    (experiment_data / "scan.csv").write_text("angle,intensity\n0,1\n")
    office = stack["data"] / "office.csv"
    office.write_text(f"code,title,data_path,members,environments\nCT-1,compose,{experiment_data},admin,demo\n")
    _compose(stack, "exec", "-T", "web", "asci", "experiment", "import", str(office))
    launched = requests.post(f"{url}/api/sessions", headers=auth, json={"environment": "demo", "experiment": "CT-1"},
                             timeout=300)
    assert launched.status_code == 201, launched.text
    assert launched.json()["state"] == "running" and launched.json()["version"] == built["version"]
    stopped = requests.delete(f"{url}/api/sessions/{launched.json()['id']}", headers=auth, timeout=120)
    assert stopped.json()["state"] == "stopped"

    # the stack's Prometheus scrapes the web app with the token init wrote: the build and the launch are counted
    prometheus = f"http://127.0.0.1:{stack['ports']['prom']}"
    for expression in ('up{job="asci"} == 1', 'asci_build_seconds_count{outcome="succeeded"} >= 1',
                       'asci_session_start_seconds_count{outcome="success"} >= 1', 'asci_database_up == 1'):
        _wait(lambda: _prometheus(prometheus, expression), 90, f"Prometheus to answer {expression}", pause=3)


def _prometheus(url: str, expression: str) -> list:
    try:
        reply = requests.get(f"{url}/api/v1/query", params={"query": expression}, timeout=5).json()
    except requests.RequestException:
        return []
    return reply.get("data", {}).get("result", [])


def _current_build(url: str, auth: dict) -> dict | None:
    builds = requests.get(f"{url}/api/builds?environment=demo", headers=auth, timeout=10).json().get("builds", [])
    finished = [job for job in builds if job["state"] in ("succeeded", "failed")]
    if finished and finished[0]["state"] == "failed":
        pytest.fail(f"the demo build failed: {finished[0]['error']}")
    return finished[0] if finished else None
