"""The CPUs and memory a session asks for: parsed, checked and defaulted."""

from __future__ import annotations

import math
import re

from asci.config import Settings
from asci.openapi import integer_range_regex
from broker.errors import BadRequest

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(value) -> int:
    """Bytes from an integer or a string such as ``4g``, ``512MiB``, ``2048m``."""
    if isinstance(value, bool):
        raise BadRequest(f"memory: expected bytes or a size such as 4g, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise BadRequest(f"memory: expected bytes or a size such as 4g, got {value!r}")
        return int(value)
    match = _MEMORY.match(str(value))
    if not match:
        raise BadRequest(f"memory: expected bytes or a size such as 4g, got {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def resources(settings: Settings, cpus=None, memory=None) -> tuple[float, int]:
    """Checked (cpus, memory bytes), defaults filled in; absurd values are a BadRequest."""
    if cpus is None:
        cpus = settings.session_default_cpus
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float, str)):
        raise BadRequest(f"cpus: expected a number, got {cpus!r}")
    try:
        cpus = float(cpus)
    except (ValueError, OverflowError):
        raise BadRequest(f"cpus: expected a number, got {cpus!r}") from None
    if not math.isfinite(cpus) or not 0.1 <= cpus <= settings.session_max_cpus:
        raise BadRequest(f"cpus: expected between 0.1 and {settings.session_max_cpus:g}, got {cpus!r}")
    memory_bytes = parse_memory(memory) if memory is not None else settings.session_default_memory_mb << 20
    if not 256 << 20 <= memory_bytes <= settings.session_max_memory_mb << 20:
        raise BadRequest(f"memory: expected between 256 MiB and {settings.session_max_memory_mb} MiB, "
                         f"got {memory_bytes >> 20} MiB")
    return cpus, memory_bytes


def memory_pattern(settings: Settings) -> str:
    """The memory sizes the session API takes as a string: whole MiB (``512m``) or GiB (``4g``) within
    the configured limits (the OpenAPI document carries the same pattern)."""
    max_mb = settings.session_max_memory_mb
    parts = [integer_range_regex(min(256, max_mb), max_mb) + "[mM]"]
    if max_mb >= 1024:
        parts.append(integer_range_regex(1, max_mb // 1024) + "[gG]")
    return "^(?:" + "|".join(parts) + ")$"


def check_api_resources(settings: Settings, cpus, memory) -> None:
    """The session API's stricter reading of cpus (a JSON number) and memory (bytes as a JSON integer,
    or a string of :func:`memory_pattern`); ranges are checked by :func:`resources`."""
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float))):
        raise BadRequest(f"cpus: expected a number, got {cpus!r}")
    if memory is None or (isinstance(memory, int) and not isinstance(memory, bool)):
        return
    if not isinstance(memory, str) or not re.fullmatch(memory_pattern(settings), memory):
        raise BadRequest(f"memory: expected bytes, or whole MiB or GiB such as 512m or 4g, got {memory!r}")
