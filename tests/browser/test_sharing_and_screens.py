"""In Chromium with Playwright's device profiles: the desktop follows the window (remote resize, rotation
included) on a computer, a phone and a tablet, with a collapsed toolbar and an on-screen keyboard on
touch screens; and a desktop shared within its experiment (two browser contexts): the guest sees the
owner's desktop, view-only input changes nothing (the VNC server's doing, not only the viewer's),
control input does, a non-member cannot be invited, revoking disconnects the guest."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from asci import accounts
from asci.db import session_scope
from broker.models import Experiment, ExperimentMember
from tests.support import PASSWORD, wait_for_js
from tests.support import browser_log_in as log_in

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

CANVAS = """() => {
  const canvas = document.querySelector('#screen canvas');
  const screen = document.getElementById('screen');
  if (!canvas || !canvas.width) return {width: 0, height: 0, colours: 0};
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 16) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  const box = canvas.getBoundingClientRect();
  return {width: canvas.width, height: canvas.height, colours: seen.size, shownWidth: box.width,
          shownHeight: box.height, screenWidth: screen.clientWidth, screenHeight: screen.clientHeight};
}"""
# The pixels of a square of the framebuffer (to see whether input changed the desktop).
REGION = """([x, y, size]) => Array.from(document.querySelector('#screen canvas').getContext('2d')
  .getImageData(x, y, size, size).data).join(',')"""
DRAWN = f"(() => {{ const c = ({CANVAS})(); return c.colours >= 8; }})()"
FILLS = f"""(() => {{ const c = ({CANVAS})();
  return c.width === c.screenWidth && c.height === c.screenHeight; }})()"""


def profile(devices: dict, name: str) -> dict:
    options = dict(devices[name])
    options.pop("default_browser_type", None)
    return options


def launch(page, stack) -> int:
    world = stack["world"]
    log_in(page, stack["url"], world["names"]["alice"])
    page.locator(f'.environment[data-environment="{world["env"]}"] .launch-form button[type=submit]').first.click()
    page.wait_for_url(re.compile(r".*/sessions/\d+/desktop$"), timeout=120_000)
    connected(page)
    return int(re.search(r"/sessions/(\d+)/", page.url).group(1))


def connected(page) -> None:
    page.wait_for_selector('#vnc-status[data-state="connected"]', timeout=90_000)
    wait_for_js(page, DRAWN, timeout=30_000)


def fills_the_window(page) -> dict:
    """Wait until the desktop's framebuffer is the size of the viewer, shown unscaled; its figures."""
    wait_for_js(page, FILLS, timeout=20_000)
    canvas = page.evaluate(CANVAS)
    assert (canvas["shownWidth"], canvas["shownHeight"]) == (canvas["width"], canvas["height"]), canvas  # native
    return canvas


def test_the_desktop_follows_the_window_on_a_computer_a_phone_and_a_tablet(stack, browser, devices, artifacts_dir):
    computer = browser.new_context(viewport={"width": 1100, "height": 760})
    page = computer.new_page()
    contexts = [computer]
    try:
        session_id = launch(page, stack)
        first = fills_the_window(page)
        assert first["width"] == 1100 and first["height"] < 760
        page.set_viewport_size({"width": 900, "height": 640})
        second = fills_the_window(page)
        assert second["width"] == 900 and second["height"] < first["height"]
        page.screenshot(path=str(artifacts_dir / "computer-900x640.png"))
        # "Fit to window" instead: the desktop keeps its size and is scaled into the window
        page.click("#btn-scale")
        page.set_viewport_size({"width": 800, "height": 560})
        page.wait_for_timeout(1500)
        scaled = page.evaluate(CANVAS)
        assert scaled["width"] == 900 and scaled["shownWidth"] <= 800
        page.click("#btn-scale")  # and back: it follows the window again
        assert fills_the_window(page)["width"] == 800

        # a phone (Pixel 5): the toolbar is one menu button, an on-screen keyboard button, the desktop fills
        # the screen at its native size, portrait and landscape
        phone = browser.new_context(**profile(devices, "Pixel 5"))
        contexts.append(phone)
        mobile = phone.new_page()
        log_in(mobile, stack["url"], stack["world"]["names"]["alice"])
        mobile.goto(f"{stack['url']}/sessions/{session_id}/desktop")
        connected(mobile)
        portrait = fills_the_window(mobile)
        assert portrait["width"] == 393 and portrait["height"] > portrait["width"]
        assert mobile.is_visible("#btn-menu") and not mobile.is_visible("#btn-reconnect")
        assert mobile.is_visible("#btn-keyboard")
        mobile.screenshot(path=str(artifacts_dir / "phone-portrait.png"))
        mobile.click("#btn-menu")
        mobile.wait_for_selector("#toolbar-menu.show:not(.collapsing)")
        stop = mobile.locator("#btn-stop").bounding_box()  # the whole menu is on screen, one item a line
        assert stop and stop["x"] >= 0 and stop["x"] + stop["width"] <= 393 and stop["y"] + stop["height"] <= 727
        assert mobile.locator("#btn-reconnect").bounding_box()["y"] < stop["y"]
        assert fills_the_window(mobile)["height"] == portrait["height"]  # the menu opens over the desktop
        mobile.screenshot(path=str(artifacts_dir / "phone-menu.png"))
        mobile.click("#btn-menu")
        mobile.wait_for_selector("#btn-reconnect", state="hidden")
        # typing on the on-screen keyboard sends the characters as key presses
        mobile.evaluate("""() => { const rfb = window.asciViewer.rfb, send = rfb.sendKey.bind(rfb);
            window.sentKeys = []; rfb.sendKey = (keysym, code, down) => {
              if (down === undefined) window.sentKeys.push(keysym); return send(keysym, code, down); }; }""")
        mobile.click("#btn-keyboard")
        assert mobile.evaluate("document.activeElement.id") == "touch-input"
        mobile.keyboard.type("ok")
        wait_for_js(mobile, "window.sentKeys.length >= 2")
        assert mobile.evaluate("window.sentKeys") == [ord("o"), ord("k")]
        mobile.set_viewport_size({"width": 727, "height": 393})  # rotated
        landscape = fills_the_window(mobile)
        assert landscape["width"] == 727 and landscape["width"] > landscape["height"]
        mobile.screenshot(path=str(artifacts_dir / "phone-landscape.png"))

        # a tablet (iPad, 810 wide): the whole toolbar, the desktop at its native size
        tablet = browser.new_context(**profile(devices, "iPad (gen 7)"))
        contexts.append(tablet)
        pad = tablet.new_page()
        log_in(pad, stack["url"], stack["world"]["names"]["alice"])
        pad.goto(f"{stack['url']}/sessions/{session_id}/desktop")
        connected(pad)
        assert fills_the_window(pad)["width"] == 810
        assert pad.is_visible("#btn-reconnect") and not pad.is_visible("#btn-menu") and pad.is_visible("#btn-keyboard")
        pad.screenshot(path=str(artifacts_dir / "tablet.png"))
    except Exception:
        page.screenshot(path=str(artifacts_dir / "failure.png"))
        raise
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def carol(stack):
    """A second member of alice's experiment (bob is in another experiment)."""
    settings, world = stack["settings"], stack["world"]
    with session_scope(settings) as db:
        row = accounts.create_user(db, f"carol-{world['suffix']}", PASSWORD)
        e1 = db.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        db.add(ExperimentMember(experiment_id=e1.id, user_id=row.id))
        db.flush()
        return row.username


def region_hash(page, x: int, y: int, size: int = 240) -> str:
    return hashlib.sha256(page.evaluate(REGION, [x, y, size]).encode()).hexdigest()


def steady_region(page, x: int, y: int) -> str:
    """The region's hash once the desktop has stopped changing there (the session may still be settling)."""
    last = region_hash(page, x, y)
    for _ in range(20):
        page.wait_for_timeout(1000)
        now = region_hash(page, x, y)
        if now == last:
            return now
        last = now
    pytest.fail("the owner's desktop never stopped changing")


def test_a_desktop_shared_within_its_experiment(stack, browser, carol, artifacts_dir):
    world = stack["world"]
    owner_context = browser.new_context(viewport={"width": 1280, "height": 860})
    guest_context = browser.new_context(viewport={"width": 1000, "height": 700})
    owner, guest = owner_context.new_page(), guest_context.new_page()
    try:
        session_id = launch(owner, stack)
        owner.click("#btn-share")
        owner.wait_for_selector("#share-panel.show")
        wait_for_js(owner, "document.querySelectorAll('#share-user option').length > 0")
        members = owner.eval_on_selector_all("#share-user option", "options => options.map(o => o.value)")
        assert members == [carol]  # bob, of another experiment, is not offered...
        refused = owner.evaluate("""async ([url, user]) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const reply = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json",
                                            "X-CSRFToken": csrf}, body: JSON.stringify({user, mode: "view"})});
            return [reply.status, (await reply.json()).error]; }""",
                                 [f"/api/sessions/{session_id}/shares", world["names"]["bob"]])
        assert refused[0] == 403 and "not a member" in refused[1]  # ...and cannot be invited
        owner.select_option("#share-user", carol)
        owner.select_option("#share-mode-select", "view")
        owner.click("#btn-share-add")
        owner.wait_for_selector(f'#share-list .share[data-guest="{carol}"]')

        # the guest: "Shared with me", opened through their own login
        log_in(guest, stack["url"], carol)
        guest.click('#shared-with-me .open-shared')
        guest.wait_for_url(re.compile(r".*/shared/\d+$"))
        connected(guest)
        assert guest.inner_text("#share-mode") == "view only" and not guest.is_visible("#btn-stop")
        owner_canvas, guest_canvas = owner.evaluate(CANVAS), guest.evaluate(CANVAS)
        assert (guest_canvas["width"], guest_canvas["height"]) == (owner_canvas["width"], owner_canvas["height"])
        owner.wait_for_selector(f'#share-list .share[data-guest="{carol}"][data-connected="yes"]', timeout=20_000)
        owner.screenshot(path=str(artifacts_dir / "owner-sharing.png"))
        guest.screenshot(path=str(artifacts_dir / "guest-view-only.png"))

        # view-only: even a viewer made to send input (as a tampered browser would) changes nothing
        assert fills_the_window(owner) == owner_canvas  # the share panel opened over the desktop, not resizing it
        assert owner.locator("#vnc-status").bounding_box()["y"] >= 0  # and the toolbar stayed in view
        x, y = owner_canvas["width"] // 2, owner_canvas["height"] // 2
        before = steady_region(owner, x - 120, y - 120)
        guest.evaluate("window.asciViewer.rfb.viewOnly = false")
        box = guest.locator("#screen canvas").bounding_box()
        scale = box["width"] / guest_canvas["width"]
        guest.mouse.click(box["x"] + x * scale, box["y"] + y * scale, button="right")
        guest.wait_for_timeout(3000)
        assert region_hash(owner, x - 120, y - 120) == before, "a view-only guest changed the desktop"

        # control: the same input opens the desktop's menu
        owner.select_option("#share-mode-select", "control")
        owner.click("#btn-share-add")
        owner.wait_for_selector(f'#share-list .share[data-guest="{carol}"]:has-text("control")')
        # the guest's connection is ended by the server and comes back by itself with control
        wait_for_js(guest, "document.getElementById('share-mode').textContent === 'control'", timeout=20_000)
        connected(guest)
        assert guest.evaluate("window.asciViewer.rfb.viewOnly") is False
        box = guest.locator("#screen canvas").bounding_box()
        guest.mouse.click(box["x"] + x * scale, box["y"] + y * scale, button="right")
        changed = False
        for _ in range(20):
            guest.wait_for_timeout(250)
            if region_hash(owner, x - 120, y - 120) != before:
                changed = True
                break
        assert changed, "a guest with control could not use the desktop"
        guest.keyboard.press("Escape")
        guest.screenshot(path=str(artifacts_dir / "guest-control.png"))

        # revoke: the guest is disconnected within seconds and cannot come back
        owner.click(f'#share-list .share[data-guest="{carol}"] .revoke')
        guest.wait_for_selector('#vnc-status[data-state="ended"]', timeout=15_000)
        guest.screenshot(path=str(artifacts_dir / "guest-revoked.png"))
        owner.wait_for_selector(f'#share-list .share[data-guest="{carol}"]', state="detached")
        assert guest.goto(f"{stack['url']}/").ok and not guest.is_visible("#shared-with-me")
    except Exception:
        owner.screenshot(path=str(artifacts_dir / "owner-failure.png"))
        guest.screenshot(path=str(artifacts_dir / "guest-failure.png"))
        raise
    finally:
        owner_context.close()
        guest_context.close()
