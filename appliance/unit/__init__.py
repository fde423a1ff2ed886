"""wallmesh unit."""
