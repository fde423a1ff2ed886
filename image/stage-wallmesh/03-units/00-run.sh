#!/bin/bash -e
# Host side: install wallmesh's systemd units and snippets from the repository.
set -eu
src="${WALLMESH_SYSTEMD_DIR:-files/systemd}"
for unit in wallmesh-unit.service wallmesh-signal.service wallmesh-firstboot.service; do
  install -D -m 0644 "${src}/${unit}" "${ROOTFS_DIR}/etc/systemd/system/${unit}"
done
install -D -m 0644 "${src}/sysusers.d/wallmesh.conf" "${ROOTFS_DIR}/usr/lib/sysusers.d/wallmesh.conf"
install -D -m 0644 "${src}/tmpfiles.d/wallmesh.conf" "${ROOTFS_DIR}/usr/lib/tmpfiles.d/wallmesh.conf"
install -D -m 0644 "${src}/modules-load.d/wallmesh.conf" "${ROOTFS_DIR}/etc/modules-load.d/wallmesh.conf"
install -D -m 0644 "${src}/turnserver.conf.example" "${ROOTFS_DIR}/opt/wallmesh/share/systemd/turnserver.conf.example"
install -D -m 0644 "${src}/README.md" "${ROOTFS_DIR}/opt/wallmesh/share/systemd/README.md"
