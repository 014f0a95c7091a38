"""Where a process keeps its broker: no registry of its own, the broker is held by whoever runs it.

A Flask app holds its broker in ``app.extensions`` (:func:`attach`, read by :func:`current_broker`
in a request); a CLI command gets the one of its click context (:func:`cli_broker`, made on first
use and shared by the nested contexts of one command line). Everything else is handed its broker.
"""

from __future__ import annotations

import click
from flask import Flask, current_app

from asci.config import Settings
from broker.service import Broker

EXTENSION = "asci.broker"


def attach(app: Flask, broker: Broker) -> Broker:
    """Make ``broker`` the one of ``app``'s requests."""
    app.extensions[EXTENSION] = broker
    return broker


def current_broker() -> Broker:
    """The broker of the app handling the current request."""
    return current_app.extensions[EXTENSION]


def cli_broker(settings: Settings) -> Broker:
    """The broker of the running command line (for ``settings``; made on first use)."""
    meta = click.get_current_context().meta
    broker = meta.get(EXTENSION)
    if broker is None or broker.settings != settings:
        broker = meta[EXTENSION] = Broker(settings)
    return broker
