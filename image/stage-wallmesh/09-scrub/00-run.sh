#!/bin/bash -e
# Host side, last: nothing per-device and nothing secret leaves in the image.
# Each card gets its machine id, host keys, random seed and wallmesh identity
# at its own first boot.
set -eu
r="${ROOTFS_DIR}"
printf 'uninitialized\n' > "${r}/etc/machine-id"
if [ -e "${r}/var/lib/dbus/machine-id" ] && [ ! -L "${r}/var/lib/dbus/machine-id" ]; then
  rm -f "${r}/var/lib/dbus/machine-id"
  ln -s /etc/machine-id "${r}/var/lib/dbus/machine-id"
fi
rm -f "${r}"/etc/ssh/ssh_host_*
if [ -f "${r}/lib/systemd/system/ssh.service" ]; then
  # Debian's sshd needs host keys: make them at the first start, per card.
  install -d "${r}/etc/systemd/system/ssh.service.d"
  printf '[Service]\nExecStartPre=/usr/bin/ssh-keygen -A\n' > "${r}/etc/systemd/system/ssh.service.d/wallmesh-host-keys.conf"
fi
rm -f "${r}/var/lib/systemd/random-seed" "${r}/var/lib/systemd/credential.secret"
rm -f "${r}/var/lib/NetworkManager/secret_key" "${r}"/var/lib/NetworkManager/*.lease "${r}"/var/lib/dhcp/*.leases
rm -rf "${r}"/var/lib/wallmesh/* "${r}/var/lib/wallmesh-signal" "${r}/var/lib/private/wallmesh-signal"
rm -f "${r}/etc/wallmesh/unit.toml"
rm -rf "${r}/root/.cache" "${r}"/home/*/.cache "${r}/root/.ssh"
rm -rf "${r}"/tmp/* "${r}"/var/tmp/*
rm -f "${r}"/var/cache/apt/archives/*.deb "${r}"/var/cache/apt/*.bin
find "${r}/opt/wallmesh" -name '__pycache__' -prune -o -name '*.pyc' -print0 2>/dev/null | xargs -0 -r rm -f
printf 'wallmesh\n' > "${r}/etc/hostname"
