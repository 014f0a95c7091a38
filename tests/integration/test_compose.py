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
    password, admin_password, secret_key = secrets.token_hex(16), secrets.token_hex(12), secrets.token_hex(32)
    secrets_dir = root / "secrets"  # one file per secret, mounted only into the services that need it
    secrets_dir.mkdir(mode=0o700)
    for name, value in (("postgres_password", password), ("admin_password", admin_password),
                        ("secret_key", secret_key)):
        (secrets_dir / name).write_text(value + "\n")
        (secrets_dir / name).chmod(0o600)
    ports = {"pg": free_port(15400, 15500), "registry": free_port(15500, 15550), "push": free_port(15550, 15600),
             "web": free_port(15600, 15700), "ws": free_port(15700, 15800), "prom": free_port(15800, 15900)}
    project = f"ascict{uuid.uuid4().hex[:6]}"
    env = root / "platform.env"
    env.write_text("\n".join([
        f"ASCI_PLATFORM_IMAGE={platform_image}", f"ASCI_ENV_FILE={env}",
        f"ASCI_DATA_DIR={data}", f"ASCI_RECIPES_DIR={recipes}", f"ASCI_SESSION_RUN_DIR={data}/run",
        f"ASCI_SECRETS_DIR={secrets_dir}", f"PGPORT={ports['pg']}",
        f"ASCI_DATABASE_URL=postgresql://asci@127.0.0.1:{ports['pg']}/asci",
        f"ASCI_REGISTRY=127.0.0.1:{ports['registry']}", f"ASCI_REGISTRY_PUSH=127.0.0.1:{ports['push']}",
        f"ASCI_REGISTRY_CONFIG={data}/registry-auth/registry-config.yml",
        f"ASCI_WEB_PORT={ports['web']}", f"ASCI_WEBSOCKIFY_PORT={ports['ws']}", f"ASCI_PROMETHEUS_PORT={ports['prom']}",
        f"ASCI_PUBLIC_URL=http://127.0.0.1:{ports['web']}",
        f"ASCI_BROKER_INSTANCE={project}", "ASCI_CI_DEBOUNCE_S=0", "ASCI_CI_POLL_S=1", "ASCI_LOG_FORMAT=text",
        "ASCI_ADMIN_USER=admin", ""]))
    info = {"project": project, "env": env, "data": data, "ports": ports, "admin_password": admin_password,
            "url": f"http://127.0.0.1:{ports['web']}",
            "secrets": {"postgres_password": password, "admin_password": admin_password, "secret_key": secret_key}}
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
    _least_privilege(stack)

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


def _containers(stack: dict) -> dict:
    """``{service: docker inspect of its container}`` of the stack."""
    import docker

    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"com.docker.compose.project={stack['project']}"})
        return {c.labels["com.docker.compose.service"]: c.attrs for c in found}
    finally:
        client.close()


def _least_privilege(stack: dict) -> None:
    """Each service has only the mounts, variables and secrets it needs: the registry's containers have
    no Docker socket, no platform secret and no more of the data directory than the registry's own."""
    data, values = str(stack["data"]), stack["secrets"]
    containers = _containers(stack)
    for service, attrs in containers.items():
        environment = "\n".join(attrs["Config"]["Env"] or [])
        for name, value in values.items():  # no secret in any container's environment, nor in the env file
            assert value not in environment, f"{service}: the {name} is in its environment"
            assert value not in stack["env"].read_text(), f"the {name} is in the env file"
    secrets_of = {service: sorted(m["Destination"].rsplit("/", 1)[1] for m in attrs["Mounts"]
                                  if m["Destination"].startswith("/run/secrets/"))
                  for service, attrs in containers.items()}
    assert secrets_of["web"] == ["asci_secret_key", "postgres_password"], secrets_of
    assert secrets_of["init"] == ["asci_admin_password", "postgres_password"], secrets_of
    assert secrets_of["worker"] == secrets_of["loops"] == secrets_of["postgres"] == ["postgres_password"], secrets_of
    for service in ("registry", "registry-proxy"):
        attrs = containers[service]
        mounts = sorted(m["Destination"] for m in attrs["Mounts"])
        assert "/var/run/docker.sock" not in mounts and not any(m.startswith("/run/secrets") for m in mounts)
        allowed = {f"{data}/registry", f"{data}/registry-auth"} if service == "registry" else {f"{data}/registry-auth"}
        assert set(mounts) == allowed, (service, mounts)
        names = {line.split("=", 1)[0] for line in attrs["Config"]["Env"] or []}
        assert not names & {"ASCI_SECRET_KEY", "POSTGRES_PASSWORD", "PGPASSWORD", "ASCI_ADMIN_PASSWORD",
                            "ASCI_DATABASE_URL"}, (service, names)
        assert attrs["HostConfig"]["Binds"] and not any("docker.sock" in b for b in attrs["HostConfig"]["Binds"])
    # the proxy's nginx workers are unprivileged
    workers = _compose(stack, "exec", "-T", "registry-proxy", "ps", "-o", "user=,args=", "-C", "nginx").stdout
    lines = [line.split(None, 1) for line in workers.strip().splitlines()]
    assert any("worker process" in args for _, args in lines), workers
    assert all(user == "www-data" for user, args in lines if "worker process" in args), workers
