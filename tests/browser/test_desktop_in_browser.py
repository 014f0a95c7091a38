"""In Chromium: log in, launch the example environment, see the desktop through noVNC, stop it;
another user can open neither the desktop page nor the WebSocket; a wrong password is refused."""

from __future__ import annotations

import re

import pytest

from asci.db import session_scope
from broker.models import DesktopSession
from tests.support import browser_log_in as log_in
from tests.support import wait_for_js
from web import vnc_tokens

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

CANVAS_COLOURS = """() => {
  const canvas = document.querySelector('#screen canvas');
  if (!canvas || !canvas.width) return {width: 0, height: 0, colours: 0};
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  return {width: canvas.width, height: canvas.height, colours: seen.size};
}"""

# Opens a WebSocket the way noVNC does and reports whether the proxy let it through.
TRY_WEBSOCKET = """async (url) => await new Promise((resolve) => {
  const socket = new WebSocket(url, ['binary']);
  const timer = setTimeout(() => { socket.close(); resolve('timeout'); }, 10000);
  socket.onopen = () => { clearTimeout(timer); socket.close(); resolve('open'); };
  socket.onerror = () => { clearTimeout(timer); resolve('refused'); };
})"""


def test_launch_see_the_desktop_and_stop(stack, browser, artifacts_dir):
    world, base = stack["world"], stack["url"]
    alice = browser.new_context(viewport={"width": 1280, "height": 860})
    page = alice.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    console = []
    page.on("console", lambda message: console.append(message.text))
    try:
        log_in(page, base, world["names"]["alice"])
        assert page.url == f"{base}/"
        card = page.locator(f'.environment[data-environment="{world["env"]}"]').first
        assert card.locator(".current-version").inner_text() == "v1"
        card.locator(".launch-form button[type=submit]").click()
        page.wait_for_url(re.compile(r".*/sessions/\d+/(progress|desktop)$"))
        session_id = int(re.search(r"/sessions/(\d+)/", page.url).group(1))
        page.wait_for_url(re.compile(r".*/desktop$"), timeout=120_000)
        page.wait_for_selector('#vnc-status[data-state="connected"]', timeout=60_000)
        # the desktop draws within a few seconds of connecting: wait for a varied framebuffer
        wait_for_js(page, f"({CANVAS_COLOURS})().colours >= 8", timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(artifacts_dir / "desktop.png"))
        canvas = page.evaluate(CANVAS_COLOURS)
        # remote resize: the desktop is as wide as the window and as tall as the space under the toolbar
        assert canvas["width"] == 1280 and 760 <= canvas["height"] < 860, canvas
        assert canvas["colours"] >= 8, f"the desktop looks blank: {canvas}"
        assert "Session" not in page.title() or "404" not in page.content()

        # reconnect: a fresh token, connected again
        page.click("#btn-reconnect")
        page.wait_for_selector('#vnc-status[data-state="connected"]', timeout=30_000)

        # a second user: no desktop page, no WebSocket (token for bob, or a forged/garbage one)
        bob = browser.new_context()
        bob_page = bob.new_page()
        log_in(bob_page, base, world["names"]["bob"])
        for path in ("desktop", "progress"):
            reply = bob_page.goto(f"{base}/sessions/{session_id}/{path}")
            assert reply.status == 404
        assert "There is nothing here" in bob_page.content()
        settings = stack["settings"]
        bobs_token = vnc_tokens.make_token(settings, world["ids"]["bob"], session_id)
        for token in (bobs_token, "garbage", ""):
            assert bob_page.evaluate(TRY_WEBSOCKET, f"{stack['ws']}/websockify?token={token}") == "refused", token
        alices_token = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
        assert bob_page.evaluate(TRY_WEBSOCKET, f"{stack['ws']}/websockify?token={alices_token}") == "open"
        bob.close()

        # stop from the viewer
        page.click("#btn-stop")
        page.wait_for_url(re.compile(r".*/sessions$"))
        with session_scope(settings) as dbs:
            assert dbs.get(DesktopSession, session_id).state == "stopped"
        assert page.locator(f'tr[data-session="{session_id}"] .badge').inner_text() == "stopped"
        assert page.evaluate(TRY_WEBSOCKET, f"{stack['ws']}/websockify?token={alices_token}") == "refused"
    except Exception:
        page.screenshot(path=str(artifacts_dir / "failure.png"))
        print("\n".join(console[-40:]))
        raise
    finally:
        alice.close()


def test_a_wrong_password_is_refused(stack, browser, artifacts_dir):
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    try:
        log_in(page, stack["url"], stack["world"]["names"]["alice"], "not-the-password")
        assert page.url.startswith(f"{stack['url']}/login")
        assert page.locator(".alert-danger").inner_text() == "Wrong user name or password."
        page.screenshot(path=str(artifacts_dir / "wrong-password.png"))
        assert page.goto(f"{stack['url']}/sessions").url.startswith(f"{stack['url']}/login")
        # the right password on the same phone: the home page fits the screen, the menu collapses
        log_in(page, stack["url"], stack["world"]["names"]["alice"])
        assert page.url == f"{stack['url']}/"
        assert page.is_visible(".navbar-toggler") and not page.is_visible("#whoami")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        assert page.is_visible(".launch-form button[type=submit]")
        page.screenshot(path=str(artifacts_dir / "home-phone.png"), full_page=True)
    finally:
        context.close()
