"""The Files panel of the desktop page in Chromium: files dropped onto the desktop are uploaded into the
home (a progress row per file, bytes done of total), the button uploads too, a file made inside the
desktop and a folder (as a zip) download through the panel's links; on a phone and a tablet the panel
opens from the menu and fits the screen."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile

import docker
import pytest

from asci.db import session_scope
from broker.models import DesktopSession
from tests.browser.test_sharing_and_screens import launch, profile
from tests.support import browser_log_in as log_in

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

DROP = """([name, bytes]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "application/octet-stream"}));
  const stage = document.getElementById("stage");
  for (const type of ["dragenter", "dragover", "drop"]) {
    stage.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
  }
}"""


def container_of(stack, session_id: int):
    with session_scope(stack["settings"]) as db:
        ident = db.get(DesktopSession, session_id).backend_state["container_id"]
    return docker.from_env().containers.get(ident)


def inside(container, script: str) -> str:
    result = container.exec_run(["sh", "-c", script], user="4242:4242")
    assert result.exit_code == 0, result.output
    return result.output.decode()


def test_drop_upload_and_download_through_the_files_panel(stack, browser, devices, artifacts_dir):
    computer = browser.new_context(viewport={"width": 1100, "height": 760}, accept_downloads=True)
    page = computer.new_page()
    contexts = [computer]
    try:
        session_id = launch(page, stack)
        desktop = container_of(stack, session_id)
        inside(desktop, "mkdir -p ~/results/run1 && head -c 200000 /dev/urandom > ~/results/run1/frames.dat && "
                        "echo made inside > ~/made-inside.txt")
        page.click("#btn-files")
        page.wait_for_selector('#files-list .file-entry[data-name="made-inside.txt"]')
        assert page.is_visible('#files-list .file-entry[data-name="results"][data-type="dir"]')

        # drag and drop onto the desktop: uploaded into the home, a progress row with bytes done of total
        payload = os.urandom(3 << 20)
        page.evaluate(DROP, ["dropped.bin", list(payload)])
        done = page.wait_for_selector('#files-transfers .transfer[data-name="dropped.bin"][data-state="done"]',
                                      timeout=60_000)
        assert done.get_attribute("data-done") == done.get_attribute("data-total") == str(len(payload))
        assert "3.0 MiB of 3.0 MiB" in done.inner_text() and "/s" in done.inner_text()
        assert inside(desktop, "sha256sum ~/dropped.bin | cut -d' ' -f1").strip() == hashlib.sha256(payload).hexdigest()
        assert inside(desktop, "stat -c %u ~/dropped.bin").strip() == "4242"
        page.wait_for_selector('#files-list .file-entry[data-name="dropped.bin"]')
        page.screenshot(path=str(artifacts_dir / "files-panel.png"))

        # the upload button, into a sub-folder the panel shows
        page.click('#files-list .file-entry[data-name="results"] a.name')
        page.wait_for_selector('#files-path[data-path="results"]')
        page.set_input_files("#files-upload", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                       "buffer": b"from the button\n"}])
        page.wait_for_selector('#files-transfers .transfer[data-name="notes.txt"][data-state="done"]')
        assert inside(desktop, "cat ~/results/notes.txt") == "from the button\n"

        # downloads: a folder as a zip, then a file made inside the desktop
        with page.expect_download() as info:
            page.click('#files-list .file-entry[data-name="run1"] button')
        zipped = info.value
        assert zipped.suggested_filename == "run1.zip"
        with zipfile.ZipFile(io.BytesIO(open(zipped.path(), "rb").read())) as archive:
            frames = archive.read("run1/frames.dat")
        assert hashlib.sha256(frames).hexdigest() == \
            inside(desktop, "sha256sum ~/results/run1/frames.dat | cut -d' ' -f1").strip()
        page.click("#files-up")
        page.wait_for_selector('#files-path[data-path=""]')
        with page.expect_download() as info:
            page.click('#files-list .file-entry[data-name="made-inside.txt"] a.name')
        assert open(info.value.path(), "rb").read() == b"made inside\n"
        page.wait_for_selector('#files-transfers .transfer[data-name="made-inside.txt"][data-state="done"]')

        # a phone and a tablet: the panel opens from the toolbar (the phone's menu) and fits the screen
        for name, width, menu in (("Pixel 5", 393, True), ("iPad (gen 7)", 810, False)):
            context = browser.new_context(**profile(devices, name))
            contexts.append(context)
            small = context.new_page()
            log_in(small, stack["url"], stack["world"]["names"]["alice"])
            small.goto(f"{stack['url']}/sessions/{session_id}/desktop")
            small.wait_for_selector('#vnc-status[data-state="connected"]', timeout=90_000)
            if menu:
                small.click("#btn-menu")
                small.wait_for_selector("#toolbar-menu.show:not(.collapsing)")
            small.click("#btn-files")
            small.wait_for_selector('#files-list .file-entry[data-name="dropped.bin"]')
            small.wait_for_selector("#files-panel.show:not(.collapsing)")
            if menu:  # the menu closed, so the panel is not behind it
                small.wait_for_selector("#btn-reconnect", state="hidden")
            box = small.locator("#files-panel").bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (name, box)
            upload = small.locator("#files-upload-label").bounding_box()
            assert upload and upload["x"] + upload["width"] <= width, (name, upload)
            row = small.locator('#files-list .file-entry[data-name="dropped.bin"]').bounding_box()
            assert row["x"] + row["width"] <= width + 1, (name, row)
            small.screenshot(path=str(artifacts_dir / f"files-{name.split()[0].lower()}.png"))
    except Exception:
        page.screenshot(path=str(artifacts_dir / "failure.png"))
        raise
    finally:
        for context in contexts:
            context.close()
