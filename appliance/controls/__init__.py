"""wallmesh controls."""
