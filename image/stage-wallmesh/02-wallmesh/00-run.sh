#!/bin/bash -e
# Host side: hand the wheelhouse (wallmesh and every Python dependency, built
# for the target) to the chroot step. WALLMESH_WHEELS defaults to files/wheels.
set -eu
wheels="${WALLMESH_WHEELS:-$(dirname "$0")/files/wheels}"
if ! ls "${wheels}"/wallmesh-*.whl >/dev/null 2>&1; then
  echo "02-wallmesh: no wallmesh wheel in ${wheels}; run image/build-wheels.sh first" >&2
  exit 1
fi
install -d -m 0755 "${ROOTFS_DIR}/tmp/wallmesh-wheels"
cp "${wheels}"/*.whl "${ROOTFS_DIR}/tmp/wallmesh-wheels/"
# sources of what has no wheel for the target (pyalsaaudio on arm64), built by the next step
if ls "${wheels}"/*.tar.gz >/dev/null 2>&1; then cp "${wheels}"/*.tar.gz "${ROOTFS_DIR}/tmp/wallmesh-wheels/"; fi
