#!/bin/bash -e
# In the image: create the service user now (sysusers runs again at boot,
# harmlessly), then enable first boot and the unit daemon. The signaling
# server is installed but left off: only the site's server runs it.
set -eu
systemd-sysusers /usr/lib/sysusers.d/wallmesh.conf
install -d -m 0755 /etc/wallmesh
systemctl enable wallmesh-firstboot.service wallmesh-unit.service
systemctl disable wallmesh-signal.service >/dev/null 2>&1 || true
