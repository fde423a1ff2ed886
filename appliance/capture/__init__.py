"""wallmesh capture."""
