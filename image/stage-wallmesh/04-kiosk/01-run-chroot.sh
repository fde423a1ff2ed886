#!/bin/bash -e
# In the image: no login prompt on the HDMI console (tty1 belongs to the wall
# display), no graphical desktop.
set -eu
systemctl mask getty@tty1.service
systemctl set-default multi-user.target
