"""Loopback helpers."""

from __future__ import annotations

import socket
from typing import Iterable


def free_port(candidates: Iterable[int]) -> int | None:
    """The first port of ``candidates`` that nothing on 127.0.0.1 listens on, or None."""
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return None
