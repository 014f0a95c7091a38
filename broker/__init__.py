"""Session broker: sessions, nodes, placement, isolation, GPUs, culling, reconciliation and the JSON API.

The public face, for ``ci`` and ``web`` (nothing else of this package is theirs to import)::

    Broker(settings, backend=None, ready=None, node_sides=None)   # no process-wide one: it is passed
      .launch(db, user, LaunchRequest(environment, version, experiment, gpu=..., cpus=...)) -> DesktopSession
      .launch_in_background(db, user, request) -> session id   # reserved now, the rest on its runner
      .stop(db, session_id, user);  .touch(session_id) -> bool;  .close()
      .vnc_target(session_id, user) -> VncTarget(socket, password, view_password)
    attach(app, broker);  current_broker()  # a Flask app's broker (app.extensions)
    cli_broker(settings)                    # a command line's broker (the click context)
    NodeSide, LocalNodeSide                 # the node's part of a launch: prepare / ready / release
    checked_socket(path)                  # a locked session socket, or None (what websockify may open)
    open_viewer(settings, vnc_socket, viewer="owner")   # a path reaching it: the socket, or a bridge to a node's agent
    agent_relay(settings, vnc_socket, viewer="owner")   # or, for an event loop, the agent's relay request (no bridge)
    get_session(db, session_id, user);  list_sessions(db, user, everyone=False, include_ended=True, limit, after)
    session_page(db, user, ..., limit=100, after=None) -> SessionPage(sessions, next)   # keyset pages
    versions_in_use(db)                   # (environment, version) of every session on record (registry gc)
    experiment_timeline(db, user, code) -> Timeline   # versions members launched, when, how long, by whom
    session_dict(desktop)                 # the one JSON shape of a session
    node_views(db);  experiments_of(db, user_id);  all_experiments(db)
    register_node(settings, db, name, docker_url, ...);  has_nodes(db)   # capacity read from the engine
    import_rows(settings, db, rows, issuer="");  import_file(settings, path);  data_path_problem(path, settings)
    claim_memberships(db, user, verified_email=None)   # memberships pending for a sign-on identity
    reconcile(broker, db);  cull(broker, db)
    reconcile_loop(broker, interval, stop);  cull_loop(broker, interval, stop)   # beat as parts
    probe_desktop(settings, image, label)  # a version launched like a session (ci's smoke gate)
    make_backend(settings)
    blueprint, openapi_fragment()
    files_blueprint                       # files in and out of a running desktop (/api/sessions/<id>/files, /data)
    BrokerCollector(db)                   # its Prometheus series, read from the database;  node_capacity(db)
    usage_history: sample(settings, db), node_history(db, since), launch_hours(db, hours)   # the admin pictures
    thumbnail(settings, session_id, user) -> PNG bytes   # a running desktop's screen, small (owner, admins)
    shares: share, revoke, shares_of, shared_with, members_to_invite, guest_share, guest_target, live_mode,
            owner_may_view, use_viewer_token, rotate_password,
            viewers, connection_opened / _seen / _closed        # desktops shared within an experiment
"""

from broker import shares, usage_history
from broker.http import bp as blueprint
from broker.cull import cull
from broker.errors import (BackendError, BadRequest, BrokerError, Conflict, Forbidden, ForeignServer, ImportFailed,
                           NoCapacity, NodeUnreachable, NotFound, QuotaExceeded, Unsatisfiable)
from broker.data_paths import data_path_problem, root_problem
from broker.files_api import bp as files_blueprint
from broker.experiments_import import claim_memberships, import_file, import_rows
from broker.models import ACTIVE_STATES, FINAL_STATES, NodeState, SessionState, ShareMode
from broker.nodes import has_nodes, register_node
from broker.openapi import fragment as openapi_fragment
from broker.probe import Probe, probe_desktop
from broker.loops import cull_loop, reconcile_loop
from broker.metrics import BrokerCollector, node_capacity
from broker.reconcile import reconcile
from broker.node_paths import agent_relay, open_viewer
from broker.rundir import checked_socket
from broker.handle import attach, cli_broker, current_broker
from broker.launch import LaunchRequest
from broker.node_side import LocalNodeSide, NodeSide
from broker.service import Broker, VncTarget, make_backend
from broker.timeline import Timeline, experiment_timeline
from broker.thumbnails import thumbnail
from broker.views import (ExperimentView, SessionPage, all_experiments, experiments_of, get_session,
                          list_sessions, node_views, session_dict, session_page, versions_in_use)

__all__ = [
    "Broker", "LaunchRequest", "VncTarget", "attach", "current_broker", "cli_broker", "NodeSide", "LocalNodeSide",
    "checked_socket", "open_viewer", "agent_relay", "get_session", "list_sessions",
    "session_page", "SessionPage", "session_dict", "versions_in_use", "experiment_timeline", "Timeline",
    "node_views", "experiments_of", "all_experiments", "ExperimentView", "register_node", "has_nodes",
    "import_rows", "import_file", "data_path_problem", "root_problem", "claim_memberships", "reconcile",
    "reconcile_loop", "cull", "cull_loop",
    "probe_desktop", "Probe", "make_backend",
    "shares", "usage_history", "thumbnail", "ShareMode", "SessionState", "NodeState", "ACTIVE_STATES", "FINAL_STATES", "blueprint",
    "openapi_fragment", "files_blueprint", "BrokerCollector", "node_capacity",
    "BrokerError", "BadRequest", "NotFound", "Forbidden", "Conflict", "QuotaExceeded", "NoCapacity", "Unsatisfiable",
    "BackendError", "NodeUnreachable", "ImportFailed", "ForeignServer",
]
