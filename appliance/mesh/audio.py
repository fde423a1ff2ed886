"""The unit's audio: one microphone shared by every peer, and the mix of every peer to the speaker.

Sending — :class:`SharedAudio` reads the microphone (an
:class:`~appliance.capture.base.AudioSource`) once, in 10 ms frames, encodes it once with
Opus (mono; 20 ms packets, 40 ms in big meshes: :func:`auto_packet_ms`) and hands each peer a :class:`SharedAudioTrack` of the same
packets — the audio half of "encode once, send N-1 times" (aiortc would otherwise run one
Opus encoder per peer, about as costly per peer as sending the video). With
``encode_once=False`` the tracks carry raw 10 ms frames and aiortc encodes per peer; that
path also sends RFC 6464 audio levels, which aiortc only computes from raw frames.
Between the microphone and the encoder sits the capture chain, when the unit has one
(:class:`~appliance.mesh.microphone.MicrophoneChain`: echo cancellation against the
mixer's :class:`EchoReference`, noise suppression, gain), fed each frame's capture time.
Muting closes the microphone itself and sends generated silence instead, so no captured
sound can leave the unit while muted (the device is released, not just a sender flag).
Shared Opus packets are only valid on an Opus-negotiated sender:
:func:`appliance.mesh.negotiation.prefer_opus` pins that.

Receiving — :class:`AudioMixer` takes each remote audio track (``add(peer_id, track)``,
``remove(peer_id)``; a track may also push Opus payloads through an ``inlet``, see
:class:`appliance.mesh.aiortc_hooks.AudioInlet`), decodes/resamples it to 48 kHz mono, keeps a short
bounded jitter buffer per peer (stretched to the peer's packet length, and cut back by
5 ms whenever the link has shown for half a second that it does not need it), and every 10 ms
sums one frame from each into the
:class:`~appliance.capture.base.AudioSink`. Each mixed frame is also put, with the
monotonic time at which it will reach the speaker, into :class:`EchoReference` — the
exact signal the echo canceller must subtract from the microphone (after the software
volume, :meth:`AudioMixer.set_volume`). Per-peer levels (smoothed RMS, 0..1) feed the
wall's speaking highlight (:mod:`appliance.wall.speaker`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from appliance.audio.limiter import OutputLimiter
from appliance.capture.audioformat import AUDIO_FRAME_MS, AUDIO_RATE, AUDIO_SAMPLES, AUDIO_TIME_BASE, audio_frame, frame_samples
from appliance.capture.base import AudioSink, AudioSource, stop_task

if TYPE_CHECKING:
    from appliance.mesh.microphone import MicrophoneChain

log = logging.getLogger(__name__)

PERIOD = AUDIO_FRAME_MS / 1000
#: How long before a speaker takes its next frame the mixer writes it, for speakers that say
#: when that is (``next_take``): the loop's wake-up may be this late without a gap.
WRITE_LEAD = 0.005
#: Punctual ticks over which a speaker holding a whole spare frame is watched before one is shed.
SHED_WINDOW = 50


def rms(samples: np.ndarray) -> float:
    """RMS level of int16 samples as a fraction of full scale (0..1)."""
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float32))))) / 32768.0


#: Opus packet durations a unit may send (ms); every WebRTC endpoint decodes all of them.
PACKET_MS = (10, 20, 40, 60)


def auto_packet_ms(remote_peers: int, current: int = 20) -> int:
    """The Opus packet length for a mesh of this many remote peers, now sending ``current``.

    Every packet costs the same per peer whatever it carries (RTP, SRTP, a send on
    the way out; parsing, decrypting, decoding on the way in), and a full mesh pays it
    once per peer: at 20 ms, five peers mean 250 packets out and 250 in every second.
    From four peers on, 40 ms packets halve that for about 30 ms more delay (measured by
    ``wallmesh bench media``: ``audio_delay_*``); 60 ms packets save a little more CPU
    for another 30 ms, so they are left to ``audio.packet_ms`` for a site that wants them.
    Back to 20 ms only at two peers or fewer: a room hovering around four participants
    (someone reconnecting) does not switch back and forth — each switch starts a fresh
    encoder, a faint click.
    """
    if remote_peers >= 4:
        return 40
    if remote_peers <= 2:
        return 20
    return current if current in (20, 40) else 20


class OpusPacketizer:
    """One Opus encoder: 10 ms mono s16 frames in, one ``packet_ms`` :class:`av.Packet` out
    per ``packet_ms / 10`` of them."""

    def __init__(self, bitrate: int = 48_000, packet_ms: int = 20) -> None:
        if packet_ms not in PACKET_MS:
            raise ValueError(f"Opus packets are {', '.join(map(str, PACKET_MS))} ms long, not {packet_ms}")
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate, ctx.layout, ctx.format = AUDIO_RATE, "mono", "s16"
        ctx.bit_rate = bitrate
        ctx.time_base = AUDIO_TIME_BASE
        ctx.options = {"application": "voip", "frame_duration": str(packet_ms)}
        self.bitrate = bitrate
        self.packet_ms = packet_ms
        self.SAMPLES = AUDIO_RATE * packet_ms // 1000
        self._ctx = ctx
        self._pending = np.zeros(0, dtype=np.int16)
        self._pending_pts = 0

    def resized(self, packet_ms: int) -> OpusPacketizer:
        """A packetizer for ``packet_ms`` packets that carries on with this one's pending audio."""
        other = OpusPacketizer(self.bitrate, packet_ms)
        other._pending, other._pending_pts = self._pending, self._pending_pts
        return other

    def encode(self, frame: av.AudioFrame) -> list[av.Packet]:
        samples = frame_samples(frame)[:, 0]
        if not len(self._pending):
            self._pending_pts = frame.pts or 0
        self._pending = np.concatenate([self._pending, samples])
        if len(self._pending) < self.SAMPLES:
            return []
        chunk, self._pending = self._pending[: self.SAMPLES], self._pending[self.SAMPLES :]
        pts = self._pending_pts
        self._pending_pts += self.SAMPLES
        packets = self._ctx.encode(audio_frame(chunk, pts))
        for packet in packets:  # libopus shifts pts by its look-ahead; RTP wants capture time
            packet.pts, packet.time_base = pts, AUDIO_TIME_BASE
        return packets


class SharedAudioTrack(MediaStreamTrack):
    """One peer's copy of the outgoing microphone audio: Opus packets (or raw 10 ms frames)."""

    kind = "audio"

    def __init__(self, owner: SharedAudio) -> None:
        super().__init__()
        self._owner: SharedAudio | None = owner
        self._queue: collections.deque[av.AudioFrame | av.Packet] = collections.deque(maxlen=5)
        self._wake = asyncio.Event()

    def push(self, item: av.AudioFrame | av.Packet) -> None:
        self._queue.append(item)  # a slow reader loses the oldest audio, never lags behind
        self._wake.set()

    async def recv(self) -> av.AudioFrame | av.Packet:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._wake.clear()
            await self._wake.wait()
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        if self._owner is not None:
            self._owner._tracks.discard(self)
            self._owner = None
        self._wake.set()


class AudioTap(SharedAudioTrack):
    """A consumer of the outgoing audio that takes each packet in a call (a media worker's feed)."""

    def __init__(self, owner: SharedAudio, deliver: Callable[[av.AudioFrame | av.Packet], None]) -> None:
        super().__init__(owner)
        self._deliver = deliver

    @property
    def owner(self) -> SharedAudio | None:
        return self._owner

    def push(self, item: av.AudioFrame | av.Packet) -> None:
        self._deliver(item)


class SharedAudio:
    """Reads the microphone once for all peers; :meth:`set_muted` cuts it off at the source."""

    def __init__(
        self,
        source: AudioSource,
        *,
        muted: bool = False,
        encode_once: bool = True,
        packet_ms: int = 20,
        name: str = "unit",
        processing: MicrophoneChain | None = None,
    ) -> None:
        self.source = source
        self.processing = processing  # the capture chain (echo cancellation ...), None: sent as captured
        self._opus = OpusPacketizer(packet_ms=packet_ms) if encode_once else None
        self._muted = muted
        self._name = name
        self._tracks: set[SharedAudioTrack] = set()
        self._task: asyncio.Task[None] | None = None
        self._feeder: asyncio.Task[None] | None = None  # reads the microphone while processing is threaded
        self._source_open: bool | None = None  # unknown: the caller may have opened it already
        self._pts = 0
        self._next = 0.0
        self._closed = False
        self.level = 0.0
        self.frames_sent = 0
        self.error: str | None = None  # set when the microphone failed; silence is sent instead

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def packet_ms(self) -> int | None:
        """The Opus packet length sent (None when aiortc encodes per peer)."""
        return None if self._opus is None else self._opus.packet_ms

    def set_packet_ms(self, packet_ms: int) -> None:
        """Send ``packet_ms`` Opus packets from the next packet on (see :func:`auto_packet_ms`)."""
        if self._opus is not None and packet_ms != self._opus.packet_ms:
            log.info("%s: audio packets %d -> %d ms", self._name, self._opus.packet_ms, packet_ms)
            self._opus = self._opus.resized(packet_ms)

    def set_muted(self, muted: bool) -> None:
        """Mute/unmute; takes effect within one 10 ms frame."""
        if muted != self._muted:
            log.info("%s: microphone %s", self._name, "muted" if muted else "live")
            if not muted and self.processing is not None:
                self.processing.reset()  # the room may have changed: learn it afresh, not from stale state
        self._muted = muted

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"{self._name}-shared-audio")

    def track(self) -> SharedAudioTrack:
        if self._closed:
            raise RuntimeError("SharedAudio is closed")
        track = SharedAudioTrack(self)
        self._tracks.add(track)
        return track

    def tap(self, deliver: Callable[[av.AudioFrame | av.Packet], None]) -> AudioTap:
        """Call ``deliver`` with every packet sent from now on, until the tap is stopped."""
        if self._closed:
            raise RuntimeError("SharedAudio is closed")
        tap = AudioTap(self, deliver)
        self._tracks.add(tap)
        return tap

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await stop_task(self._task)
        await stop_task(self._feeder)
        if self.processing is not None:
            await asyncio.to_thread(self.processing.close)
        for track in list(self._tracks):
            track.stop()
        if self._source_open is not False:
            await self.source.close()
            self._source_open = False

    async def _silence(self) -> av.AudioFrame:
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        elif now - self._next > 0.1:
            self._next = now
        self._next += PERIOD
        return audio_frame(np.zeros((AUDIO_SAMPLES, self.source.channels) if self.source.channels > 1 else AUDIO_SAMPLES, np.int16))

    async def _next_frame(self) -> av.AudioFrame | None:
        """The next frame to send: silence while muted or after a failure, else the
        microphone's frame through the capture chain; None when there is none this time."""
        if self._muted or self.error is not None:
            feeder, self._feeder = self._feeder, None
            await stop_task(feeder)
        if self._muted:
            if self._source_open is not False:
                await self.source.close()  # the microphone is released while muted
                self._source_open = False
                self._next = time.monotonic()
            self.level = 0.0
            return await self._silence()
        if self.error is not None:
            return await self._silence()  # a failed microphone: peers still get steady (silent) audio
        chain = self.processing
        if chain is not None and not chain.inline:
            # processing runs on its thread: a feeder reads the microphone at its own pace,
            # and what comes back is sent as soon as it does
            if self._feeder is None or self._feeder.done():
                self._feeder = asyncio.create_task(self._feed(chain), name=f"{self._name}-microphone")
            return self._processed(await chain.take(0.1))
        captured = await self._capture()
        if captured is None:
            return None
        frame, when = captured
        if chain is None:
            self.level = rms(frame_samples(frame))
            return frame
        out = chain.process(frame_samples(frame)[:, 0], when)
        if out is None:  # it has just moved to its thread: this frame comes back from there
            out = await chain.take(PERIOD)
        return self._processed(out)

    async def _capture(self) -> tuple[av.AudioFrame, float] | None:
        """A microphone frame and its capture time; None when it failed or we were muted meanwhile."""
        try:
            if not self._source_open:
                await self.source.start()
                self._source_open = True
            frame = await self.source.read()
        except (OSError, MediaStreamError) as exc:  # DeviceError is an OSError
            self.error = str(exc) or type(exc).__name__
            log.error("%s: microphone failed, sending silence: %s", self._name, self.error)
            return None
        if self._muted:  # muted while we waited: this audio must not leave
            return None
        when = getattr(self.source, "capture_time", None)
        if when is None:  # a source that does not stamp: its first sample was captured a frame ago
            when = time.monotonic() - PERIOD
        return frame, when

    async def _feed(self, chain: MicrophoneChain) -> None:
        """Microphone → the processing thread, while live (stopped by mute, failure or close)."""
        while not self._muted and self.error is None:
            captured = await self._capture()
            if captured is not None:
                frame, when = captured
                chain.process(frame_samples(frame)[:, 0], when)

    def _processed(self, samples: np.ndarray | None) -> av.AudioFrame | None:
        if samples is None or self._muted:
            return None
        self.level = rms(samples)
        return audio_frame(samples)

    async def _run(self) -> None:
        try:
            while True:
                frame = await self._next_frame()
                if frame is None:
                    continue
                frame.pts = self._pts
                self._pts += frame.samples
                self.frames_sent += 1
                if not self._tracks:
                    continue
                items: Sequence[av.AudioFrame | av.Packet] = [frame] if self._opus is None else self._opus.encode(frame)
                for item in items:
                    for track in list(self._tracks):
                        track.push(item)
        except MediaStreamError:  # pragma: no cover - read errors are handled above
            log.warning("%s: microphone stream ended", self._name)


#: How far before a read window :meth:`EchoReference.read` still looks for frames that
#: could overlap it: a play time re-anchored after a speaker underrun steps back by at most
#: the speaker's buffer (60 ms by default), never this far.
REFERENCE_LOOKBACK = 0.15


class EchoReference:
    """The speaker's signal, frame by frame, stamped with when it reaches the speaker.

    Times are ``time.monotonic()`` seconds. :meth:`read` returns the samples that played
    during a window — what an echo canceller subtracts from the microphone captured then.
    """

    def __init__(self, seconds: float = 2.0) -> None:
        self._frames: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=int(seconds / PERIOD))

    def add(self, samples: np.ndarray, play_time: float) -> None:
        self._frames.append((play_time, samples))

    def latest(self) -> tuple[float, np.ndarray] | None:
        return self._frames[-1] if self._frames else None

    def read(self, start: float, count: int) -> np.ndarray:
        """``count`` mono samples played from ``start`` on (zeros where nothing played)."""
        out = np.zeros(count, dtype=np.int16)
        end = start + count / AUDIO_RATE
        # Only the newest frames can overlap a window near now: walk back from the newest to
        # REFERENCE_LOOKBACK before ``start``, then write oldest first as before, so a newer
        # frame wins where two overlap.
        frames = list(self._frames)  # a snapshot: the mixer appends while a worker thread reads
        first = len(frames)
        while first > 0 and frames[first - 1][0] + REFERENCE_LOOKBACK > start:
            first -= 1
        for play_time, samples in frames[first:]:
            stop = play_time + len(samples) / AUDIO_RATE
            if stop <= start or play_time >= end:
                continue
            src0 = max(0, round((start - play_time) * AUDIO_RATE))
            dst0 = max(0, round((play_time - start) * AUDIO_RATE))
            n = min(len(samples) - src0, count - dst0)
            if n > 0:
                out[dst0 : dst0 + n] = samples[src0 : src0 + n]
        return out


class OpusDecoder:
    """Opus packets of one remote stream to 48 kHz mono s16 samples (a corrupt packet is lost and
    the decoder started afresh; an empty one, which would end it for good, is skipped)."""

    def __init__(self) -> None:
        self._decoder: Any = None
        self.bad_packets = 0

    def decode(self, payload: bytes | av.Packet) -> list[np.ndarray]:
        packet = payload if isinstance(payload, av.Packet) else av.Packet(payload)
        if not packet.size:
            self.bad_packets += 1
            return []
        if self._decoder is None:
            self._decoder = av.CodecContext.create("libopus", "r")
            self._decoder.sample_rate, self._decoder.layout, self._decoder.format = AUDIO_RATE, "mono", "s16"
        try:
            frames = self._decoder.decode(packet)
        except av.error.FFmpegError:
            self.bad_packets += 1
            self._decoder = None
            return []
        return [frame.to_ndarray().reshape(-1) for frame in frames]


class _Remote:
    """One peer's jitter buffer.

    It starts playing once it holds a packet plus a margin (its bounds stretch with the
    peer's packet length: a peer sending 60 ms packets must be able to hold a packet in
    hand while the next is on its way), then keeps itself short: the least audio left
    after a take is watched over a window, and when 5 ms more than the cushion sat unused
    all window, 5 ms are cut out with a short cross-fade (10 ms after a fifth of the window
    when three frames sat unused: a burst after a stall). An underrun pads
    with silence, primes again and widens the cushion; a calm stretch narrows it again.
    That keeps mouth-to-ear delay near what the link's real jitter needs, and a sender
    whose clock runs fast cannot build the delay up to the buffer's bound.
    """

    MARGIN = AUDIO_RATE // 100  # 10 ms
    WINDOW = 50  # takes (0.5 s) watched before the buffer is cut
    CUSHION = AUDIO_RATE // 200  # 5 ms: least spare the buffer keeps after a cut
    CUSHION_MAX = AUDIO_RATE * 30 // 1000
    CALM = 1000  # takes (10 s) without an underrun before the cushion narrows by a step
    FADE = AUDIO_RATE // 500  # 2 ms cross-fade over a cut
    STEP = AUDIO_RATE // 200  # 5 ms: what one window's cut takes out

    _fade_in = np.linspace(0.0, 1.0, FADE, dtype=np.float32)

    def __init__(self, max_samples: int, prebuffer: int) -> None:
        self.buffer = np.zeros(0, dtype=np.int16)
        self.base_max, self.base_prebuffer = max_samples, prebuffer
        self.max_samples = max_samples
        self.prebuffer = prebuffer
        self.packet = 0  # samples in the peer's latest packet
        self.primed = False
        self.level = 0.0
        self.task: asyncio.Task[None] | None = None
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
        self.opus = OpusDecoder()  # for Opus packets handed over instead of decoded frames
        self.inlet: Any = None  # the remote track's AudioInlet, when it pushes Opus payloads
        self.dropped = 0
        self.underruns = 0
        self.cut = 0  # pieces cut out to keep the delay short
        self.cushion = self.CUSHION
        self._least = math.inf  # least audio left after a take in this window
        self._takes = 0
        self._calm = 0

    def feed(self, item: av.AudioFrame | av.Packet) -> None:
        if isinstance(item, av.Packet):
            self.feed_opus(item)
            return
        for out in self.resampler.resample(item):
            self.feed_samples(frame_samples(out)[:, 0])

    def feed_opus(self, payload: bytes | av.Packet) -> None:
        """Decode one Opus packet straight to 48 kHz mono s16 and buffer it."""
        for samples in self.opus.decode(payload):
            self.feed_samples(samples)

    @property
    def bad_packets(self) -> int:
        return self.opus.bad_packets

    def feed_samples(self, samples: np.ndarray) -> None:
        """Buffer decoded 48 kHz mono s16 samples."""
        if len(samples) != self.packet:
            self.packet = len(samples)
            self.prebuffer = max(self.base_prebuffer, self.packet + self.MARGIN)
            self.max_samples = max(self.base_max, self.prebuffer + self.packet + 2 * self.MARGIN)
        self.buffer = np.concatenate([self.buffer, samples])
        if len(self.buffer) > self.max_samples:
            self.dropped += len(self.buffer) - self.max_samples
            self.buffer = self.buffer[-self.max_samples :]

    def take(self) -> np.ndarray:
        if not self.primed:
            if len(self.buffer) < self.prebuffer:
                return np.zeros(AUDIO_SAMPLES, dtype=np.int16)
            self.primed = True
            self._least, self._takes = math.inf, 0
        chunk, self.buffer = self.buffer[:AUDIO_SAMPLES], self.buffer[AUDIO_SAMPLES:]
        if len(chunk) < AUDIO_SAMPLES:  # underrun: pad, build up the prebuffer again, keep more
            self.primed = False
            self.underruns += 1
            self.cushion = min(self.CUSHION_MAX, self.cushion + self.CUSHION)
            self._calm = 0
            return np.concatenate([chunk, np.zeros(AUDIO_SAMPLES - len(chunk), dtype=np.int16)])
        self._calm += 1
        if self._calm >= self.CALM:
            self.cushion, self._calm = max(self.CUSHION, self.cushion - self.CUSHION), 0
        self._least = min(self._least, len(self.buffer))
        self._takes += 1
        spare = self._least - self.cushion  # what sat unused all window, beyond the cushion
        # 5 ms to spare sheds 5 ms per window; three frames (a burst after a stall) shed a frame
        # every fifth of a window
        burst = spare >= 3 * AUDIO_SAMPLES and self._takes >= self.WINDOW // 5
        if burst:
            chunk = self._cut(chunk, AUDIO_SAMPLES)
        elif spare >= self.STEP and self._takes >= self.WINDOW:
            chunk = self._cut(chunk, self.STEP)
        if burst or self._takes >= self.WINDOW:
            self._least, self._takes = math.inf, 0
        return chunk

    def _cut(self, chunk: np.ndarray, size: int) -> np.ndarray:
        """Skip the ``size`` samples after ``chunk``: its tail fades into the audio that follows."""
        after = self.buffer[size - self.FADE : size].astype(np.float32)
        tail = chunk[-self.FADE :].astype(np.float32)
        out = chunk.copy()
        out[-self.FADE :] = np.round(tail + (after - tail) * self._fade_in).astype(np.int16)
        self.buffer = self.buffer[size:]
        self.cut += 1
        return out


class AudioMixer:
    """Mixes remote audio tracks into the speaker every 10 ms (see the module docstring)."""

    def __init__(self, sink: AudioSink, *, jitter_ms: int = 80, prebuffer_ms: int = 30, name: str = "unit") -> None:
        self.sink = sink
        self.reference = EchoReference()
        self._remotes: dict[str, _Remote] = {}
        self._listeners: list[Callable[[np.ndarray, float], None]] = []
        self._max = AUDIO_RATE * jitter_ms // 1000
        self._prebuffer = AUDIO_RATE * prebuffer_ms // 1000
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last_play = float("-inf")
        self._glitches = 0  # the sink's underruns + drops: each shifts what plays when
        self._usual_held: float | None = None  # what the speaker holds at a punctual write (smoothed)
        self._aligned = False  # ticking WRITE_LEAD before the speaker takes a frame
        self._reanchor = False  # a tick was skipped: stamp the next frame from the measurement
        self._least_held, self._punctual = math.inf, 0  # the least the speaker held at a punctual write, this window
        self.speaker_frames_shed = 0
        self.frames_mixed = 0
        self.limiter = OutputLimiter()  # peaks held under -1 dBFS: the unit never clips its own output

    async def start(self) -> None:
        if self._task is None:
            await self.sink.start()
            self._task = asyncio.create_task(self._run(), name=f"{self._name}-audio-mixer")

    def add(self, peer_id: str, track: MediaStreamTrack) -> None:
        """Start mixing ``track``; replaces an earlier track of the same peer."""
        self.remove(peer_id)
        remote = _Remote(self._max, self._prebuffer)
        remote.task = asyncio.create_task(self._read(peer_id, remote, track), name=f"{self._name}-audio-in-{peer_id}")
        remote.inlet = getattr(track, "inlet", None)  # Opus payloads pushed on the loop (aiortc_hooks.AudioInlet)
        if remote.inlet is not None:
            # a media worker's inlet pushes samples it has decoded already
            remote.inlet.connect(remote.feed_samples if getattr(remote.inlet, "decoded", False) else remote.feed_opus)
        self._remotes[peer_id] = remote

    def remove(self, peer_id: str) -> None:
        remote = self._remotes.pop(peer_id, None)
        if remote is None:
            return
        if remote.inlet is not None:
            remote.inlet.connect(None)
        if remote.task is not None:
            remote.task.cancel()

    @property
    def peers(self) -> list[str]:
        return list(self._remotes)

    def levels(self) -> dict[str, float]:
        """Smoothed RMS level (0..1) of each peer's audio as it is played."""
        return {peer: remote.level for peer, remote in self._remotes.items()}

    def set_volume(self, fraction: float) -> None:
        """Software volume (0..1), applied to the mix before the speaker and before the echo
        reference: the canceller must subtract what the loudspeaker really plays."""
        fraction = min(1.0, max(0.0, float(fraction)))
        self.limiter.set_volume_db(20 * math.log10(fraction) if fraction > 0 else -math.inf)

    def on_mix(self, callback: Callable[[np.ndarray, float], None]) -> None:
        """Call ``callback(samples, play_time)`` with every frame sent to the speaker."""
        self._listeners.append(callback)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        readers = [remote.task for remote in self._remotes.values() if remote.task is not None]
        for peer in list(self._remotes):
            self.remove(peer)
        await asyncio.gather(*readers, return_exceptions=True)
        await stop_task(self._task)
        await self.sink.close()

    async def _read(self, peer_id: str, remote: _Remote, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                remote.feed(frame)  # type: ignore[arg-type]
        except MediaStreamError:
            log.info("%s: audio from %s ended", self._name, peer_id)

    def mix_once(self) -> np.ndarray:
        """Mix one 10 ms frame from every peer, update levels; returns the mix."""
        total = np.zeros(AUDIO_SAMPLES, dtype=np.int32)
        for remote in self._remotes.values():
            chunk = remote.take()
            remote.level = 0.7 * remote.level + 0.3 * rms(chunk)
            total += chunk
        # the software volume, then a smooth peak limiter instead of clipping at full scale
        # (1 ms look-ahead); what it returns is both what the speaker plays and the echo reference
        return self.limiter.process(total)

    def _play_time(self, measured: float) -> float:
        """When this frame reaches the speaker: right after the previous one while the sink
        keeps playing (an exact, gap-free timeline), re-anchored to the measurement after an
        underrun (the sink counts them: a one-frame slip is within the tolerance) or a stall."""
        expected = self._last_play + PERIOD
        glitches = getattr(self.sink, "underruns", 0) + getattr(self.sink, "frames_dropped", 0)
        slipped, self._glitches = glitches != self._glitches or self._reanchor, glitches
        self._reanchor = False
        self._last_play = expected if abs(measured - expected) < 0.015 and not slipped else measured
        return self._last_play

    def _skip_tick(self, late: bool) -> bool:
        """Whether this tick writes nothing, to keep what the speaker holds from growing.

        Catching up after a stall stops once the speaker is back to what it usually holds at a
        punctual write (at the start, when nothing has been written on time yet, there is
        nothing to restore): it ran dry meanwhile and played the gap, and the frames still
        missed would only sit in its buffer as delay for the rest of the call. And an aligned
        speaker that held a whole frame more than it takes for a whole window (a write that
        missed its take once) has one tick skipped. Either way the peers' jitter buffers keep
        what was not mixed and shed it smoothly, and the next frame is stamped afresh.
        """
        held = self.sink.delay
        if late:
            skip = self._usual_held is None or held > self._usual_held + PERIOD / 2
        else:
            self._usual_held = held if self._usual_held is None else 0.95 * self._usual_held + 0.05 * held
            self._least_held, self._punctual = min(self._least_held, held), self._punctual + 1
            skip = False
            if self._punctual >= SHED_WINDOW:
                skip = self._aligned and self._least_held >= PERIOD
                self._least_held, self._punctual = math.inf, 0
                self.speaker_frames_shed += skip
        self._reanchor = self._reanchor or skip
        return skip

    async def _run(self) -> None:
        next_tick = time.monotonic()
        align = True
        while True:
            next_tick += PERIOD
            take = getattr(self.sink, "next_take", None) if align else None
            if take is not None:
                # a speaker that says when it takes its next frame gets each frame WRITE_LEAD
                # before that, not whenever the mixer's own tick happens to fall (up to a
                # whole period of waiting in the speaker for nothing)
                while take - WRITE_LEAD <= time.monotonic():
                    take += PERIOD
                next_tick, align, self._aligned = take - WRITE_LEAD, False, True
            delay = next_tick - time.monotonic()
            late = delay < -PERIOD
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2:
                next_tick, align = time.monotonic(), True  # stalled: skip ahead rather than burst
            if self._skip_tick(late):
                if late:
                    next_tick = time.monotonic()
                continue
            mix = self.mix_once()
            play_time = self._play_time(time.monotonic() + self.sink.delay)
            self.sink.write(audio_frame(mix))
            self.reference.add(mix, play_time)
            self.frames_mixed += 1
            for listener in list(self._listeners):
                try:
                    listener(mix, play_time)
                except Exception:  # a broken listener must not silence the speaker
                    log.exception("%s: mix listener %r failed; removed", self._name, listener)
                    self._listeners.remove(listener)
