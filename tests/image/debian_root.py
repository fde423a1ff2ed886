"""A cached Debian 12 (amd64) root filesystem for the image test.

``debootstrap`` is slow (minutes), so the finished root is kept as a tar under
``~/.cache/wallmesh/debootstrap``, keyed by the suite and the package list the
image stage asks for. Each test run unpacks a fresh copy (seconds) and runs
the stage's steps into it. The mirror is the one apt on this machine uses.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

SUITE = "bookworm"
ARCH = "amd64"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wallmesh" / "debootstrap"


def apt_mirror() -> str:
    """The Debian mirror apt is configured with here (deb822 or one-line sources)."""
    sources = sorted(Path("/etc/apt").glob("sources.list.d/*.sources"))
    for path in sources:
        text = path.read_text()
        for stanza in text.split("\n\n"):
            if re.search(rf"^Suites:.*\b{SUITE}\b", stanza, re.M):
                uri = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if uri and "security" not in uri.group(1):
                    return uri.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    return "http://deb.debian.org/debian"


def stage_packages(stage: Path) -> list[str]:
    """Every Debian package named in the stage's ``00-packages`` files (Pi-only steps excluded)."""
    names: set[str] = set()
    for step in sorted(p for p in stage.iterdir() if p.is_dir()):
        if (step / "RASPBERRY_PI_OS_ONLY").exists():
            continue
        for listing in step.glob("*-packages*"):
            for line in listing.read_text().splitlines():
                names.update(line.split("#", 1)[0].split())
    return sorted(names)


def base_tar(packages: list[str], arch: str = ARCH) -> Path:
    """The cached tar of a minbase root with ``packages`` installed; built once.

    A foreign ``arch`` (arm64) runs debootstrap's second stage under qemu-user
    through binfmt_misc, which the caller makes sure is ready (``tests/image/emulation.py``).
    """
    key = hashlib.sha256(f"{SUITE} {arch} minbase {','.join(packages)}".encode()).hexdigest()[:12]
    tar = CACHE / f"{SUITE}-{arch}-{key}.tar"
    if tar.exists():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f"build-{key}"
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--arch={arch}", f"--include={','.join(packages)}",
         SUITE, str(work), apt_mirror()],
        check=True, stdout=subprocess.DEVNULL,
    )
    partial = tar.with_suffix(".partial")
    with tarfile.open(partial, "w") as out:
        out.add(work, arcname=".")
    partial.rename(tar)
    shutil.rmtree(work, ignore_errors=True)
    return tar


def unpack(tar: Path, dest: Path) -> Path:
    """Unpack a cached root into ``dest`` keeping owners, modes and device nodes."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-xpf", str(tar), "-C", str(dest), "--numeric-owner"], check=True)
    return dest


if __name__ == "__main__":
    stage = Path(__file__).resolve().parents[2] / "image" / "stage-wallmesh"
    print(base_tar(stage_packages(stage)))
