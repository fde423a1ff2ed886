#!/bin/bash -e
# Host side: audio defaults, and on a Raspberry Pi boot partition the KMS
# display driver and a quiet console (kernel messages go to tty3, so HDMI
# shows only wallmesh).
set -eu
install -m 0644 files/asound.conf "${ROOTFS_DIR}/etc/asound.conf"
boot="${ROOTFS_DIR}/boot/firmware"
if [ -f "${boot}/config.txt" ]; then
  grep -q '^dtoverlay=vc4-kms-v3d' "${boot}/config.txt" || echo 'dtoverlay=vc4-kms-v3d' >> "${boot}/config.txt"
  grep -q '^camera_auto_detect=1' "${boot}/config.txt" || echo 'camera_auto_detect=1' >> "${boot}/config.txt"
  grep -q '^disable_splash=1' "${boot}/config.txt" || echo 'disable_splash=1' >> "${boot}/config.txt"
fi
if [ -f "${boot}/cmdline.txt" ]; then
  line="$(head -n1 "${boot}/cmdline.txt")"
  line="${line//console=tty1/console=tty3}"
  for opt in quiet loglevel=3 logo.nologo vt.global_cursor_default=0 consoleblank=0; do
    case " ${line} " in *" ${opt} "*) ;; *) line="${line} ${opt}" ;; esac
  done
  printf '%s\n' "${line}" > "${boot}/cmdline.txt"
fi
