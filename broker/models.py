"""Broker tables: experiments and their members/environments, nodes, sessions, GPU leases.

GPU collisions are prevented by the database: a lease row exists for every
active GPU session's slot (unique per node, GPU index and slot), deleted when
the session ends. Desktops hold no TCP port: each serves VNC on a Unix socket
in a folder of its own (``sessions.vnc_socket``, see ``broker.rundir``).

The VNC passwords are stored in ``sessions.vnc_password`` (the web viewer needs
it) and ``sessions.vnc_view_password`` (view-only, for sharing); they are random
per session, never logged and never returned by the API, and only useful
together with the websockify token route, the one way to the socket.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (JSON, BigInteger, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from asci.accounts import User
from asci.db import Base, UTCDateTime, utcnow



class SessionState(StrEnum):
    """Where a desktop session is in its life."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    LOST = "lost"


class NodeState(StrEnum):
    """Whether a node's engine answers."""

    UP = "up"
    DOWN = "down"


class CapacitySource(StrEnum):
    """Where a node's CPUs and memory come from: its engine (kept current by reconciliation) or an
    administrator (kept as given)."""

    ENGINE = "engine"
    MANUAL = "manual"


ACTIVE_STATES = (SessionState.PENDING, SessionState.STARTING, SessionState.RUNNING, SessionState.STOPPING)
FINAL_STATES = (SessionState.STOPPED, SessionState.FAILED, SessionState.LOST)


class Experiment(Base):
    """A beamline experiment: who may use which environments on which data."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    data_path: Mapped[str] = mapped_column(String(1000), default="")
    starts_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    ends_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list["ExperimentMember"]] = relationship(cascade="all, delete-orphan")
    environments: Mapped[list["ExperimentEnvironment"]] = relationship(cascade="all, delete-orphan")


class ExperimentMember(Base):
    """A user taking part in an experiment."""

    __tablename__ = "experiment_members"
    __table_args__ = (UniqueConstraint("experiment_id", "user_id", name="uq_experiment_members_experiment_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)

    user: Mapped[User] = relationship()


class PendingMember(Base):
    """A membership the user office granted to a single sign-on identity that has no account yet.

    ``external_id`` (``<issuer>|<subject>``) or ``email``; it becomes an :class:`ExperimentMember`
    at that identity's next sign-on (an e-mail address only when the provider says it is verified).
    """

    __tablename__ = "experiment_pending_members"
    __table_args__ = (UniqueConstraint("experiment_id", "external_id", name="uq_experiment_pending_members_identity"),
                      UniqueConstraint("experiment_id", "email", name="uq_experiment_pending_members_email"))

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(400), nullable=True)
    email: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExperimentEnvironment(Base):
    """An environment an experiment may launch (any of its versions)."""

    __tablename__ = "experiment_environments"
    __table_args__ = (UniqueConstraint("experiment_id", "environment_id",
                                       name="uq_experiment_environments_experiment_environment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"), index=True)


class Node(Base):
    """A Docker host (or Swarm node) sessions run on, with its capacity.

    ``cpus`` and ``memory_bytes`` are what the engine reports (``docker info``), unless an
    administrator gave them (``capacity_source`` manual). Placement may hand out guarantees up to
    ``(cpus - reserve_cpus) * cpu_overcommit`` and ``(memory_bytes - reserve_memory_bytes) *
    memory_overcommit`` (``broker.placement.schedulable``).
    """

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    docker_url: Mapped[str] = mapped_column(String(255))
    tls_ca: Mapped[str] = mapped_column(String(500), default="")
    tls_cert: Mapped[str] = mapped_column(String(500), default="")
    tls_key: Mapped[str] = mapped_column(String(500), default="")
    tls_verify: Mapped[bool] = mapped_column(Boolean, default=True)
    cpus: Mapped[float] = mapped_column(Float, default=8.0)
    memory_bytes: Mapped[int] = mapped_column(BigInteger, default=16 << 30)
    capacity_source: Mapped[str] = mapped_column(String(16), default=CapacitySource.MANUAL)
    reserve_cpus: Mapped[float] = mapped_column(Float, default=0.0)
    reserve_memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu_overcommit: Mapped[float] = mapped_column(Float, default=1.0)
    memory_overcommit: Mapped[float] = mapped_column(Float, default=1.0)
    max_sessions: Mapped[int] = mapped_column(Integer, default=100)
    gpus: Mapped[list] = mapped_column(JSON, default=list)  # [{"index", "uuid", "name", "memory_mib"}]
    state: Mapped[str] = mapped_column(String(16), default=NodeState.UP)
    last_seen: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # --- nodes ---
    agent: Mapped[str] = mapped_column(String(255), default="")  # HOST:PORT of its agent ("": a local node)
    drained: Mapped[bool] = mapped_column(Boolean, default=False)  # no new sessions; running ones stay
    agent_state: Mapped[str] = mapped_column(String(16), default="")  # up / down at the last reconcile ("": unknown)


class DesktopSession(Base):
    """One desktop container of one environment version for one user.

    ``cpu_guarantee`` and ``memory_guarantee_bytes`` count against the node's capacity when placing;
    ``cpus`` and ``memory_bytes`` are the limits the container enforces.
    """

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    environment_version_id: Mapped[int] = mapped_column(
        ForeignKey("environment_versions.id", ondelete="RESTRICT"), index=True)
    environment: Mapped[str] = mapped_column(String(64), default="")  # name, recorded at launch
    version: Mapped[str] = mapped_column(String(32), default="")
    image: Mapped[str] = mapped_column(String(400), default="")  # registry/name@sha256:...
    image_digest: Mapped[str] = mapped_column(String(80), default="")
    node_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True, index=True)
    vnc_socket: Mapped[str] = mapped_column(String(500), default="")  # host path of its VNC socket on the node
    vnc_password: Mapped[str] = mapped_column(String(64), default="")
    vnc_view_password: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16), default=SessionState.PENDING, index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    cpus: Mapped[float] = mapped_column(Float, default=2.0)  # limit
    memory_bytes: Mapped[int] = mapped_column(BigInteger, default=4 << 30)  # limit
    cpu_guarantee: Mapped[float] = mapped_column(Float, default=0.25)
    memory_guarantee_bytes: Mapped[int] = mapped_column(BigInteger, default=512 << 20)
    gpu: Mapped[bool] = mapped_column(Boolean, default=False)
    gpu_uuid: Mapped[str] = mapped_column(String(80), default="")
    backend_state: Mapped[dict] = mapped_column(JSON, default=dict)  # opaque: what the backend returned
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_activity: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    warned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship()
    experiment: Mapped[Experiment] = relationship()
    node: Mapped[Node | None] = relationship()


class ShareMode(StrEnum):
    """What a guest may do in a shared desktop (enforced by the VNC server's two passwords)."""

    VIEW = "view"
    CONTROL = "control"


class SessionShare(Base):
    """The owner of a running desktop lets an experiment colleague (the guest) view or control it.

    A share is live while it is not revoked and its session runs; it ends with the session.
    """

    __tablename__ = "session_shares"
    __table_args__ = (Index("ix_session_shares_guest_id_session_id", "guest_id", "session_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    guest_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(16), default=ShareMode.VIEW)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    session: Mapped[DesktopSession] = relationship()
    guest: Mapped[User] = relationship()


class ViewerConnection(Base):
    """One viewer's WebSocket to a desktop (its owner's or a guest's), as websockify saw it.

    ``last_seen_at`` is renewed while the connection lasts; ``ended_at`` is set when it closes (or
    when it stopped being renewed, for a connection whose process died).
    """

    __tablename__ = "viewer_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    share_id: Mapped[int | None] = mapped_column(ForeignKey("session_shares.id", ondelete="CASCADE"), nullable=True,
                                                 index=True)
    connected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship()


class GpuLease(Base):
    """One of a GPU's sharing slots held by an active session."""

    __tablename__ = "gpu_leases"
    __table_args__ = (UniqueConstraint("node_id", "gpu_index", "slot", name="uq_gpu_leases_node_gpu_slot"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    gpu_index: Mapped[int] = mapped_column(Integer)
    slot: Mapped[int] = mapped_column(Integer)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), unique=True)


class ViewerTokenUse(Base):
    """A viewer token that has opened its WebSocket: each token opens one connection, once.

    Rows older than the token lifetime are of no further use (the token has expired) and are deleted
    as new ones are written (``broker.shares.use_viewer_token``)."""

    __tablename__ = "viewer_token_uses"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class NodeUsageSample(Base):
    """What one node had handed out, and could hand out, at one moment (``broker.usage_history``).

    Recorded by reconciliation every ``usage_sample_interval_s``, pruned after ``usage_history_days``:
    the administration page draws guarantees against schedulable capacity over time from these rows.
    """

    __tablename__ = "node_usage_samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    node: Mapped[str] = mapped_column(String(64))  # the node's name (a sample outlives a removed node)
    sessions: Mapped[int] = mapped_column(Integer, default=0)
    guaranteed_cpus: Mapped[float] = mapped_column(Float, default=0.0)
    schedulable_cpus: Mapped[float] = mapped_column(Float, default=0.0)
    guaranteed_memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    schedulable_memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
