"""``wallmesh demo`` and the local test site it is built on (one server, several unit processes)."""
