"""Session broker: sessions, nodes, placement, ports, GPUs, culling, reconciliation and the JSON API."""
