#!/bin/bash
# Run a pi-gen stage's steps into an existing root file system, the way
# pi-gen's run_stage does, without the rest of pi-gen. Used by the image test
# (a Debian 12 root made with debootstrap) and handy for trying a stage out.
#
#   image/run-stage.sh [--raspberry-pi-os] STAGE_DIR ROOTFS_DIR
#
# For each step directory in order: NN-packages / NN-packages-nr are installed
# with apt in the chroot (only when missing), NN-run.sh runs on the host with
# ROOTFS_DIR set and the step directory as working directory, NN-run-chroot.sh
# runs inside the chroot. Steps with a SKIP file are skipped, and steps marked
# RASPBERRY_PI_OS_ONLY unless --raspberry-pi-os is given.
set -eu
rpi_os=0
if [ "${1:-}" = "--raspberry-pi-os" ]; then rpi_os=1; shift; fi
stage="$(cd "$1" && pwd)"
export ROOTFS_DIR="$(cd "$2" && pwd)"

mounted=()
cleanup() {
  rm -f "${ROOTFS_DIR}/usr/sbin/policy-rc.d"
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mount_into() {  # type-or-bind source target
  mkdir -p "${ROOTFS_DIR}/$3"
  if [ "$1" = bind ]; then mount --bind "$2" "${ROOTFS_DIR}/$3"; else mount -t "$1" "$2" "${ROOTFS_DIR}/$3"; fi
  mounted+=("${ROOTFS_DIR}/$3")
}
mount_into proc proc proc
mount_into sysfs sys sys
mount_into bind /dev dev
mount_into bind /dev/pts dev/pts
# no daemons start while packages are installed into the image
printf '#!/bin/sh\nexit 101\n' > "${ROOTFS_DIR}/usr/sbin/policy-rc.d"
chmod 0755 "${ROOTFS_DIR}/usr/sbin/policy-rc.d"

on_chroot() {
  chroot "${ROOTFS_DIR}" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    WALLMESH_PIP_INDEX="${WALLMESH_PIP_INDEX:-0}" /bin/bash -e "$@"
}
export -f on_chroot

apt_updated=0
install_packages() {  # file [--no-install-recommends]
  local want=() missing=() pkg
  read -r -a want <<<"$(sed 's/#.*//' "$1" | tr '\n' ' ')"
  for pkg in "${want[@]}"; do
    on_chroot -c "dpkg-query -W -f='\${Status}' ${pkg} 2>/dev/null | grep -q 'install ok installed'" || missing+=("${pkg}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  cp -L /etc/resolv.conf "${ROOTFS_DIR}/etc/resolv.conf" 2>/dev/null || true
  if [ "${apt_updated}" = 0 ]; then on_chroot -c "apt-get update -qq"; apt_updated=1; fi
  on_chroot -c "apt-get install -y -qq ${2:-} ${missing[*]}"
}

for step in "${stage}"/*/; do
  step="${step%/}"
  name="$(basename "${step}")"
  if [ -f "${step}/SKIP" ]; then echo "== ${name}: skipped (SKIP)"; continue; fi
  if [ -f "${step}/RASPBERRY_PI_OS_ONLY" ] && [ "${rpi_os}" = 0 ]; then
    echo "== ${name}: skipped (Raspberry Pi OS packages; checkable only on a Pi or in pi-gen)"; continue
  fi
  echo "== ${name}"
  pushd "${step}" >/dev/null
  for i in $(seq -w 0 99); do
    [ -f "${i}-packages-nr" ] && install_packages "${i}-packages-nr" --no-install-recommends
    [ -f "${i}-packages" ] && install_packages "${i}-packages"
    [ -x "${i}-run.sh" ] && "./${i}-run.sh"
    [ -f "${i}-run-chroot.sh" ] && on_chroot < "${i}-run-chroot.sh"
  done
  popd >/dev/null
done
echo "== stage done"
