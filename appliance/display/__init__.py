"""wallmesh display."""
