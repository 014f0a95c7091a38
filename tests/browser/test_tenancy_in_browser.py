"""In Chromium, under the pages' Content-Security-Policy: a guest once given control, then downgraded (and
then revoked and shared with again as view), tries everything it was handed (its used token, its full
password with a fresh view token) and the desktop does not change; and a viewer whose WebSocket is cut
server-side (the viewer proxy killed) says it is reconnecting and comes back by itself with a fresh token
once the proxy is back."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.browser.test_sharing_and_screens import CANVAS, carol, connected, launch, region_hash, steady_region
from tests.support import browser_log_in as log_in
from tests.support import wait_for_js

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]
__all__ = ["carol"]  # the fixture, used here too

# Opens a second noVNC connection in the page with a given token and password; once connected (which must
# not happen) it right-clicks the middle of the desktop. Answers how it ended.
ATTEMPT = """async ([wsBase, token, password]) => {
  const { default: RFB } = await import(document.getElementById('viewer').dataset.rfbUrl);
  const target = document.createElement('div');
  target.style.width = '320px'; target.style.height = '200px';
  document.body.appendChild(target);
  return await new Promise((resolve) => {
    const rfb = new RFB(target, wsBase + '/websockify?token=' + encodeURIComponent(token),
                        { credentials: { password }, shared: true });
    let outcome = 'disconnected before authentication';
    rfb.addEventListener('credentialsrequired', () => rfb.sendCredentials({ password }));
    rfb.addEventListener('securityfailure', () => { outcome = 'authentication failed'; });
    rfb.addEventListener('connect', () => {
      outcome = 'connected';
      const [w, h] = [rfb._fbWidth, rfb._fbHeight];
      RFB.messages.pointerEvent(rfb._sock, w >> 1, h >> 1, 4);
      RFB.messages.pointerEvent(rfb._sock, w >> 1, h >> 1, 0);
      rfb._sock.flush();
      setTimeout(() => { rfb.disconnect(); }, 1500);
    });
    rfb.addEventListener('disconnect', () => { target.remove(); resolve(outcome); });
    setTimeout(() => resolve(outcome + ' (timed out)'), 20000);
  });
}"""
FRESH_TOKEN = """async (url) => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const reply = await fetch(url, { method: 'POST', headers: { 'X-CSRFToken': csrf, Accept: 'application/json' } });
  return await reply.json();
}"""


def websocket_tokens(page) -> list[str]:
    """The tokens of every WebSocket the page opens, in order (filled as it goes)."""
    tokens: list[str] = []
    page.on("websocket", lambda ws: tokens.append(re.search(r"token=([^&]+)", ws.url).group(1)))
    return tokens


def share(owner, guest_name: str, mode: str) -> None:
    owner.select_option("#share-user", guest_name)
    owner.select_option("#share-mode-select", mode)
    owner.click("#btn-share-add")
    owner.wait_for_selector(f'#share-list .share[data-guest="{guest_name}"]:has-text("{mode}")')


def test_a_downgraded_or_revoked_guest_gets_no_control_from_what_it_was_handed(stack, browser, carol, artifacts_dir):
    owner_context = browser.new_context(viewport={"width": 1280, "height": 860})
    guest_context = browser.new_context(viewport={"width": 1000, "height": 700})
    owner, guest = owner_context.new_page(), guest_context.new_page()
    csp_errors: list[str] = []
    for page in (owner, guest):
        page.on("console", lambda message: csp_errors.append(message.text)
                if "Content Security Policy" in message.text else None)
    guest_tokens = websocket_tokens(guest)
    try:
        session_id = launch(owner, stack)
        owner.click("#btn-share")
        owner.wait_for_selector("#share-panel.show")
        wait_for_js(owner, "document.querySelectorAll('#share-user option').length > 0")
        share(owner, carol, "control")
        log_in(guest, stack["url"], carol)
        guest.click('#shared-with-me .open-shared')
        guest.wait_for_url(re.compile(r".*/shared/\d+$"))
        connected(guest)
        assert guest.inner_text("#share-mode") == "control"
        share_url = guest.url
        held = {"password": guest.evaluate("window.asciViewer.password"), "token": guest_tokens[-1]}
        # one more control token, fetched and kept unused (as a tampered browser would)
        spare = guest.evaluate(FRESH_TOKEN, f"{share_url}/token")
        assert spare["mode"] == "control" and spare["password"] == held["password"]

        canvas = owner.evaluate(CANVAS)
        x, y = canvas["width"] // 2, canvas["height"] // 2

        def nothing_changes(step: str, attempts: list[tuple[str, str]]) -> None:
            before = steady_region(owner, x - 120, y - 120)
            for token, password in attempts:
                outcome = guest.evaluate(ATTEMPT, [stack["ws"], token, password])
                assert outcome != "connected", f"{step}: a guest opened the desktop with control"
            guest.wait_for_timeout(2000)
            assert region_hash(owner, x - 120, y - 120) == before, f"{step}: the guest changed the desktop"

        # downgrade: the guest's viewer comes back view-only by itself...
        share(owner, carol, "view")
        wait_for_js(guest, "document.getElementById('share-mode').textContent === 'view only'", timeout=20_000)
        connected(guest)
        # ...and nothing it held gives control: its used token, its spare control token with the full password,
        # a fresh view token with the full password
        fresh = guest.evaluate(FRESH_TOKEN, f"{share_url}/token")
        assert fresh["mode"] == "view" and fresh["password"] != held["password"]
        nothing_changes("after the downgrade", [(held["token"], held["password"]), (spare["token"], held["password"]),
                                                (fresh["token"], held["password"])])
        guest.screenshot(path=str(artifacts_dir / "downgraded-guest.png"))

        # revoke, then share again view-only: the same
        spare = guest.evaluate(FRESH_TOKEN, f"{share_url}/token")
        owner.click(f'#share-list .share[data-guest="{carol}"] .revoke')
        guest.wait_for_selector('#vnc-status[data-state="ended"]', timeout=15_000)
        owner.wait_for_selector(f'#share-list .share[data-guest="{carol}"]', state="detached")
        share(owner, carol, "view")
        guest.goto(f"{stack['url']}/")
        guest.click('#shared-with-me .open-shared')
        guest.wait_for_url(re.compile(r".*/shared/\d+$"))
        connected(guest)
        again = guest.evaluate(FRESH_TOKEN, f"{guest.url}/token")
        assert again["mode"] == "view"
        nothing_changes("after revoke and a view share", [(spare["token"], held["password"]),
                                                          (again["token"], held["password"])])
        # the owner's own viewer was never cut off, and reconnects with the current password
        assert owner.evaluate("window.asciViewer.status") == "connected"
        owner.click("#btn-reconnect")
        connected(owner)
        assert owner.evaluate("window.asciViewer.password") != held["password"]
        assert not csp_errors, csp_errors
    except Exception:
        owner.screenshot(path=str(artifacts_dir / "owner-failure.png"))
        guest.screenshot(path=str(artifacts_dir / "guest-failure.png"))
        raise
    finally:
        owner_context.close()
        guest_context.close()


def test_the_viewer_reconnects_by_itself_with_a_fresh_token_when_its_connection_is_cut(stack, browser, artifacts_dir):
    from web import vnc_proxy

    context = browser.new_context(viewport={"width": 1000, "height": 700})
    page = context.new_page()
    tokens = websocket_tokens(page)
    states: list[str] = []
    restarted = None
    try:
        launch(page, stack)
        page.evaluate("""() => { window.seenStates = [];
            new MutationObserver(() => { const el = document.getElementById('vnc-status');
              window.seenStates.push(el.dataset.state + ': ' + el.textContent); })
            .observe(document.getElementById('vnc-status'), { attributes: true, childList: true }); }""")
        before = len(tokens)
        # the network drop: the viewer proxy dies, the server side of the WebSocket is gone at once
        os.kill(stack["proxy"].pid, signal.SIGKILL)
        stack["proxy"].wait(timeout=10)
        page.wait_for_selector('#vnc-status[data-state="reconnecting"]', timeout=10_000)
        assert "reconnecting" in page.inner_text("#vnc-status")
        page.screenshot(path=str(artifacts_dir / "reconnecting.png"))
        page.wait_for_timeout(1500)  # it keeps trying while nothing answers...
        assert page.evaluate("window.asciViewer.status") == "reconnecting"
        restarted = vnc_proxy.start(stack["settings"], log_path=stack["log"])  # ...and the network is back
        connected(page)
        states = page.evaluate("window.seenStates")
        assert len(tokens) > before + 1 and len(set(tokens)) == len(tokens), "reconnected without a fresh token"
        assert any(state.startswith("reconnecting") for state in states), states
    except Exception:
        page.screenshot(path=str(artifacts_dir / "failure.png"))
        print(states)
        raise
    finally:
        if restarted is not None:
            vnc_proxy.stop(restarted)
        context.close()
