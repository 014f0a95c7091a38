"""A session's resources: a guarantee (what placement counts) and a limit (what the container enforces).

Each value comes from the launch request, else from the environment's recipe (``resources:``), else
from the settings (``session_cpu_guarantee`` ...). A limit above the per-user cap
(``session_max_cpus``, ``session_max_memory_mb``) or a guarantee above its limit, asked for
explicitly, is refused (a guarantee above its limit as Unprocessable, 422); a default guarantee above an
explicit limit is lowered to the limit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from asci.config import Settings
from asci.openapi import integer_range_regex
from broker.errors import BadRequest, Unprocessable

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MIN_CPU_LIMIT, MIN_CPU_GUARANTEE = 0.1, 0.01
MIN_MEMORY_LIMIT, MIN_MEMORY_GUARANTEE = 256 << 20, 16 << 20


@dataclass(frozen=True)
class Resources:
    """What one session is guaranteed and limited to."""

    cpu_guarantee: float
    cpu_limit: float
    memory_guarantee_bytes: int
    memory_limit_bytes: int


def parse_memory(value, name: str = "memory") -> int:
    """Bytes from an integer or a string such as ``4g``, ``512MiB``, ``2048m``."""
    if isinstance(value, bool):
        raise BadRequest(f"{name}: expected bytes or a size such as 4g, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise BadRequest(f"{name}: expected bytes or a size such as 4g, got {value!r}")
        return int(value)
    match = _MEMORY.match(str(value))
    if not match:
        raise BadRequest(f"{name}: expected bytes or a size such as 4g, got {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _cpus(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRequest(f"{name}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise BadRequest(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise BadRequest(f"{name}: expected a number, got {value!r}")
    return number


def resources(settings: Settings, cpus=None, memory=None, cpu_guarantee=None, memory_guarantee=None,
              defaults=None) -> Resources:
    """Checked guarantee and limit; ``cpus``/``memory`` are the requested limits, ``defaults`` the
    recipe's (``builder.ResourceDefaults``, or None)."""
    cap_cpus, cap_memory = settings.session_max_cpus, settings.session_max_memory_mb << 20
    recipe = defaults

    def default(field: str, fallback, cap):
        value = getattr(recipe, field, None) if recipe is not None else None
        return min(value if value is not None else fallback, cap)

    cpu_limit = _cpus(cpus, "cpus") if cpus is not None else default("cpu_limit", settings.session_cpu_limit, cap_cpus)
    if not MIN_CPU_LIMIT <= cpu_limit <= cap_cpus:
        raise BadRequest(f"cpus: expected between {MIN_CPU_LIMIT:g} and {cap_cpus:g}, got {cpus!r}")
    if cpu_guarantee is not None:
        cpu_floor = _cpus(cpu_guarantee, "cpu_guarantee")
        if cpu_floor > cpu_limit:
            raise Unprocessable(f"cpu_guarantee {cpu_floor:g} is above the CPU limit {cpu_limit:g}")
        if not MIN_CPU_GUARANTEE <= cpu_floor:
            raise BadRequest(f"cpu_guarantee: expected between {MIN_CPU_GUARANTEE:g} and the CPU limit "
                             f"{cpu_limit:g}, got {cpu_guarantee!r}")
    else:
        cpu_floor = min(default("cpu_guarantee", settings.session_cpu_guarantee, cap_cpus), cpu_limit)
    memory_limit = (parse_memory(memory) if memory is not None
                    else default("memory_limit_bytes", settings.session_memory_limit_mb << 20, cap_memory))
    if not MIN_MEMORY_LIMIT <= memory_limit <= cap_memory:
        raise BadRequest(f"memory: expected between {MIN_MEMORY_LIMIT >> 20} MiB and {cap_memory >> 20} MiB, "
                         f"got {memory_limit >> 20} MiB")
    if memory_guarantee is not None:
        memory_floor = parse_memory(memory_guarantee, "memory_guarantee")
        if memory_floor > memory_limit:
            raise Unprocessable(f"memory_guarantee {memory_floor >> 20} MiB is above the memory limit "
                                f"{memory_limit >> 20} MiB")
        if not MIN_MEMORY_GUARANTEE <= memory_floor:
            raise BadRequest(f"memory_guarantee: expected between {MIN_MEMORY_GUARANTEE >> 20} MiB and the memory "
                             f"limit {memory_limit >> 20} MiB, got {memory_floor >> 20} MiB")
    else:
        memory_floor = min(default("memory_guarantee_bytes", settings.session_memory_guarantee_mb << 20, cap_memory),
                           memory_limit)
    return Resources(round(cpu_floor, 3), round(cpu_limit, 3), int(memory_floor), int(memory_limit))


def memory_pattern(settings: Settings, minimum_mb: int = MIN_MEMORY_LIMIT >> 20) -> str:
    """The memory sizes the session API takes as a string: whole MiB (``512m``) or GiB (``4g``) within
    the configured limits (the OpenAPI document carries the same pattern)."""
    max_mb = settings.session_max_memory_mb
    parts = [integer_range_regex(min(minimum_mb, max_mb), max_mb) + "[mM]"]
    if max_mb >= 1024:
        parts.append(integer_range_regex(1, max_mb // 1024) + "[gG]")
    return "^(?:" + "|".join(parts) + ")$"


def check_api_resources(settings: Settings, cpus, memory, cpu_guarantee=None, memory_guarantee=None) -> None:
    """The session API's stricter reading of CPUs (JSON numbers) and memory (bytes as a JSON integer,
    or a string of :func:`memory_pattern`); ranges are checked by :func:`resources`."""
    for name, value in (("cpus", cpus), ("cpu_guarantee", cpu_guarantee)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise BadRequest(f"{name}: expected a number, got {value!r}")
    for name, value, minimum in (("memory", memory, MIN_MEMORY_LIMIT), ("memory_guarantee", memory_guarantee,
                                                                        MIN_MEMORY_GUARANTEE)):
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            continue
        if not isinstance(value, str) or not re.fullmatch(memory_pattern(settings, minimum >> 20), value):
            raise BadRequest(f"{name}: expected bytes, or whole MiB or GiB such as 512m or 4g, got {value!r}")
