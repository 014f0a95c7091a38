"""GPU discovery from ``nvidia-smi`` output and GPU slot leasing.

Discovery parses ``nvidia-smi --query-gpu=index,uuid,name,memory.total
--format=csv,noheader`` (run on the node by a short-lived container, or
recorded by the administrator with ``asci node add --nvidia-smi FILE``).
A GPU has ``settings.gpu_share_count`` slots; each GPU session holds one slot
through a :class:`broker.models.GpuLease` row, unique per (node, GPU, slot).
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from broker.errors import BadRequest
from broker.models import GpuLease, Node

QUERY = ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader"]


def parse_nvidia_smi(output: str) -> list[dict]:
    """``[{"index", "uuid", "name", "memory_mib"}]`` from nvidia-smi CSV output (no header)."""
    gpus = []
    for number, line in enumerate(output.splitlines(), 1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4 or not fields[0].isdigit() or not fields[1].startswith(("GPU-", "MIG-")):
            raise BadRequest(f"nvidia-smi output line {number} is not 'index, uuid, name, memory': {line!r}")
        memory = re.match(r"(\d+)\s*MiB", fields[3])
        gpus.append({"index": int(fields[0]), "uuid": fields[1], "name": fields[2],
                     "memory_mib": int(memory.group(1)) if memory else None})
    return gpus


def lease_gpu(db: Session, node: Node, session_id: int, share_count: int) -> dict | None:
    """Hold a free slot of one of ``node``'s GPUs for ``session_id``; None when all are taken.

    The caller holds the node row lock (PostgreSQL) or the database write lock
    (SQLite); the unique constraint catches anything that slips past.
    """
    taken = {(index, slot) for index, slot in db.execute(
        select(GpuLease.gpu_index, GpuLease.slot).where(GpuLease.node_id == node.id))}
    # least-shared GPU first, so sessions spread over GPUs before sharing
    load = {gpu["index"]: sum(1 for index, _ in taken if index == gpu["index"]) for gpu in node.gpus or []}
    for gpu in sorted(node.gpus or [], key=lambda g: (load[g["index"]], g["index"])):
        for slot in range(share_count):
            if (gpu["index"], slot) not in taken:
                db.add(GpuLease(node_id=node.id, gpu_index=gpu["index"], slot=slot, session_id=session_id))
                return gpu
    return None


def free_gpu_slots(db: Session, node: Node, share_count: int) -> int:
    """How many GPU slots of ``node`` are free."""
    used = len(db.scalars(select(GpuLease.id).where(GpuLease.node_id == node.id)).all())
    return len(node.gpus or []) * share_count - used


def release(db: Session, session_id: int) -> None:
    """Drop the GPU lease of a session that ended (if it held one)."""
    db.execute(delete(GpuLease).where(GpuLease.session_id == session_id))
