"""The built image root, shared by the image tests (building it takes a minute or two)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .debian_root import CACHE, base_tar, stage_packages, unpack

REPO = Path(__file__).resolve().parents[2]
STAGE = REPO / "image" / "stage-wallmesh"
WHEELHOUSE = CACHE.parent / "wheelhouse"


def build_wheels(dest: Path) -> None:
    """wallmesh from the working tree, plus its dependencies from a cached wheelhouse."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    subprocess.run(pip + ["wheel", "--find-links", str(WHEELHOUSE), "-w", str(WHEELHOUSE), f"{REPO}[alsa]"],
                   check=True, stderr=subprocess.DEVNULL)
    subprocess.run(pip + ["wheel", "--no-deps", "-w", str(dest), str(REPO)], check=True, stderr=subprocess.DEVNULL)
    for wheel in WHEELHOUSE.glob("*.whl"):
        if not wheel.name.startswith("wallmesh-"):
            shutil.copy(wheel, dest / wheel.name)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory):
    started = time.monotonic()
    work = tmp_path_factory.mktemp("image")
    tar = base_tar(stage_packages(STAGE))
    root = unpack(tar, work / "root")
    wheels = work / "wheels"
    wheels.mkdir()
    build_wheels(wheels)
    env = dict(os.environ, WALLMESH_WHEELS=str(wheels), WALLMESH_SYSTEMD_DIR=str(REPO / "systemd"))
    done = subprocess.run([str(REPO / "image/run-stage.sh"), str(STAGE), str(root)], env=env,
                          capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    print(f"\nimage stage: {time.monotonic() - started:.0f} s from cached base to finished root\n{done.stdout[-1500:]}")
    yield root
    shutil.rmtree(work, ignore_errors=True)




@pytest.fixture(scope="session")
def arm64_root(tmp_path_factory: pytest.TempPathFactory):
    """A fresh copy of the finished arm64 root (built once, cached) with this tree's wallmesh in it."""
    from .arm64_root import finished_tar, refresh_wallmesh, remove_root

    started = time.monotonic()
    work = tmp_path_factory.mktemp("arm64")
    tar = finished_tar(work / "stage.log")
    built = time.monotonic()
    root = unpack(tar, work / "root")
    wheels = work / "wheels"
    wheels.mkdir()
    refresh_wallmesh(root, wheels)
    print(f"\narm64 root: {built - started:.0f} s to the finished root ({tar.name}), "
          f"{time.monotonic() - built:.0f} s to unpack it and put this tree's wallmesh in")
    yield root
    remove_root(work)
