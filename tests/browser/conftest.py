"""A real ASCI stack for the browser: web app (threaded WSGI server), websockify with the token plugin,
the broker on the local Docker daemon, the base desktop image in the 127.0.0.1:5000 registry, and
Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support import free_port, make_world, need, remove_sessions, serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MAIN = "unix:///var/run/docker.sock"


@pytest.fixture(scope="session")
def playwright():
    need(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright):
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield chromium
    chromium.close()


@pytest.fixture(scope="session")
def devices(playwright) -> dict:
    """Playwright's device profiles (viewport, scale, touch, user agent): "iPhone 13", "iPad (gen 7)"..."""
    return playwright.devices


@pytest.fixture
def stack(tmp_path, pushed_image, make_broker):
    """Settings, world (alice, bob, root with PASSWORD), base URL of the web app, the websockify process."""
    from asci import db
    from asci.config import Settings
    from broker.backends.docker import DockerBackend
    from web import assets, create_app, vnc_proxy

    need(not assets.missing(), "web assets are not installed: run npm ci in web/ (bash .ci/provision setup)")
    reference, digest = pushed_image
    settings = Settings(data_dir=tmp_path / "data", broker_instance=f"web{uuid.uuid4().hex[:8]}",
                        session_start_timeout_s=90, websockify_port=free_port(21000, 29000), log_format="text")
    db.upgrade(settings)
    world = make_world(settings, [dict(name="node1", docker_url=MAIN, cpus=4, memory_bytes=8 << 30)],
                       image=reference, digest=digest)
    broker = make_broker(settings, DockerBackend())
    proxy = vnc_proxy.start(settings, log_path=tmp_path / "websockify.log")
    with serving(create_app(settings, broker=broker)) as url:
        yield {"settings": settings, "world": world, "url": url, "proxy": proxy, "broker": broker,
               "ws": f"ws://127.0.0.1:{settings.websockify_port}", "log": tmp_path / "websockify.log"}
    vnc_proxy.stop(proxy)
    remove_sessions(MAIN, settings.broker_instance, world["names"].values())
    broker.backend.close()
    print((tmp_path / "websockify.log").read_text(errors="replace")[-3000:])
