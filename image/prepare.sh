#!/bin/bash
# Make stage-wallmesh self-contained for pi-gen: a wheelhouse with wallmesh
# (built from this checkout) and its Python dependencies, and a copy of the
# systemd units.
#
#   image/prepare.sh [--target-platform manylinux_2_36_aarch64]
#
# With --target-platform, dependency wheels are downloaded for the Pi (arm64);
# packages without a wheel for it (pyalsaaudio) are then built inside the
# image by 02-wallmesh. Without it, wheels are for this machine.
set -eu
cd "$(dirname "$0")/.."
stage=image/stage-wallmesh
wheels="${stage}/02-wallmesh/files/wheels"
pip="${PIP:-.venv/bin/pip}"
rm -rf "${wheels}" "${stage}/03-units/files"
mkdir -p "${wheels}" "${stage}/03-units/files"
"${pip}" wheel --no-deps -w "${wheels}" .
if [ "${1:-}" = "--target-platform" ]; then
  "${pip}" download -d "${wheels}" --only-binary=:all: --platform "$2" --python-version 3.11 \
    -r <(.venv/bin/python -c 'import tomllib;print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))') || true
else
  "${pip}" wheel -w "${wheels}" ".[alsa]"
fi
cp -r systemd "${stage}/03-units/files/systemd"
echo "stage ready: ${stage}"
