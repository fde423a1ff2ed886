"""Benchmarks behind ``wallmesh bench``; each part's entry point is a ``run(quick) -> list[Result]``
(named in :data:`appliance.commands.bench.PARTS`)."""
