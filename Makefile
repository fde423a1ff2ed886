# The two commands a newcomer needs: `make demo` and `make test`.
# Both set up what they need first (system packages, .venv, the package).
.PHONY: setup demo test bench

setup:
	./scripts/setup

demo: setup
	.venv/bin/wallmesh demo

test: setup
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/wallmesh bench
