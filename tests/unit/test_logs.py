"""Structured logs: one JSON object per line, with the same field set for events and library lines."""

from __future__ import annotations

import io
import json
import logging

import pytest

from asci import logs


@pytest.fixture
def captured():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level, old_part = root.level, logs.current_part()
    root.setLevel(logging.INFO)
    logs._state["part"] = "worker"
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)
    logs._state["part"] = old_part


def test_an_event_carries_the_fixed_fields_and_its_ids(captured):
    logs.event("build.finished", build=7, environment="mx", state="succeeded", session=None, error=None)
    [line] = captured()
    assert list(line)[:6] == ["time", "level", "part", "event", "logger", "message"]
    assert line["part"] == "worker" and line["event"] == "build.finished" and line["level"] == "info"
    assert line["build"] == 7 and line["environment"] == "mx" and line["state"] == "succeeded"
    assert "session" not in line  # an id that does not apply is left out
    assert line["time"].endswith("+00:00")


def test_a_library_line_and_an_exception_are_json_too(captured):
    logging.getLogger("waitress").warning("queue depth %d", 5)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("asci.ci.worker").exception("job %s crashed", 3)
    library, crash = captured()
    assert library["event"] == "log" and library["logger"] == "waitress" and library["message"] == "queue depth 5"
    assert crash["level"] == "error" and "ValueError: boom" in crash["exception"]


def test_the_broker_events_keep_their_shape(captured):
    from broker import logs as broker_logs

    broker_logs.event("session.running", session=3, node="n1", seconds=1.5)
    [line] = captured()
    assert (line["logger"], line["event"], line["session"], line["node"]) == ("asci.broker", "session.running", 3, "n1")


def test_configure_installs_one_handler_and_switches_format():
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        logs.configure("json", part="cull")
        logs.configure("text", part="cull")
        ours = [handler for handler in root.handlers if getattr(handler, "_asci", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, logs.TextFormatter)
        assert logs.current_part() == "cull"
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
