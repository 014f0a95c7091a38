"""The supervisor of asci serve with stand-in parts: restarts with back-off, records crashes, stops all."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from sqlalchemy import select

from asci.db import session_scope
from asci.errors import ConfigError
from asci.heartbeats import Heartbeat, recent
from web.platform import PARTS, Supervisor, chosen_parts


def _commands(settings, part):
    if part == "worker":
        return [sys.executable, "-c", "import sys; sys.exit(3)"]  # crashes at once, every time
    return [sys.executable, "-c", "import time; time.sleep(120)"]


def test_a_crashing_part_is_restarted_with_back_off_and_everything_stops(settings):
    settings = settings.replace(restart_backoff_max_s=0.4)
    lines: list[str] = []
    supervisor = Supervisor(settings, ("worker", "cull"), echo=lines.append, command=_commands)
    thread = threading.Thread(target=supervisor.run, kwargs={"poll_s": 0.05})
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and supervisor.children["worker"].restarts < 3:
            time.sleep(0.05)
        assert supervisor.children["worker"].restarts >= 3
        assert supervisor.children["worker"].delay == 0.4  # 1 s capped by the setting
        cull = supervisor.children["cull"].process
        assert cull.poll() is None and supervisor.children["cull"].restarts == 0
        with session_scope(settings) as db:  # each crash is recorded; the older crashes are pruned
            worker_states = [row.state for row in db.scalars(select(Heartbeat).where(Heartbeat.part == "worker"))]
        assert worker_states.count("crashed") == 1
    finally:
        supervisor.stop()
        thread.join(timeout=30)
    assert cull.poll() is not None, "stop must end every part"
    assert any("worker exited with status 3" in line for line in lines)
    with session_scope(settings) as db:
        worker_states = [row.state for row in db.scalars(select(Heartbeat).where(Heartbeat.part == "worker"))]
        assert worker_states in (["crashed"], ["stopped"])  # the last instance, ended: shown once
        statuses = {status.part: status for status in recent(db) if status.part == "cull"}
        assert statuses["cull"].state == "stopped"


def test_parts_are_chosen_from_the_setting_and_the_flags(settings):
    assert chosen_parts(settings) == PARTS
    assert chosen_parts(settings.replace(serve_parts=("worker", "web"))) == ("web", "worker")
    assert chosen_parts(settings, without=("worker",)) == ("web", "websockify", "reconcile", "cull")
    with pytest.raises(ConfigError, match="unknown part"):
        chosen_parts(settings, only=("web", "ftp"))
    with pytest.raises(ConfigError, match="nothing left"):
        chosen_parts(settings, only=("web",), without=("web",))
