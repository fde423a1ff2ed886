"""The pi-gen stage's shape: what pi-gen expects, checked without building anything."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGE = REPO / "image" / "stage-wallmesh"
SCRIPTS = sorted([*STAGE.glob("*.sh"), *STAGE.glob("*/*.sh"), *(REPO / "image").glob("*.sh")])


def test_steps_have_two_digit_names_and_known_files() -> None:
    steps = [p for p in STAGE.iterdir() if p.is_dir()]
    assert steps
    for step in steps:
        assert re.fullmatch(r"\d\d-[a-z0-9-]+", step.name), step.name
        for item in step.iterdir():
            assert item.name in ("files", "RASPBERRY_PI_OS_ONLY", "SKIP") or re.fullmatch(
                r"\d\d-(packages|packages-nr|run\.sh|run-chroot\.sh|debconf|patches)", item.name), item


def test_every_script_is_strict_executable_bash() -> None:
    assert len(SCRIPTS) >= 8
    for script in SCRIPTS:
        text = script.read_text()
        assert text.startswith("#!/bin/bash"), script
        assert re.search(r"^set -eu", text, re.M), f"{script} lacks set -eu"
        if not script.name.endswith("-run-chroot.sh"):  # pi-gen feeds chroot scripts on stdin
            assert os.access(script, os.X_OK), f"{script} is not executable"
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_raspberry_pi_os_packages_are_marked_as_such() -> None:
    marked = {p.parent.name for p in STAGE.glob("*/RASPBERRY_PI_OS_ONLY")}
    for listing in STAGE.glob("*/*-packages*"):
        names = set(listing.read_text().split())
        if names & {"python3-picamera2", "python3-libcamera", "libcamera-ipa", "raspi-utils-core"}:
            assert listing.parent.name in marked, listing
