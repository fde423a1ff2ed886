"""The fleet: what turns one flashed image into many provisioned units.

``bootfile`` reads the per-card ``wallmesh.toml``; ``identity`` derives the
machine id, board serial, device id and host name; ``atomic`` replaces files
so a power cut never leaves a torn one; ``firstboot`` runs the provisioning
steps; the ``doctor`` subpackage checks a unit and
explains what is wrong.
"""
