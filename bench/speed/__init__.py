"""Speed and load: how fast the core, the oracles and the service are, and how they hold up."""
