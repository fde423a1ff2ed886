"""``wallmesh bench signaling``: the signaling server under a join storm and at a site's usual pace.

:mod:`.runner` drives a run (its ``run(quick)`` is the part's entry point); below it
:mod:`.figures` turns what was seen into named results, :mod:`.servers` starts the servers
under test, :mod:`.load` is the load-generator process (``python -m
appliance.bench.signaling.load``) with its :mod:`.wsclient` and :mod:`.traffic`, and
:mod:`.plan` says how big the loads are. This file imports none of them, so a load process
loads only what it uses.
"""
