"""Click to desktop: how much slower the browser reaches a drawn desktop than the broker does.

    .venv/bin/python bench/bench_click_to_desktop.py [--launches 10] [--out FILE]

A real stack on this machine, like the browser tests: the web app (threaded WSGI server on
127.0.0.1), websockify with the token plugin, the broker on the local Docker daemon (registered
from ``docker info``), the desktop base image pushed to 127.0.0.1:5000, Debian's Chromium driven
headless by Playwright. Alternately, ``--launches`` times each:

* browser path: on the home page, click the environment's Launch button; stop the clock when the
  noVNC canvas shows a drawn desktop (at least 8 distinct colours, checked every 50 ms);
* broker path: ``Broker.launch`` in this process, then VNC frames captured (``asci.rfb.capture``)
  every 50 ms until one is drawn by the same rule.

Every session is stopped before the next launch. Prints (and writes to ``--out``) a JSON summary:
p50 of each path and of their difference.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from asci import db, rfb  # noqa: E402
from asci.config import PROJECT_ROOT, Settings  # noqa: E402
from broker import register_node, service  # noqa: E402
from broker.backends.docker import DockerBackend  # noqa: E402
from broker.models import DesktopSession  # noqa: E402
from builder.base_images import build_base_image, load_definition  # noqa: E402
from builder.docker_engine import push_image  # noqa: E402
from tests.support import add_members, browser_log_in, free_port, make_world, serving  # noqa: E402
from tests.support import user_of as user  # noqa: E402
from web import create_app, vnc_proxy  # noqa: E402

MAIN = "unix:///var/run/docker.sock"
CHROMIUM = "/usr/bin/chromium"
CANVAS_DRAWN = """() => {
  const canvas = document.querySelector('#screen canvas');
  if (!canvas || !canvas.width) return false;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length && seen.size < 8; i += 4) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  return seen.size >= 8;
}"""


def broker_path(broker, settings, world, who: str) -> float:
    began = time.monotonic()
    with db.session_scope(settings) as session_db:
        row = broker.launch(session_db, session_db.merge(user(settings, world, who)), world["env"], "v1", world["e1"])
        socket_path, password, session_id = row.vnc_socket, row.vnc_password, row.id
    while True:
        try:
            if rfb.capture(socket_path, password, timeout=10).is_drawn(8):
                break
        except rfb.RFBError:
            pass
        if time.monotonic() - began > 120:
            raise RuntimeError("no drawn desktop within 120 s (broker path)")
        time.sleep(0.05)
    seconds = time.monotonic() - began
    stop(broker, settings, session_id)
    return seconds


def browser_path(page, base: str, world, broker, settings) -> tuple[float, dict]:
    page.goto(f"{base}/")
    card = page.locator(f'.environment[data-environment="{world["env"]}"]').first
    button = card.locator(".launch-form button[type=submit]")
    button.wait_for()
    began, clicked_at = time.monotonic(), time.time() * 1000
    button.click()
    page.wait_for_function(CANVAS_DRAWN, polling=50, timeout=120_000)
    seconds = time.monotonic() - began
    # where the time went, in seconds after the click: the desktop page's own performance marks
    timing = page.evaluate("""() => ({origin: performance.timeOrigin,
        response: performance.getEntriesByType('navigation')[0].responseEnd,
        dom: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
        marks: Object.fromEntries(performance.getEntriesByType('mark').map((m) => [m.name, m.startTime]))})""")
    marks = {"page_served": timing["response"], "page_parsed": timing["dom"], **timing["marks"]}
    marks = {name: round((timing["origin"] + value - clicked_at) / 1000, 3) for name, value in marks.items()}
    marks["drawn"] = round(seconds, 3)
    session_id = int(re.search(r"/sessions/(\d+)/", page.url).group(1))
    stop(broker, settings, session_id)
    return seconds, marks


def stop(broker, settings, session_id: int) -> None:
    with db.session_scope(settings) as session_db:
        broker.stop_session(session_db, session_db.get(DesktopSession, session_id), "bench")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launches", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    client = docker.DockerClient(base_url=MAIN, version="1.41", timeout=120)
    repository = f"127.0.0.1:5000/asci-bench-{uuid.uuid4().hex[:8]}"
    base = build_base_image(load_definition(PROJECT_ROOT / "recipes", "debian12-mate"), client, log=lambda line: None)
    client.images.get(base).tag(repository, "v1")  # this checkout's base (its entrypoint serves the socket)
    digest = push_image(client, repository, "v1", log=lambda line: None)
    tmp = Path(tempfile.mkdtemp(prefix="asci-bench-click-"))
    settings = Settings(data_dir=tmp / "data", broker_instance=f"click{uuid.uuid4().hex[:6]}", log_format="text",
                        websockify_port=free_port(21000, 29000), session_start_timeout_s=120)
    db.upgrade(settings)
    world = make_world(settings, [], image=f"{repository}:v1", digest=digest)
    add_members(settings, world, 1)
    broker = service.Broker(settings, DockerBackend(timeout=120))
    with db.session_scope(settings) as session_db:
        register_node(settings, session_db, "local", MAIN)
    proxy = vnc_proxy.start(settings, log_path=tmp / "websockify.log")
    result: dict = {"launches": args.launches, "load_average_before": os.getloadavg()}
    browser_s, broker_s, marks = [], [], []
    try:
        with serving(create_app(settings, broker=broker)) as base, sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            context = chromium.new_context(viewport={"width": 1280, "height": 860})
            page = context.new_page()
            page.on("dialog", lambda dialog: dialog.accept())
            browser_log_in(page, base, world["names"]["alice"])
            broker_path(broker, settings, world, "member00")  # warm-up of both paths (page cache, image)
            browser_path(page, base, world, broker, settings)
            for number in range(args.launches):
                seconds, mark = browser_path(page, base, world, broker, settings)
                browser_s.append(seconds)
                marks.append(mark)
                broker_s.append(broker_path(broker, settings, world, "member00"))
                print(f"launch {number + 1}: browser {browser_s[-1]:.2f} s {mark}, broker {broker_s[-1]:.2f} s",
                      file=sys.stderr)
            chromium.close()
    finally:
        vnc_proxy.stop(proxy)
        for container in client.containers.list(all=True, filters={"label": f"asci.broker={settings.broker_instance}"}):
            container.remove(force=True)
        for name in world["names"].values():
            try:
                client.volumes.get(f"asci-home-{name}").remove(force=True)
            except docker.errors.NotFound:
                pass
        client.images.remove(f"{repository}:v1", noprune=True)
        broker.backend.close()
    differences = [a - b for a, b in zip(browser_s, broker_s)]
    result.update({
        "browser_click_to_drawn_s": {"p50": round(statistics.median(browser_s), 3), "min": round(min(browser_s), 3),
                                     "max": round(max(browser_s), 3), "all": [round(x, 3) for x in browser_s]},
        "broker_launch_to_drawn_s": {"p50": round(statistics.median(broker_s), 3), "min": round(min(broker_s), 3),
                                     "max": round(max(broker_s), 3), "all": [round(x, 3) for x in broker_s]},
        "browser_minus_broker_p50_s": round(statistics.median(browser_s) - statistics.median(broker_s), 3),
        "median_of_pairwise_differences_s": round(statistics.median(differences), 3),
        "browser_marks_p50_s": {name: round(statistics.median(m[name] for m in marks if name in m), 3)
                                for name in marks[0]} if marks else {},
        "load_average_after": os.getloadavg()})
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
