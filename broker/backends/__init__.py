"""Session backends behind one interface (``base.Backend``): Docker and Docker Swarm."""
