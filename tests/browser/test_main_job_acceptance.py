"""Acceptance: the README's main command, run as root on a fresh data directory under a root-owned home,
driven end to end in Chromium.

`bash .ci/provision demo` (everything already installed, so it goes straight to `asci demo`) on a home
folder of its own; then, as a user would: log in with the printed password, launch the demo environment,
see the drawn desktop with the application's launcher and the Data shortcut on it; publish a new release
of the sample application through the HTTP upload and, running nothing else, see it become the current
version within 60 s; relaunch the previous version by the date it was current; kill a desktop's
container behind the platform's back and see the session end and its resources freed within 30 s.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import docker
import pytest
import requests

from asci.config import PROJECT_ROOT
from tests.support import free_port, need, wait_for_js, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]
PROVISION = PROJECT_ROOT / ".ci" / "provision"
LOGIN = re.compile(r"demo login: (\S+) / (\S+)")
CANVAS_COLOURS = """() => {
  const canvas = document.querySelector('#screen canvas');
  if (!canvas || !canvas.width) return 0;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 16) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  return seen.size;
}"""


_wait = wait_until


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """`bash .ci/provision demo` as root with HOME a fresh root-owned folder (mode 0700, like /root)."""
    need(os.geteuid() == 0, "the main command runs as root")
    home = tmp_path_factory.mktemp("root-home")
    home.chmod(0o700)
    port, ws_port = free_port(19000, 19500), free_port(19500, 20000)
    # A registry of its own, as on a fresh machine (this machine's 127.0.0.1:5000 belongs to the data
    # directory of the set-up that started it): set-up starts it and its proxy for this data directory.
    registry, registry_push = free_port(20000, 20500), free_port(20500, 21000)
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("ASCI_") and key not in ("XDG_DATA_HOME", "VIRTUAL_ENV")}
    environment.update(HOME=str(home), ASCI_WEB_PORT=str(port), ASCI_WEBSOCKIFY_PORT=str(ws_port),
                       ASCI_PUBLIC_URL=f"http://127.0.0.1:{port}", ASCI_BROKER_INSTANCE=f"accept{port}",
                       ASCI_CI_DEBOUNCE_S="1", ASCI_CI_POLL_S="0.5", ASCI_REGISTRY=f"127.0.0.1:{registry}",
                       ASCI_REGISTRY_PUSH=f"127.0.0.1:{registry_push}")
    log = home / "demo.out"
    with log.open("wb") as out:
        process = subprocess.Popen(["bash", str(PROVISION), "demo"], env=environment, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    data_dir = home / ".local" / "share" / "asci"
    info = {"process": process, "home": home, "data_dir": data_dir, "url": f"http://127.0.0.1:{port}",
            "environment": environment, "log": log}
    try:
        match = _wait(lambda: LOGIN.search(log.read_text(errors="replace")) if process.poll() is None else
                      pytest.fail(f"the main command exited:\n{log.read_text()[-4000:]}"), 900,
                      "the demo login to be printed", pause=1)
        info["username"], info["password"] = match.group(1), match.group(2)
        _wait(lambda: _answers(info["url"]), 120, "the web app")
        yield info
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        print(log.read_text(errors="replace")[-5000:])
        _remove_desktops_and_images(environment["ASCI_BROKER_INSTANCE"], environment["ASCI_REGISTRY"])
        _stop_registry(data_dir)


def _registry_front(data_dir: Path) -> Path | None:
    """The registry proxy's front folder that set-up chose for ``data_dir`` (saved in its settings)."""
    import tomllib

    try:
        saved = tomllib.loads((data_dir / "settings.toml").read_text())
    except FileNotFoundError:
        return None
    return Path(saved["registry_front_dir"]) if saved.get("registry_front_dir") else None


def _stop_registry(data_dir: Path) -> None:
    """End the registry and its proxy that set-up started for this data directory (by their pid files)
    and remove the proxy's front folder."""
    import shutil

    for name in ("nginx.pid", "registry.pid"):
        try:
            os.kill(int((data_dir / "registry-auth" / name).read_text().strip()), signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass
    front = _registry_front(data_dir)
    if front is not None and front.parent == Path("/run/asci-registry"):
        time.sleep(1)  # the registry removes its socket as it stops
        shutil.rmtree(front, ignore_errors=True)


def test_the_registry_proxy_workers_are_unprivileged(main_job):
    """Set-up's nginx workers run as www-data, not root, and still serve the builder's pushes (the demo
    was pushed through them); the files they read live outside the root-only data directory."""
    import pwd

    master = int((main_job["data_dir"] / "registry-auth" / "nginx.pid").read_text().strip())
    workers = [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    assert workers, "the proxy has no worker processes"
    www = pwd.getpwnam("www-data").pw_uid
    for pid in workers:
        uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
        assert set(uids.split()[1:]) == {str(www)}, f"nginx worker {pid}: {uids}"
    front = _registry_front(main_job["data_dir"])
    assert front is not None and not str(front).startswith(str(main_job["home"]))
    assert (front / "run" / "registry.sock").is_socket() and (front / "htpasswd").is_file()
    assert not (main_job["data_dir"] / "registry-auth" / "htpasswd").exists()
    tags = requests.get(f"http://{main_job['environment']['ASCI_REGISTRY']}/v2/demo/tags/list", timeout=10)
    assert tags.status_code == 200 and tags.json()["tags"], tags.text


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _remove_desktops_and_images(instance: str, registry: str) -> None:
    """The run's desktops, then every image tagged for its own registry (the demo's versions)."""
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": f"asci.broker={instance}"}):
        container.remove(force=True)
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{registry}/"):
                client.images.remove(tag)
    client.close()


def _asci(main_job, *args: str) -> str:
    result = subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / "asci"), *args], env=main_job["environment"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _log_in(page, main_job) -> None:
    page.goto(f"{main_job['url']}/login")
    page.fill("#username", main_job["username"])
    page.fill("#password", main_job["password"])
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{main_job['url']}/")


def _launch_from_home(page) -> int:
    card = page.locator('.environment[data-environment="demo"]').first
    card.locator(".launch-form button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/sessions/\d+/(progress|desktop)$"))
    session_id = int(re.search(r"/sessions/(\d+)/", page.url).group(1))
    page.wait_for_selector('#vnc-status[data-state="connected"]', timeout=120_000)
    wait_for_js(page, f"({CANVAS_COLOURS})() >= 16", timeout=60_000)
    return session_id


def _session(main_job, token: str, session_id: int) -> dict:
    return requests.get(f"{main_job['url']}/api/sessions/{session_id}",
                        headers={"Authorization": f"Bearer {token}"}, timeout=10).json()


def _sample_release(main_job, version: str) -> Path:
    """The sample application at another version, built with rpmbuild like the demo builds 1.0."""
    spec = (PROJECT_ROOT / "rpmrepo" / "samples" / "asci-demo-viewer.spec").read_text()
    spec = re.sub(r"^Version:\s+\S+", f"Version:        {version}", spec, flags=re.M)
    folder = main_job["home"] / f"release-{version}"
    folder.mkdir()
    (folder / "asci-demo-viewer.spec").write_text(spec)
    top = folder / "top"
    subprocess.run(["rpmbuild", "--quiet", "-bb", "--define", f"_topdir {top}", "--define", f"_rpmdir {folder}",
                    "--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
                    str(folder / "asci-demo-viewer.spec")], check=True, capture_output=True)
    return folder / f"asci-demo-viewer-{version}-1.noarch.rpm"


def test_the_main_command_as_a_user_sees_it(main_job, browser, artifacts_dir):
    url = main_job["url"]
    assert str(main_job["data_dir"]).startswith(str(main_job["home"]))  # the default, under a root-owned home
    token = _asci(main_job, "user", "token", "issue", main_job["username"], "--scope", "sessions",
                  "--scope", "publish:beamline", "--scope", "admin")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    _log_in(page, main_job)
    first_version = page.locator('.environment[data-environment="demo"] .current-version').first.inner_text()
    assert re.fullmatch(r"\d{4}\.\d{2}\.\d{2}\.\d+", first_version)

    # 1. launch: a drawn desktop, the application's launcher and the Data shortcut on it
    session_id = _launch_from_home(page)
    page.wait_for_timeout(3000)
    page.screenshot(path=str(artifacts_dir / "1-desktop.png"))
    container = _container_of(main_job, session_id)
    desktop_files = container.exec_run(["sh", "-c", "ls -1 \"$HOME/Desktop\""], user=container.attrs["Config"]["User"])
    listing = desktop_files.output.decode()
    assert "Data" in listing.split(), listing
    assert any(name.endswith(".desktop") and "viewer" in name.lower() for name in listing.split()), listing
    # ...and in the menu under a category named after the beamline (DEMO)
    directory = container.exec_run(["cat", "/usr/share/desktop-directories/x-asci-demo.directory"]).output.decode()
    assert "Name=DEMO\n" in directory, directory
    box = page.locator("#screen canvas").bounding_box()
    page.mouse.click(box["x"] + 60, box["y"] + 12)  # the panel's Applications menu
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts_dir / "1-applications-menu.png"))
    page.keyboard.press("Escape")
    requests.delete(f"{url}/api/sessions/{session_id}", headers={"Authorization": f"Bearer {token}"}, timeout=60)

    # 2. a new release through the HTTP upload: current within 60 s, nothing else run
    rpm = _sample_release(main_job, "1.1")
    with rpm.open("rb") as handle:
        reply = requests.post(f"{url}/api/repos/beamline/packages", headers={"Authorization": f"Bearer {token}"},
                              files={"file": (rpm.name, handle)}, timeout=60)
    assert reply.status_code == 201, reply.text
    published = time.monotonic()

    def new_current():
        page.goto(f"{url}/")
        current = page.locator('.environment[data-environment="demo"] .current-version').first.inner_text()
        return current if current != first_version else None

    second_version = _wait(new_current, 60, "the new release to become current", pause=2)
    became_current_s = time.monotonic() - published
    page.screenshot(path=str(artifacts_dir / "2-new-version-current.png"))
    print(f"new release current {became_current_s:.1f} s after the upload")

    # 3. the previous version by date: make the first version current two days ago, ask for yesterday
    with sqlite3.connect(main_job["data_dir"] / "asci.db") as db:
        db.execute("UPDATE environment_versions SET became_current_at = ? WHERE version = ?",
                   ((dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                    first_version))
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    card = page.locator('.environment[data-environment="demo"]').first
    card.locator('.on-date-form input[name="on"]').fill(yesterday)
    card.locator(".on-date-form button[type=submit]").click()
    page.wait_for_load_state()
    card = page.locator('.environment[data-environment="demo"]').first
    assert first_version in card.locator(".on-date-result").inner_text()
    assert card.locator('.launch-form select[name="version"]').input_value() == first_version
    old_session = _launch_from_home(page)
    page.screenshot(path=str(artifacts_dir / "3-previous-version-by-date.png"))
    assert _session(main_job, token, old_session)["version"] == first_version != second_version

    # 4. its container killed behind the platform's back: the session ends, its resources are freed
    nodes_before = requests.get(f"{url}/api/nodes", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert nodes_before["nodes"][0]["used"]["sessions"] >= 1
    # its folder (VNC socket and password file) under the data directory's run folder
    folder = main_job["data_dir"] / "run" / f"{main_job['environment']['ASCI_BROKER_INSTANCE']}-s{old_session}"
    assert (folder / "vnc" / "vnc.sock").is_socket()
    _container_of(main_job, old_session).kill()
    killed = time.monotonic()
    ended = _wait(lambda: (s := _session(main_job, token, old_session))["state"] in ("lost", "failed", "stopped")
                  and s, 30, "the killed session to end")
    nodes = requests.get(f"{url}/api/nodes", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert nodes["nodes"][0]["used"]["sessions"] == nodes_before["nodes"][0]["used"]["sessions"] - 1
    killed_session = _session(main_job, token, old_session)
    assert nodes["nodes"][0]["used"]["memory_bytes"] == (nodes_before["nodes"][0]["used"]["memory_bytes"]
                                                         - killed_session["memory_guarantee_bytes"])
    assert not folder.exists(), "the ended session's folder must be removed"
    print(f"killed session {ended['state']} after {time.monotonic() - killed:.1f} s: {ended['message']}")
    page.goto(f"{url}/sessions")
    page.screenshot(path=str(artifacts_dir / "4-session-lost.png"))
    context.close()


def _container_of(main_job, session_id: int):
    client = docker.from_env()
    [container] = client.containers.list(filters={"label": [f"asci.session={session_id}",
                                                            f"asci.broker={main_job['environment']['ASCI_BROKER_INSTANCE']}"]})
    return container
