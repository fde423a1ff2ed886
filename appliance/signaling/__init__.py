"""wallmesh signaling."""
