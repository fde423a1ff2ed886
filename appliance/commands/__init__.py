"""One module per ``wallmesh`` command: ``add_arguments(parser)`` and ``run(args) -> int``."""
