"""A real ASCI stack for the browser: web app (threaded WSGI server), websockify with the token plugin,
the broker on the local Docker daemon, the base desktop image in the 127.0.0.1:5000 registry, and
Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from asci import accounts
from asci.db import session_scope
from tests.conftest import free_port, remove_sessions

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "browser-pass-1"
MAIN = "unix:///var/run/docker.sock"


def _need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def browser():
    _need(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def stack(tmp_path, pushed_image):
    """Settings, world (alice, bob, root with PASSWORD), base URL of the web app, the websockify process."""
    from asci import db
    from asci.config import Settings
    from broker import service
    from broker.backends.docker import DockerBackend
    from tests.unit.broker.fakes import make_world
    from web import assets, create_app, vnc_proxy

    _need(not assets.missing(), "web assets are not installed: run npm ci in web/ (bash .ci/provision setup)")
    reference, digest = pushed_image
    settings = Settings(data_dir=tmp_path / "data", broker_instance=f"web{uuid.uuid4().hex[:8]}",
                        session_start_timeout_s=90, websockify_port=free_port(21000, 29000), log_format="text")
    db.upgrade(settings)
    low = free_port(6500, 6900)
    world = make_world(settings, [dict(name="node1", docker_url=MAIN, port_min=low, port_max=low + 9, cpus=4,
                                       memory_bytes=8 << 30)], image=reference, digest=digest,
                       data_path=str(tmp_path))
    with session_scope(settings) as dbs:
        for who in ("alice", "bob", "root"):
            dbs.get(accounts.User, world["ids"][who]).set_password(PASSWORD)
    broker = service.Broker(settings, DockerBackend())
    service.install(settings, broker)
    proxy = vnc_proxy.start(settings, log_path=tmp_path / "websockify.log")
    app = create_app(settings)
    port = free_port(21000, 29000)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"settings": settings, "world": world, "url": f"http://127.0.0.1:{port}", "proxy": proxy,
           "ws": f"ws://127.0.0.1:{settings.websockify_port}", "log": tmp_path / "websockify.log"}
    server.shutdown()
    vnc_proxy.stop(proxy)
    service.install(settings, None)
    remove_sessions(MAIN, settings.broker_instance, world["names"].values())
    broker.backend.close()
    print((tmp_path / "websockify.log").read_text(errors="replace")[-3000:])


def log_in(page, base_url: str, username: str, password: str = PASSWORD):
    page.goto(f"{base_url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_load_state()
