"""The node agent (``asci node agent``): the node-side half of a session's isolation, on the node.

``make_server(listen, tls_dir, docker_url, run_dir)`` gives the TLS server (``serve_forever``);
``protocol`` is the wire format the platform's client (``broker.agent_client``) speaks.
"""

from broker.agent.protocol import MAX_LINE, ProtocolError
from broker.agent.server import Agent, AgentServer, make_home, make_server, pump

__all__ = ["Agent", "AgentServer", "make_server", "make_home", "pump", "MAX_LINE", "ProtocolError"]
