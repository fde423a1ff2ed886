"""The unit daemon's configuration (``/etc/wallmesh/unit.toml``).

One frozen tree of sections, every key with a default, read by
:func:`appliance.config.load`. The display, buttons and LED sections are
defined next to the parts they configure (``appliance/display/config.py``,
``appliance/controls/config.py``); those modules import neither pygame nor
gpiozero, so loading a unit's config touches no hardware library.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import config as cfg
from appliance.capture.settings import AudioSettings, VideoSettings
from appliance.config import section, setting
from appliance.controls.config import ButtonsConfig, LedsConfig
from appliance.display.config import DisplayConfig
from appliance.netaddr import FINGERPRINT_PATTERN, SERVER_URL_PATTERN
from appliance.protocol import ROOM_PATTERN


@dataclass(frozen=True)
class ServerConfig:
    url: str = setting(
        "discover",
        help="signaling server base URL (http://host:port or https://host:port), or 'discover' to find it by mDNS",
        pattern=SERVER_URL_PATTERN,
    )
    fingerprint: str = setting(
        "",
        help="SHA-256 of the server's TLS certificate (hex, colons allowed); pins the server instead of a CA",
        pattern=FINGERPRINT_PATTERN,
    )
    name: str = setting("", help="name shown to others in the room (default: the host name)")
    device_id: str = setting(
        "", help="this unit's device id (default: host name + machine id)", pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$"
    )
    enrollment_token_file: str = setting(
        "", help="file holding a fleet enrollment token, used once when the state dir has no device secret"
    )
    discover_interfaces: tuple[str, ...] = setting(
        [], help="addresses mDNS discovery listens on (empty: every interface)"
    )
    discover_timeout_s: float = setting(10.0, help="how long one mDNS browse waits", min=0.5, max=300)
    backoff_max_s: float = setting(10.0, help="cap of the reconnect backoff", min=0.5, max=600)


@dataclass(frozen=True)
class QualityConfig:
    upload_kbps: int = setting(
        20000, help="upload budget: (peers - 1) x tier bitrate stays within it", min=100, max=1_000_000
    )
    adaptive: bool = setting(
        True, help="let the quality policy pick resolution and bitrate from mesh size and loss (false: keep [video])"
    )
    max_tier: str = setting("fullhd", help="best tier the policy may pick", choices=("low", "medium", "hd", "fullhd"))


@dataclass(frozen=True)
class MediaConfig:
    workers: int = setting(
        0,
        help="processes serving the peer connections (0: one per core but one; 1: all in the unit's own process)",
        min=0,
        max=16,
    )


@dataclass(frozen=True)
class IceConfig:
    interfaces: tuple[str, ...] = setting(
        [], help="network interfaces whose addresses become host candidates (empty: every non-loopback interface)"
    )
    addresses: tuple[str, ...] = setting([], help="explicit host-candidate addresses; wins over interfaces")
    loopback: bool = setting(False, help="test mode: gather 127.0.0.1 only and ignore .local mDNS candidates")
    resolve_mdns: bool = setting(True, help="resolve browsers' .local ICE candidates by mDNS (ignored in loopback mode)")


@dataclass(frozen=True)
class StatusConfig:
    host: str = setting("127.0.0.1", help="address of the local status endpoint (keep it on loopback)")
    port: int = setting(8787, help="port of the local status endpoint (0: any free port)", min=0, max=65535)
    file: str = setting("", help="also write the status as JSON to this file twice a second (tests, demo)")
    samples: bool = setting(False, help="include each peer's recent glass-to-glass latency samples (benchmarks)")


@dataclass(frozen=True)
class CallConfig:
    mute_resets: bool = setting(
        True, help="unmute the microphone when a call ends, so the next meeting does not start muted"
    )


@dataclass(frozen=True)
class UnitConfig:
    room: str = setting("lobby", help="room this unit joins at start", pattern=ROOM_PATTERN)
    state_dir: str = setting("/var/lib/wallmesh", help="device secret, pinned fingerprint, logs (mode 0700)")
    autojoin: bool = setting(True, help="join the room at start (false: wait for the join button)")
    headless: bool = setting(False, help="run without display, buttons and LEDs (test units, simulated units)")
    snapshot_dir: str = setting("", help="write a PNG of the display here every snapshot_every_s (demo, diagnostics)")
    snapshot_every_s: float = setting(2.0, help="seconds between display snapshots", min=0.1, max=3600)
    server: ServerConfig = section(ServerConfig)
    call: CallConfig = section(CallConfig)
    video: VideoSettings = section(VideoSettings)
    audio: AudioSettings = section(AudioSettings)
    quality: QualityConfig = section(QualityConfig)
    media: MediaConfig = section(MediaConfig)
    ice: IceConfig = section(IceConfig)
    status: StatusConfig = section(StatusConfig)
    display: DisplayConfig = section(DisplayConfig)
    buttons: ButtonsConfig = section(ButtonsConfig)
    leds: LedsConfig = section(LedsConfig)


def load(path: str | Path | None, overrides: dict[str, Any] | None = None) -> UnitConfig:
    """Read a unit config file; errors name the file, the key and what is allowed."""
    return cfg.load(UnitConfig, path, overrides)


def replace(conf: UnitConfig, **changes: Any) -> UnitConfig:
    """A copy with top-level fields changed (handy for tests and the demo)."""
    return dataclasses.replace(conf, **changes)
