"""``GET /metrics``: the platform's Prometheus series (administrators, or a token with the ``metrics`` scope).

Where each value comes from, and why it is right with several processes:

* Everything several processes or machines contribute to is read from the database at scrape time by
  one collector per package (:class:`asci.metrics.CoreCollector`, :class:`broker.BrokerCollector`,
  :class:`ci.CiCollector`): gauges (sessions, nodes and their capacity, the queue, active users,
  heartbeat ages) and the launch and build histograms (derived from the session and job rows that every
  web process and worker writes). Any web process answers the same; nothing is lost on a restart.
* ``asci_http_request_seconds{route,status}`` is per process by nature: each web process observes its
  own requests (waitress serves one process with threads) and Prometheus scrapes each web instance
  (``sum without(instance)`` adds them up).
* ``asci_registry_up`` asks the registry at scrape time (3 s at most).
* When the database does not answer, no caller can be recognised: the reply is ``asci_database_up 0``
  and nothing else (what the anonymous ``/healthz`` already tells), so the alert can fire.

Other parts add their collectors with :func:`register_collector` (the node agent's series join here).
"""

from __future__ import annotations

import time
from typing import Callable

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

import broker
import ci
from asci.accounts import SCOPE_METRICS
from asci.db import ping, session_scope
from asci.errors import AsciError
from asci.http import CSRF_API, blueprint, current_settings, known_args
from asci.metrics import CoreCollector
from asci.services import registry_status
from asci.webauth import require_admin_or

bp = blueprint("metrics", __name__, csrf=CSRF_API)

HTTP_REGISTRY = CollectorRegistry()  # this process's own series
HTTP_SECONDS = Histogram("asci_http_request_seconds", "Seconds the web app took to answer, by route and status class",
                         labelnames=["route", "status"], registry=HTTP_REGISTRY,
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

# (settings, db) -> a collector with .collect(); the database-backed series of each package
CollectorFactory = Callable[[object, object], object]
COLLECTORS: list[CollectorFactory] = [
    lambda settings, db: CoreCollector(db),
    lambda settings, db: broker.BrokerCollector(db),
    lambda settings, db: ci.CiCollector(db),
]


def register_collector(factory: CollectorFactory) -> None:
    """Add ``factory(settings, db)`` (a collector) to every scrape: the hook for the node agent's series."""
    COLLECTORS.append(factory)


class _RegistryCollector:
    def __init__(self, settings) -> None:
        self.settings = settings

    def collect(self):
        family = GaugeMetricFamily("asci_registry_up", "Whether the container registry answers its v2 API (1) or not")
        family.add_metric([], 1 if registry_status(self.settings)["ok"] else 0)
        yield family


def instrument(app: Flask) -> None:
    """Observe every request of ``app`` in ``asci_http_request_seconds``."""

    @app.before_request
    def _began() -> None:
        g.asci_request_began = time.perf_counter()

    @app.after_request
    def _observe(response):
        began = g.pop("asci_request_began", None)
        if began is not None:
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            HTTP_SECONDS.labels(route, f"{response.status_code // 100}xx").observe(time.perf_counter() - began)
        return response


def exposition(settings) -> bytes:
    """Every series, rendered (the database's read in one session, the registry asked after it closed)."""
    registry = CollectorRegistry(auto_describe=False)
    with session_scope(settings) as db:
        for factory in COLLECTORS:
            registry.register(factory(settings, db))
        text = generate_latest(registry)
    outside = CollectorRegistry(auto_describe=False)
    outside.register(_RegistryCollector(settings))
    return text + generate_latest(outside) + generate_latest(HTTP_REGISTRY)


def _database_down() -> bytes:
    registry = CollectorRegistry(auto_describe=False)

    class Down:
        def collect(self):
            family = GaugeMetricFamily("asci_database_up", "Whether the platform's database answers (1) or not (0)")
            family.add_metric([], 0)
            yield family

    registry.register(Down())
    return generate_latest(registry)


@bp.get("/metrics")
def prometheus():
    """The text exposition (Prometheus 0.0.4)."""
    settings = current_settings()
    known_args()
    try:
        ping(settings)
    except AsciError:
        return Response(_database_down(), mimetype=CONTENT_TYPE_LATEST)
    with session_scope(settings) as db:
        require_admin_or(db, SCOPE_METRICS)
    return Response(exposition(settings), mimetype=CONTENT_TYPE_LATEST)
