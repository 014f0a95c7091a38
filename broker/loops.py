"""The broker's background loops: reconciliation and culling, each pass recorded as a heartbeat."""

from __future__ import annotations

import json
import threading
from typing import Callable

from sqlalchemy.orm import Session

from asci.db import session_scope
from asci.errors import AsciError
from asci.heartbeats import beat
from broker import logs, usage_history
from broker.cull import cull
from broker.reconcile import reconcile

Pass = Callable[[object, Session], dict]


def run_loop(broker, part: str, one_pass: Pass, interval: float, stop: threading.Event | None = None,
             passes: int | None = None) -> int:
    """Run ``one_pass(broker, db)`` every ``interval`` seconds until ``stop`` (or ``passes`` done).

    Each pass beats under ``part`` with its summary; a pass that fails with an expected error
    (database or node trouble) is logged and beaten as ``error``, and the loop goes on.
    Returns the number of passes run.
    """
    stop = stop or threading.Event()
    done = 0
    while not stop.is_set() and (passes is None or done < passes):
        try:
            with session_scope(broker.settings) as db:
                summary = one_pass(broker, db)
            logs.event(f"{part}.pass", **summary)
            beat(broker.settings, part, json.dumps(summary, sort_keys=True))
        except AsciError as exc:
            logs.event(f"{part}.failed", error=str(exc))
            beat(broker.settings, part, f"pass failed: {exc}", state="error")
        done += 1
        if passes is None or done < passes:
            stop.wait(interval)
    return done


def reconcile_loop(broker, interval: float, stop: threading.Event | None = None, passes: int | None = None) -> int:
    """Reconcile every ``interval`` seconds (part ``reconcile``); each pass may record node usage samples."""
    return run_loop(broker, "reconcile", reconcile_and_sample, interval, stop, passes)


def reconcile_and_sample(broker, db: Session) -> dict:
    """One reconciliation pass, then the node usage sample when one is due (the admin page's history)."""
    summary = reconcile(broker, db)
    return {**summary, "usage_samples": usage_history.sample(broker.settings, db)}


def cull_loop(broker, interval: float, stop: threading.Event | None = None, passes: int | None = None) -> int:
    """Cull idle and expired sessions every ``interval`` seconds (part ``cull``)."""
    return run_loop(broker, "cull", cull, interval, stop, passes)
