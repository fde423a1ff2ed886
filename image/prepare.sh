#!/bin/bash
# Make stage-wallmesh self-contained for pi-gen: a wheelhouse with wallmesh
# (built from this checkout) and its Python dependencies, and a copy of the
# systemd units.
#
#   image/prepare.sh [--target-platform manylinux_2_36_aarch64]
#
# With --target-platform, dependency wheels are downloaded for the Pi (arm64);
# pyalsaaudio, which has no wheel for it, comes as source and is built inside
# the image by 02-wallmesh. Without it, wheels are for this machine.
set -eu
cd "$(dirname "$0")/.."
stage=image/stage-wallmesh
wheels="${stage}/02-wallmesh/files/wheels"
pip="${PIP:-.venv/bin/pip}"
rm -rf "${wheels}" "${stage}/03-units/files"
mkdir -p "${wheels}" "${stage}/03-units/files"
"${pip}" wheel --no-deps -w "${wheels}" .
if [ "${1:-}" = "--target-platform" ]; then
  # pip takes only the tags it is given: the target's manylinux tag and every older one
  platforms=()
  if [[ "$2" =~ ^manylinux_2_([0-9]+)_(.+)$ ]]; then
    for ((minor=BASH_REMATCH[1]; minor>=17; minor--)); do platforms+=(--platform "manylinux_2_${minor}_${BASH_REMATCH[2]}"); done
    platforms+=(--platform "manylinux2014_${BASH_REMATCH[2]}")
  else
    platforms=(--platform "$2")
  fi
  "${pip}" download -d "${wheels}" --only-binary=:all: "${platforms[@]}" --python-version 3.11 --implementation cp \
    -r <(.venv/bin/python -c 'import tomllib;print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))')
  # pyalsaaudio as source, and what builds it: 02-wallmesh compiles it in the image without an index
  "${pip}" download -d "${wheels}" --no-deps --no-binary=pyalsaaudio \
    -r <(.venv/bin/python -c 'import tomllib;print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["optional-dependencies"]["alsa"]))') \
    setuptools wheel
else
  "${pip}" wheel -w "${wheels}" ".[alsa]"
fi
cp -r systemd "${stage}/03-units/files/systemd"
echo "stage ready: ${stage}"
