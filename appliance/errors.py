"""One root exception for wallmesh; each subclass also inherits the builtin it resembles.

Callers that know nothing of wallmesh can still catch ``ValueError`` or
``ConnectionError``; callers that do can catch the precise type.
"""

from __future__ import annotations


class WallmeshError(Exception):
    """Root of every error wallmesh raises on purpose."""


class ConfigError(WallmeshError, ValueError):
    """A config file is unreadable, has an unknown key or a value outside what is allowed.

    The message always names the file and the dotted key, so an administrator can
    fix it without reading code.
    """

    def __init__(self, path: str | None, key: str | None, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = path or "<defaults>"
        if key:
            super().__init__(f"{where}: key '{key}': {problem}")
        else:
            super().__init__(f"{where}: {problem}")


class ProtocolError(WallmeshError, ValueError):
    """A signaling frame that breaks wire protocol v1; ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


class AuthError(WallmeshError, PermissionError):
    """A token, password or device secret was refused."""

    def __init__(self, code: str = "unauthorized", message: str = "not authorized") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StoreUnavailable(WallmeshError, ConnectionError):
    """The store (MongoDB or the embedded wire-protocol server) cannot be reached."""


class DeviceError(WallmeshError, OSError):
    """A configured hardware device (camera, ALSA device, GPIO pin, display) cannot be opened.

    ``key`` is the config key that named the device, so the message can say what to change.
    """

    def __init__(self, device: str, key: str, problem: str) -> None:
        super().__init__(f"{device} ({key}): {problem}")
        self.device = device
        self.key = key
        self.problem = problem


class LibraryMismatch(WallmeshError, RuntimeError):
    """An installed library is a version wallmesh was not tested with, where it reaches into
    that library's internals (see :mod:`appliance.compat`): starting would mean hooks that
    silently do the wrong thing, so wallmesh refuses to start and says which package."""

    def __init__(self, package: str, found: str, wanted: str, tested: str) -> None:
        super().__init__(
            f"{package} {found} is installed, but wallmesh needs {package}{wanted} "
            f"(tested with {package} {tested}); install that version"
        )
        self.package = package
        self.found = found
        self.wanted = wanted
        self.tested = tested
