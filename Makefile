# The two commands a newcomer needs: `make demo` and `make test`.
# Both set up what they need first (system packages, .venv, the package).
.PHONY: setup demo lint test bench

setup:
	./scripts/setup

demo: setup
	.venv/bin/wallmesh demo

# ruff and mypy, pinned in the test extra; configured in pyproject.toml. Zero findings, or CI fails.
lint: setup
	.venv/bin/ruff check appliance
	.venv/bin/mypy appliance

test: lint
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/wallmesh bench
