#!/bin/bash -e
# Host side: writable state lives in /var/lib/wallmesh (the unit service's
# StateDirectory) and logs in RAM; nothing else on the root is written at run
# time, so the root can be mounted read-only after first boot.
set -eu
install -D -m 0644 files/journald.conf "${ROOTFS_DIR}/etc/systemd/journald.conf.d/wallmesh.conf"
fstab="${ROOTFS_DIR}/etc/fstab"
touch "${fstab}"
grep -qE '^\S+\s+/tmp\s' "${fstab}" || echo 'tmpfs /tmp tmpfs nosuid,nodev,size=64M,mode=1777 0 0' >> "${fstab}"
