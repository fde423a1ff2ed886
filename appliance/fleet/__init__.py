"""wallmesh fleet."""
