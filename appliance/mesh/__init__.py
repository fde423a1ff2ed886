"""wallmesh mesh."""
