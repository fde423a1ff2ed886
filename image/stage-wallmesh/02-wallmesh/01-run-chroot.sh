#!/bin/bash -e
# In the image: a virtualenv in /opt/wallmesh that also sees the distribution's
# Python packages (picamera2 and libcamera come from Raspberry Pi OS, not PyPI).
set -eu
wheels=/tmp/wallmesh-wheels
python3 -m venv --system-site-packages /opt/wallmesh
pip=/opt/wallmesh/bin/pip
index_opts=(--no-index)
if [ "${WALLMESH_PIP_INDEX:-0}" = 1 ]; then index_opts=(); fi
# pyalsaaudio has no binary wheels on PyPI: build it here unless the
# wheelhouse already has one, then drop the compiler again. Its source
# (pyalsaaudio-*.tar.gz, with setuptools and wheel to build it) may be in the
# wheelhouse too; only without it does pip go to the index.
build_deps=()
if ! ls "${wheels}"/pyalsaaudio-*.whl >/dev/null 2>&1; then
  build_deps=(gcc python3-dev libasound2-dev)
  apt-get update -qq
  apt-get install -y --no-install-recommends "${build_deps[@]}"
  ls "${wheels}"/pyalsaaudio-*.tar.gz >/dev/null 2>&1 || index_opts=()
fi
PIP_NO_CACHE_DIR=1 "${pip}" install --disable-pip-version-check "${index_opts[@]}" --find-links "${wheels}" "wallmesh[alsa]"
if [ "${#build_deps[@]}" -gt 0 ]; then
  apt-get purge -y --auto-remove "${build_deps[@]}"
fi
ln -sf /opt/wallmesh/bin/wallmesh /usr/local/bin/wallmesh
rm -rf "${wheels}"
/opt/wallmesh/bin/wallmesh --version
