"""Crash-safe file replacement, for every file wallmesh must not lose half-written.

A unit can lose power at any moment (first boot, provisioning), and a server's
keys and certificates must never be found torn. Such files go through
:func:`write_atomic`: the new content is written to a temporary file in the same
directory, flushed to disk, then renamed over the old one, and the directory
itself is flushed, so after a power cut the file is either the old version or
the new one, never a torn mix. Users: provisioning (``fleet/``), the signaling
server's keys and certificates (``signaling/``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644, owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` atomically and durably; ``mode`` applies from the first byte."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            if owner is not None:
                os.fchown(fh.fileno(), *owner)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def remove_durable(path: str | os.PathLike[str]) -> bool:
    """Delete ``path`` if present and flush its directory; True when something was removed."""
    path = Path(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry change (a rename or unlink) to disk; some file systems (vfat) cannot."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
