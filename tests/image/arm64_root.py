"""The image stage in a Debian 12 arm64 root, run on this (x86-64) machine under qemu-user.

The fleet runs on aarch64. Debian's ``qemu-user-static`` registers itself with
the kernel's binfmt_misc (``binfmt-support``), after which aarch64 programs run
here as if native, inside a chroot too: the handler is registered with the ``F``
flag, so the kernel holds the emulator open and the root needs no copy of it.

What costs the time, and what is cached under ``~/.cache/wallmesh``:

* the debootstrapped arm64 base (:func:`debian_root.base_tar`, ~4 min under emulation);
* the aarch64 dependency wheels (``wheelhouse-aarch64``): downloaded by this
  machine's pip for the Pi's platform, never built; pyalsaaudio, which PyPI has
  no aarch64 wheel of, comes as source and is built inside the root by the stage
  itself (as on the Pi), without going to an index;
* the finished root (``bookworm-arm64-stage-KEY.tar``): the base with the stage
  run into it. ``KEY`` covers the stage's files, the systemd units and the
  dependency list in ``pyproject.toml``, so changing any of them rebuilds it.

wallmesh's own code is not part of the key: each session puts the working
tree's wheel into the unpacked root's ``/opt/wallmesh`` (:func:`refresh_wallmesh`,
seconds), so a warm run tests the code as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

from .debian_root import CACHE, SUITE, base_tar, stage_packages, unpack

REPO = Path(__file__).resolve().parents[2]
STAGE = REPO / "image" / "stage-wallmesh"
SYSTEMD = REPO / "systemd"
ARCH = "arm64"
WHEELHOUSE = CACHE.parent / "wheelhouse-aarch64"
# Debian 12's glibc is 2.36: every manylinux tag up to that one fits (pip wants each named)
PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(36, 16, -1)] + ["manylinux2014_aarch64", "linux_aarch64"]
BINFMT = Path("/proc/sys/fs/binfmt_misc")
HANDLER = "qemu-aarch64"
CHROOT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "HOME": "/root",
              "SDL_AUDIODRIVER": "dummy", "PYGAME_HIDE_SUPPORT_PROMPT": "1"}


class EmulationMissing(RuntimeError):
    """aarch64 programs cannot run here; the message says what is missing."""


def ensure_emulation() -> None:
    """binfmt_misc mounted and the aarch64 handler registered and enabled (needs root).

    ``scripts/setup`` does the same on a fresh machine; this repeats it for a
    machine that rebooted since (binfmt_misc is not always mounted at boot).
    """
    if not (BINFMT / "status").exists():
        done = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, text=True)
        if done.returncode != 0:
            raise EmulationMissing(f"cannot mount binfmt_misc on {BINFMT}: {done.stderr.strip()}")
    handler = BINFMT / HANDLER
    if not handler.exists():
        if shutil.which("update-binfmts"):
            subprocess.run(["update-binfmts", "--enable", HANDLER], capture_output=True, check=False)
        conf = Path("/usr/lib/binfmt.d") / f"{HANDLER}.conf"
        if not handler.exists() and conf.exists():
            (BINFMT / "register").write_text(conf.read_text().strip())
    if not handler.exists():
        raise EmulationMissing(f"no {HANDLER} handler in {BINFMT}: install qemu-user-static and binfmt-support (scripts/setup)")
    text = handler.read_text()
    if not text.startswith("enabled"):
        handler.write_text("1")
    flags = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("flags:")), "")
    if "F" not in flags:
        raise EmulationMissing(f"the {HANDLER} handler lacks the F flag (flags {flags!r}); a chroot could not find the emulator")


def unit_requirements() -> list[str]:
    """What the image installs besides wallmesh: its dependencies (``[alsa]`` is built in the root)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def aarch64_wheels(dest: Path) -> None:
    """The dependency wheels for the Pi (cached), plus wallmesh's wheel from the working tree, in ``dest``."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    requirements = dest / "requirements.txt"
    requirements.write_text("\n".join(unit_requirements()) + "\n")
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    subprocess.run(pip + ["download", "--only-binary=:all:", *platforms, "--python-version", "3.11",
                          "--implementation", "cp", "--find-links", str(WHEELHOUSE), "-d", str(WHEELHOUSE),
                          "-r", str(requirements)], check=True, timeout=900)
    # pyalsaaudio comes as source (no aarch64 wheel exists); the stage builds it in the root, offline
    alsa = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["alsa"]
    requirements.write_text("\n".join([*alsa, "setuptools", "wheel"]) + "\n")
    subprocess.run(pip + ["download", "--no-deps", "--no-binary=pyalsaaudio", "--find-links", str(WHEELHOUSE),
                          "-d", str(WHEELHOUSE), "-r", str(requirements)], check=True, timeout=300)
    requirements.unlink()
    wallmesh_wheel(dest)
    for wheel in [*WHEELHOUSE.glob("*.whl"), *WHEELHOUSE.glob("*.tar.gz")]:
        shutil.copy(wheel, dest / wheel.name)


def wallmesh_wheel(dest: Path) -> Path:
    """wallmesh's own wheel (pure Python, so any platform's) built from the working tree."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(REPO)], check=True,
                   stderr=subprocess.DEVNULL, timeout=300)
    return next(dest.glob("wallmesh-*.whl"))


def stage_key() -> str:
    """A digest of everything the finished root depends on except wallmesh's own code."""
    digest = hashlib.sha256(f"{SUITE} {ARCH} {PLATFORMS[0]}\n".encode())
    for top in (STAGE, SYSTEMD):
        for path in sorted(p for p in top.rglob("*") if p.is_file() and not _prepared(p)):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update("\n".join(unit_requirements()).encode())
    digest.update((REPO / "image" / "run-stage.sh").read_bytes())
    return digest.hexdigest()[:12]


def _prepared(path: Path) -> bool:
    """What ``image/prepare.sh`` fills in on a build machine (git ignores it): not the stage itself."""
    rel = path.relative_to(STAGE).parts if path.is_relative_to(STAGE) else ()
    return rel[:2] in (("02-wallmesh", "files"), ("03-units", "files")) or "__pycache__" in path.parts


def finished_tar(log: Path) -> Path:
    """The cached tar of the arm64 root with the stage run into it; built when missing."""
    ensure_emulation()
    tar = CACHE / f"{SUITE}-{ARCH}-stage-{stage_key()}.tar"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{tar.stem}.lock", "w") as lock:  # one builder per root; the others wait, then reuse it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tar.exists():
            _build(tar, log)
    return tar


def _build(tar: Path, log: Path) -> None:
    base = base_tar(stage_packages(STAGE), arch=ARCH)
    work = CACHE / f"build-{tar.stem}"
    remove_root(work)  # what a build cut short left
    try:
        root = unpack(base, work / "root")
        wheels = work / "wheels"
        wheels.mkdir()
        aarch64_wheels(wheels)
        env = dict(os.environ, WALLMESH_WHEELS=str(wheels), WALLMESH_SYSTEMD_DIR=str(SYSTEMD))
        env.pop("PYTHONPATH", None)
        with log.open("w") as out:
            done = subprocess.run([str(REPO / "image/run-stage.sh"), str(STAGE), str(root)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=2400)
        if done.returncode != 0:
            raise AssertionError("the stage failed in the arm64 root:\n" + log.read_text()[-4000:])
        partial = tar.with_suffix(".partial")
        with tarfile.open(partial, "w") as out_tar:
            out_tar.add(root, arcname=".")
        partial.rename(tar)
    finally:
        remove_root(work)


def chroot(root: Path, *cmd: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One command in the root (emulated); the caller mounted what it needs."""
    return subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True, timeout=timeout,
                          env=env or CHROOT_ENV)


def refresh_wallmesh(root: Path, wheels: Path) -> None:
    """Replace the root's wallmesh with the working tree's (dependencies untouched)."""
    wheel = wallmesh_wheel(wheels)
    inside = root / "tmp" / wheel.name
    shutil.copy(wheel, inside)
    try:
        with mounted(root):
            done = chroot(root, "/opt/wallmesh/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "-q",
                          "--no-deps", "--no-index", "--force-reinstall", "--no-compile", f"/tmp/{wheel.name}")
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        inside.unlink(missing_ok=True)


@contextlib.contextmanager
def mounted(root: Path, *binds: Path) -> Iterator[Path]:
    """/proc, /sys, /dev and ``binds`` (each at its own path) mounted into ``root``; all unmounted after."""
    done: list[Path] = []
    try:
        for kind, source, target in (("proc", "proc", "proc"), ("sysfs", "sys", "sys"), ("bind", "/dev", "dev"),
                                     ("bind", "/dev/pts", "dev/pts"),
                                     *(("bind", str(b), str(b).lstrip("/")) for b in binds)):
            where = root / target
            where.mkdir(parents=True, exist_ok=True)
            argv = ["mount", "--bind", source, str(where)] if kind == "bind" else ["mount", "-t", kind, source, str(where)]
            subprocess.run(argv, check=True, capture_output=True)
            done.append(where)
        yield root
    finally:
        for where in reversed(done):
            subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)
        left = mounts_under(root)
        assert not left, f"still mounted in the arm64 root: {left}"


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (none may be left before a root is deleted)."""
    prefix = str(root.resolve())
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def remove_root(root: Path) -> None:
    """Delete an unpacked root, but never through a mount that is still there (``/dev``!)."""
    left = mounts_under(root)
    if left:
        raise AssertionError(f"not deleting {root}: still mounted there: {left}")
    shutil.rmtree(root, ignore_errors=True)
