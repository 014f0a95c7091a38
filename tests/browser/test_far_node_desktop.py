"""In Chromium, a desktop on a far node (``tests/farnodes.py``: its own engine and agent in namespaces of
their own on 127.0.0.2, TLS only, the platform's data hidden from it): launched from the home page, drawn
through the viewer proxy and the agent's relay, following the window (remote resize), viewed by a share
guest who shows as connected, its idle clock restarted by the viewers; nothing of the session is in the
platform's run folder and no bridge socket either (the viewer proxy opens the agent's relay over TLS from
its event loop); stopped from the page, its folder on the node is gone."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from asci import accounts
from asci.db import session_scope
from broker import register_node
from broker.agent_client import parse_socket_uri
from broker.models import DesktopSession, Experiment, ExperimentMember, SessionShare
from tests.browser.test_sharing_and_screens import CANVAS, connected, fills_the_window
from tests.support import PASSWORD, free_port, make_world, need, serving
from tests.support import browser_log_in as log_in

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def far_stack(tmp_path, far_cluster, desktop_image, make_broker):
    """The web app and the viewer proxy of a platform whose only node is the far node far1, registered
    with its agent; experiment data and homes on the cluster's shared storage; alice and carol members
    of experiment E1."""
    from asci import db
    from asci.config import Settings
    from broker.backends.docker import DockerBackend
    from web import assets, create_app, vnc_proxy

    need(not assets.missing(), "web assets are not installed: run npm ci in web/ (bash .ci/provision setup)")
    settings = Settings(data_dir=tmp_path / "data", broker_instance=f"farweb{uuid.uuid4().hex[:8]}",
                        session_start_timeout_s=90, websockify_port=free_port(21000, 29000), log_format="text",
                        experiment_data_roots=(far_cluster.experiments,), home_root=str(far_cluster.homes),
                        vnc_touch_interval_s=1, viewer_check_interval_s=1)
    db.upgrade(settings)
    reference, digest = desktop_image.split("@")
    world = make_world(settings, [], image=f"{reference}:v1", digest=digest)
    far1 = far_cluster.nodes["far1"]
    with session_scope(settings) as dbs:
        register_node(settings, dbs, far1.name, far1.docker_url, agent=far1.agent, **far1.tls())
        carol = accounts.create_user(dbs, f"carol-{world['suffix']}", PASSWORD)
        e1 = dbs.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        dbs.add(ExperimentMember(experiment_id=e1.id, user_id=carol.id))
        world["names"]["carol"] = carol.username
    broker = make_broker(settings, DockerBackend())
    log = tmp_path / "viewer-proxy.log"
    proxy = vnc_proxy.start(settings, log_path=log)
    try:
        with serving(create_app(settings, broker=broker)) as url:
            yield {"settings": settings, "world": world, "url": url, "node": far1}
    finally:
        vnc_proxy.stop(proxy)
        client = far1.client()
        for container in client.containers.list(all=True, filters={"label": f"asci.broker={settings.broker_instance}"}):
            print(container.name, container.logs(tail=30).decode(errors="replace"))
            container.remove(force=True)
        client.close()
        broker.backend.close()
        print(log.read_text(errors="replace")[-3000:])


def platform_run_entries(run_dir: Path) -> list[str]:
    """Every path under the platform's run folder, relative to it."""
    return sorted(str(path.relative_to(run_dir)) for path in run_dir.rglob("*")) if run_dir.exists() else []


def assert_only_bridges(run_dir: Path, key: str) -> None:
    """The platform's run folder holds the viewer proxy's bridges (``bridges/bridge-*/vnc.sock``) and nothing
    else: no folder, socket or password file of the session ``key``."""
    bridge = re.compile(r"bridges(/bridge-[A-Za-z0-9_]+(/vnc\.sock)?)?")
    entries = platform_run_entries(run_dir)
    assert all(bridge.fullmatch(entry) for entry in entries), entries
    assert not [entry for entry in entries if key in entry], entries


def no_open_bridge(run_dir: Path) -> bool:
    """No bridge socket is open in the platform's run folder (other uses, e.g. a thumbnail, leave none behind)."""
    return not [entry for entry in platform_run_entries(run_dir) if entry.endswith("vnc.sock")]


def last_activity(settings, session_id: int):
    with session_scope(settings) as dbs:
        return dbs.get(DesktopSession, session_id).last_activity


def test_a_desktop_on_a_far_node_in_the_browser(far_stack, browser, artifacts_dir):
    settings, world, node = far_stack["settings"], far_stack["world"], far_stack["node"]
    owner_context = browser.new_context(viewport={"width": 1100, "height": 760})
    guest_context = browser.new_context(viewport={"width": 1000, "height": 700})
    owner, guest = owner_context.new_page(), guest_context.new_page()
    owner.on("dialog", lambda dialog: dialog.accept())
    console = []
    for page in (owner, guest):
        page.on("console", lambda message: console.append(message.text))
    try:
        # launched from the home page; drawn in the browser, through the viewer proxy and the agent's relay
        log_in(owner, far_stack["url"], world["names"]["alice"])
        owner.locator(f'.environment[data-environment="{world["env"]}"] .launch-form button[type=submit]').first.click()
        owner.wait_for_url(re.compile(r".*/sessions/\d+/desktop$"), timeout=120_000)
        session_id = int(re.search(r"/sessions/(\d+)/", owner.url).group(1))
        connected(owner)
        with session_scope(settings) as dbs:
            row = dbs.get(DesktopSession, session_id)
            assert row.node.name == "far1"
            remote = parse_socket_uri(row.vnc_socket)
        assert remote is not None and remote[0] == "far1", row.vnc_socket
        key = remote[1]
        # the session's folder is on the node, held by its agent; here only the bridges
        assert key in node.agent_node().held() and (node.run_dir / key / "vnc").is_dir()
        assert_only_bridges(settings.run_dir, key)
        assert no_open_bridge(settings.run_dir)  # the viewer proxy speaks TLS to the agent itself: no bridge

        # remote resize: the far desktop follows the window
        first = fills_the_window(owner)
        assert first["width"] == 1100 and first["height"] < 760, first
        owner.set_viewport_size({"width": 900, "height": 640})
        second = fills_the_window(owner)
        assert second["width"] == 900 and second["height"] < first["height"], second
        owner.screenshot(path=str(artifacts_dir / "far-desktop-900x640.png"))

        # the idle clock: the connected viewer restarts it (the proxy touches every second here)
        before = last_activity(settings, session_id)
        owner.wait_for_timeout(2500)
        assert last_activity(settings, session_id) > before

        # shared, view only, with carol of the same experiment, who opens it from "Shared with me"
        carol = world["names"]["carol"]
        owner.click("#btn-share")
        owner.wait_for_selector("#share-panel.show")
        owner.wait_for_selector(f'#share-user option[value="{carol}"]', state="attached")
        owner.select_option("#share-user", carol)
        owner.select_option("#share-mode-select", "view")
        owner.click("#btn-share-add")
        owner.wait_for_selector(f'#share-list .share[data-guest="{carol}"]')
        log_in(guest, far_stack["url"], carol)
        guest.click("#shared-with-me .open-shared")
        guest.wait_for_url(re.compile(r".*/shared/\d+$"))
        connected(guest)
        assert guest.inner_text("#share-mode") == "view only"
        owner_canvas, guest_canvas = owner.evaluate(CANVAS), guest.evaluate(CANVAS)
        assert (guest_canvas["width"], guest_canvas["height"]) == (owner_canvas["width"], owner_canvas["height"])
        # who is connected: the owner sees the guest's viewer
        owner.wait_for_selector(f'#share-list .share[data-guest="{carol}"][data-connected="yes"]', timeout=20_000)
        guest.screenshot(path=str(artifacts_dir / "far-desktop-guest.png"))
        owner.screenshot(path=str(artifacts_dir / "far-desktop-owner-sharing.png"))
        assert_only_bridges(settings.run_dir, key)
        assert no_open_bridge(settings.run_dir)
        with session_scope(settings) as dbs:
            share_id = dbs.scalar(select(SessionShare.id).where(SessionShare.session_id == session_id))
        relays = [line for line in (node.root / "agent.log").read_text(errors="replace").splitlines()
                  if "relay opened" in line and f"/{key}/" in line]
        assert any(" for owner from " in line for line in relays), relays
        assert any(f"for share:{share_id} from" in line for line in relays), relays  # the guest, as the share

        # stopped from the page: the session's folder on the node is removed
        owner.click("#btn-stop")
        owner.wait_for_url(re.compile(r".*/sessions$"))
        with session_scope(settings) as dbs:
            assert dbs.get(DesktopSession, session_id).state == "stopped"
        assert key not in node.agent_node().held() and not (node.run_dir / key).exists()
        assert_only_bridges(settings.run_dir, key)
    except Exception:
        for page in (owner, guest):
            status = page.query_selector("#vnc-status")
            if status:
                print(f"{page.url}: status {status.get_attribute('data-state')!r}: {status.inner_text()!r}")
        owner.screenshot(path=str(artifacts_dir / "owner-failure.png"))
        guest.screenshot(path=str(artifacts_dir / "guest-failure.png"))
        print("\n".join(console[-40:]))
        print(node.log_tail())
        raise
    finally:
        owner_context.close()
        guest_context.close()
