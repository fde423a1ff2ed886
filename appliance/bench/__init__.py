"""Benchmarks behind ``wallmesh bench``; each part module exposes ``run(quick) -> list[Result]``."""
