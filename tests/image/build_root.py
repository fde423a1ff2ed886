"""Build the finished image root outside pytest: ``python -m tests.image.build_root DEST``.

The same steps as the ``rootfs`` fixture (the cached debootstrap root, wallmesh's wheels,
``image/run-stage.sh``), for ``wallmesh bench faults``, whose watchdog figure boots that
root under systemd-nspawn. Prints DEST when the root is ready.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.image.conftest import REPO, STAGE, build_wheels
from tests.image.debian_root import base_tar, stage_packages, unpack


def build(dest: Path) -> Path:
    root = unpack(base_tar(stage_packages(STAGE)), dest / "root")
    wheels = dest / "wheels"
    wheels.mkdir(exist_ok=True)
    build_wheels(wheels)
    env = dict(os.environ, WALLMESH_WHEELS=str(wheels), WALLMESH_SYSTEMD_DIR=str(REPO / "systemd"))
    done = subprocess.run([str(REPO / "image/run-stage.sh"), str(STAGE), str(root)], env=env, check=False,
                          capture_output=True, text=True, timeout=800)
    if done.returncode != 0:
        sys.exit(f"image stage failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.image.build_root DEST")
    print(build(Path(sys.argv[1])))
