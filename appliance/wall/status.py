"""The status document: what ``GET /status`` answers, as types.

One JSON object describes a unit. Operators (``curl localhost:8787/status``),
fleet tools, the demo and the tests read it by key, so the keys are a contract
(DESIGN.md, "Unit status"): add fields, never rename or drop one. Every
controller returns a :class:`UnitStatus`; the unit daemon returns the fuller
:class:`DaemonStatus`. These are ``TypedDict``\\ s, so the document stays a
plain ``dict`` that ``json.dumps`` writes unchanged.

:class:`UnitStatus` — every controller:

* ``state`` — ``idle``, ``joining``, ``in_call``, ``reconnecting`` or ``error``
  (:class:`~appliance.wall.states.UnitState` values);
* ``room`` — the room joined (or to be joined); ``name`` — this unit's name in the room;
* ``muted`` — microphone muted; ``camera`` — video is being sent (false: camera privacy);
* ``volume`` — speaker volume, 0–100;
* ``message`` — in the error state, the sentence shown to the room, else ``""``;
* ``since`` — seconds spent in the current state;
* ``peers`` — one :class:`PeerStatus` per remote participant.

:class:`DaemonStatus` — the unit daemon adds:

* ``peer_id`` — this unit's id in the current signaling session, ``null`` without one;
* ``signaling`` — :class:`SignalingStatus`;
* ``joined_at`` — wall-clock time (``time.time()``) of the first ``joined`` of this room, or ``null``;
* ``media`` — :class:`MediaStatus`;
* ``process`` — :class:`ProcessStatus`;
* ``status_url`` — base URL of this status endpoint (``null`` before it serves);
* ``started`` — wall-clock time the daemon was built; ``time`` — wall-clock time of this document;
* ``software`` — :class:`SoftwareStatus`: the wallmesh version that runs and why (an update's
  trial, confirmed, rolled back, or the image's own).

:class:`SignalingStatus`: ``connected`` (a session is up), ``sessions`` (completed
``hello``/``welcome`` handshakes since start), ``error`` (why the last attempt
failed, ``null`` after a good session).

:class:`MediaStatus`: ``encoder`` (:class:`EncoderStatus` of the shared video
encoder, ``null`` before the camera opens), ``audio_packet_ms`` (the Opus packet length sent now, ``null`` before the
microphone opens), ``audio_processing`` (:class:`AudioProcessingStatus`), ``error`` (why a
device did not open — the unit then shows it, keeps running and retries — ``null`` once all are open).

:class:`AudioProcessingStatus`: ``mode`` (``[audio] processing``: ``webrtc``, ``off`` or
``device``), ``binding`` (the library asked for, ``null`` unless ``mode`` is ``webrtc``),
``active`` (the unit processes its microphone now), ``error`` (why the binding could not
load, ``null`` otherwise: the call then goes on unprocessed), ``cpu_ms_per_frame`` (CPU
per 10 ms frame), ``dropped`` (frames lost because processing fell behind), ``inline``
(processing runs on the event loop, not a thread), ``resets`` (canceller restarts, one per
unmute), ``device_delay_ms`` (``[audio] device_delay_ms``).

:class:`EncoderStatus`: ``width``, ``height`` and ``bitrate`` (bit/s) the encoder
runs at now (the quality tier), ``frames`` and ``keyframes`` encoded since start.

:class:`ProcessStatus`: ``pid``; ``rss_kb`` (resident memory), ``fds`` (open file
descriptors) and ``tasks`` (asyncio tasks), each ``null`` where the platform cannot
tell; ``loop_lag_ms``, the event loop's worst delay over the last second.

:class:`PeerStatus` — one remote participant (built by
:meth:`appliance.mesh.peer.Peer.status`):

* ``id``, ``name``, ``kind`` (roster kind: ``device``, ``user``, or ``""`` not known yet);
* ``account`` — who the signaling server knows it to be (a user's account, a device's id),
  absent until the roster says (an older server does not);
* ``connection`` — the RTCPeerConnection's state (``new``, ``connecting``, ``connected`` …);
* ``fps`` — video frames per second received; ``frames`` — frames received in all;
* ``bitrate`` (bit/s received), ``loss`` (fraction 0–1 of its packets lost),
  ``rtt`` (seconds) — ``null`` until measured;
* ``latency_ms``, ``latency_p50_ms``, ``latency_p95_ms`` — glass-to-glass latency of
  its test-pattern stamps (last, median, 95th percentile), ``null`` without stamps;
* ``muted``, ``camera`` — what the peer last announced;
* ``stale`` — the signaling server no longer lists it (kept while media flows);
* ``rebuilds`` — times the connection was replaced (perfect negotiation, ICE restart);
* ``decode_dropped`` — pictures dropped because decoding fell behind;
  ``decode_inline`` — pictures are decoded on the event loop, not a thread;
  ``decode_ms`` — the smoothed cost of decoding one picture, in ms;
  ``audio_inline`` — remote Opus goes straight to the mixer on the loop (aiortc's decoder thread skipped);
  ``remb_dropped`` — aiortc's receive-side bandwidth estimator is off for this link (a unit's shared encoder ignores REMB);
* ``connected_at``, ``first_frame_at`` — wall-clock times, ``null`` until they happen;
* ``freezes`` — the latest gaps of over 200 ms between its pictures (at most 32), each
  ``[wall-clock time the next picture came, gap in ms]``: a frozen tile, as the room saw it;
* ``latency_samples_ms`` — only with ``[status] samples = true``: recent latency samples.
"""

# No ``from __future__ import annotations`` here: TypedDict only sees ``NotRequired``
# in evaluated annotations (Python 3.11 counts a string "NotRequired[...]" as required).
from typing import NotRequired, TypedDict

__all__ = [
    "AudioProcessingStatus",
    "DaemonStatus",
    "EncoderStatus",
    "MediaStatus",
    "PeerStatus",
    "ProcessFigures",
    "ProcessStatus",
    "SignalingStatus",
    "UnitStatus",
]


class PeerStatus(TypedDict):
    """One remote participant in ``peers`` (see the module docstring)."""

    id: str
    name: str
    kind: str
    connection: str
    fps: float
    frames: int
    bitrate: float | None
    loss: float | None
    rtt: float | None
    latency_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    muted: bool
    camera: bool
    stale: bool
    rebuilds: int
    decode_dropped: int
    decode_inline: bool
    decode_ms: float
    audio_inline: bool
    remb_dropped: bool
    connected_at: float | None
    first_frame_at: float | None
    freezes: list[list[float]]
    latency_samples_ms: NotRequired[list[float]]
    account: NotRequired[str]


class UnitStatus(TypedDict):
    """What every controller's ``status()`` returns (see the module docstring)."""

    state: str
    room: str
    name: str
    muted: bool
    camera: bool
    volume: int
    message: str
    since: float
    peers: list[PeerStatus]


class SignalingStatus(TypedDict):
    """The daemon's signaling session, under ``signaling``."""

    connected: bool
    sessions: int
    error: str | None


class EncoderStatus(TypedDict):
    """The shared video encoder, under ``media.encoder``."""

    width: int
    height: int
    bitrate: int
    frames: int
    keyframes: int


class AudioProcessingStatus(TypedDict):
    """The microphone's processing, under ``media.audio_processing``."""

    mode: str
    binding: str | None
    active: bool
    error: str | None
    cpu_ms_per_frame: float | None
    dropped: int
    inline: bool | None
    resets: int
    device_delay_ms: int


class WorkerStatus(TypedDict):
    """One media worker process, under ``media.workers`` (see ``docs/media-workers.md``)."""

    index: int
    pid: int | None  # None until the process has said hello
    peers: int
    remotes: list[str]  # the names of the peers it serves
    starts: int  # more than 1: it died (or hung) and was started again
    torn: int  # pictures it overwrote before the unit copied them


class MediaStatus(TypedDict):
    """The unit's own media, under ``media``."""

    encoder: EncoderStatus | None
    audio_packet_ms: int | None
    audio_processing: NotRequired[AudioProcessingStatus]
    error: NotRequired[str | None]
    workers: NotRequired[list[WorkerStatus]]  # the media worker processes ([media] workers > 1)


class ProcessFigures(TypedDict):
    """Resource figures of the daemon's process (leak checks)."""

    pid: int
    rss_kb: int | None
    fds: int | None
    tasks: int | None


class ProcessStatus(ProcessFigures):
    """:class:`ProcessFigures` and the event loop's lag, under ``process``."""

    loop_lag_ms: float


class SoftwareStatus(TypedDict):
    """The wallmesh version this daemon runs, under ``software`` (see :mod:`appliance.fleet.update.running`).

    ``version``; ``state``: ``image``, ``trial``, ``confirmed``, ``rolled_back``, ``fallback``
    or ``unmanaged`` (not started by the update launcher); ``slot``: it runs from an update's
    slot, not the image's install; ``why``: the launcher's reason, in words.
    """

    version: str
    state: str
    slot: bool
    why: str


class DaemonStatus(UnitStatus):
    """The unit daemon's full status document (see the module docstring)."""

    peer_id: str | None
    signaling: SignalingStatus
    joined_at: float | None
    media: MediaStatus
    process: ProcessStatus
    status_url: str | None
    started: float
    time: float
    software: NotRequired[SoftwareStatus]
    room_mode: NotRequired[str]  # "mesh" or "sfu" (the room goes through the site's conference server)
    room_switched_at: NotRequired[float | None]  # wall clock of a mode change still settling
    room_switch_gap_ms: NotRequired[float | None]  # the longest a tile went without a new frame in the last change
    room_upload_kbps: NotRequired[float | None]  # what the unit sends to the SFU (in sfu mode)
