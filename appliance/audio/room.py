"""What a wall unit's microphone hears: its own loudspeaker through the room, a talker, a fan.

A :class:`Room` is a description (size, reverberation time, echo delay, loudspeaker
drive, clock drift, a delay jump); :func:`build` turns it into a :class:`RoomModel` with
impulse responses from ``pyroomacoustics``' image-source method (shoebox rooms, Sabine
absorption chosen for the RT60 asked; deterministic, no random image jitter). The model
is used two ways, with the same arithmetic:

* offline, :meth:`RoomModel.simulate` on whole signals returns the microphone and each
  of its components (echo, near-end talk, noise) so a benchmark can score against truth;
* streaming, :class:`RoomMicrophone` is a microphone source: give it each 10 ms frame the
  unit played and it returns the 10 ms the microphone captured meanwhile.

The echo path is: what the unit plays (:meth:`RoomModel.play`: the unit's own output stage,
software volume then the peak limiter of :mod:`appliance.audio.limiter`, so the samples
never pass -1 dBFS and are also the echo reference) → loudspeaker non-linearity → room
impulse response (the direct sound placed exactly ``delay_ms`` after the sample was played)
→ optional clock drift (the capture clock runs ``drift_ppm`` fast) and an optional jump of
the delay mid-call (an audio buffer under-run on the speaker side).

The loudspeaker is the same in every room: amplifier and driver voiced so that DAC full
scale is their maximum output, saturating softly towards it, ``y = tanh(x)`` — 0.5 dB of
compression and 2 % THD for a sine at -6 dBFS, 1.5 dB and 5.5 % at the limiter's -1 dBFS.
The ``clipping`` room turns the unit's volume 12 dB up: speech at -8 dBFS RMS, peaks held at
-1 dBFS by the limiter, so the loudspeaker works in its saturating range most of the time.
``clip="hard"`` (a hard clip at ``clip_level`` after an analog ``drive``, i.e. an amplifier
whose gain is set past its rails, which the unit's output stage is built to avoid) stays
available for :func:`variant`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np

from appliance.audio.speech import RATE

FRAME = RATE // 100


@dataclass(frozen=True)
class Room:
    """One simulated room and unit. Levels are linear full-scale fractions."""

    name: str
    dims: tuple[float, float, float]
    rt60: float
    delay_ms: float  # speaker play-out stamp → direct sound in the microphone stream
    speaker: tuple[float, float, float]
    mic: tuple[float, float, float]
    talker: tuple[float, float, float]
    echo_gain: float = 0.5  # direct-path amplitude of the echo at the mic
    talker_gain: float = 0.12  # direct-path amplitude of the near-end talker (about 2 m away)
    volume_db: float = 0.0  # the unit's software volume over the nominal level (its output stage, before the limiter)
    drive: float = 1.0  # analog gain after the DAC; > 1 pushes the speech into the non-linearity
    clip: str = "soft"  # "soft" (tanh) or "hard"
    clip_level: float = 1.0
    drift_ppm: float = 0.0
    jump_ms: float = 0.0  # the delay grows by this much ...
    jump_at_s: float = 0.0  # ... at this time (0: never)
    noise_level: float = 0.0015  # fan noise RMS (≈ -56 dBFS)
    seed: int = 1


#: The rooms every figure is measured over.
ROOMS: dict[str, Room] = {
    r.name: r
    for r in (
        Room("small", (4.0, 3.5, 2.7), 0.3, 40.0, speaker=(2.0, 0.15, 1.4), mic=(2.15, 0.15, 1.5), talker=(2.3, 2.2, 1.2)),
        Room("large", (10.0, 7.0, 3.2), 0.6, 120.0, speaker=(5.0, 0.2, 1.5), mic=(5.18, 0.2, 1.6), talker=(4.2, 3.5, 1.2)),
        Room(
            "clipping", (5.0, 4.0, 2.8), 0.4, 60.0, speaker=(2.5, 0.15, 1.4), mic=(2.65, 0.15, 1.5), talker=(3.0, 2.6, 1.2),
            volume_db=12.0,
        ),
        Room(
            "jump", (5.0, 4.0, 2.8), 0.4, 50.0, speaker=(2.5, 0.15, 1.4), mic=(2.65, 0.15, 1.5), talker=(2.0, 2.8, 1.2),
            jump_ms=30.0, jump_at_s=5.0,
        ),
        Room(
            "drift", (6.0, 5.0, 3.0), 0.45, 80.0, speaker=(3.0, 0.15, 1.4), mic=(3.15, 0.15, 1.5), talker=(3.5, 3.0, 1.2),
            drift_ppm=100.0,
        ),
    )
}


@dataclass
class Capture:
    """A simulated microphone signal and its parts (float, full scale 1.0, 48 kHz)."""

    mic: np.ndarray
    echo: np.ndarray
    near: np.ndarray
    noise: np.ndarray
    room: Room = field(repr=False)

    def mic_int16(self) -> np.ndarray:
        return np.clip(np.round(self.mic * 32768.0), -32768, 32767).astype(np.int16)


class RoomModel:
    """A room's impulse responses and path; :meth:`simulate` offline, :meth:`microphone` streaming."""

    def __init__(self, room: Room, speaker_rir: np.ndarray, talker_rir: np.ndarray) -> None:
        self.room = room
        self.speaker_rir = speaker_rir  # direct sound at index 0
        self.talker_rir = talker_rir

    def play(self, far: np.ndarray) -> np.ndarray:
        """What the unit plays (and references) for the float signal ``far`` it was sent: its output
        stage at this room's volume (:func:`appliance.audio.limiter.limit`)."""
        from appliance.audio.limiter import limit

        return limit(far, volume_db=self.room.volume_db)

    def loudspeaker(self, far: np.ndarray) -> np.ndarray:
        """The loudspeaker's (memoryless) non-linearity applied to the played samples."""
        x = far.astype(np.float64) * self.room.drive
        level = self.room.clip_level
        if self.room.clip == "hard":
            return np.clip(x, -level, level)
        return level * np.tanh(x / level)

    def delay_samples(self, n: np.ndarray) -> np.ndarray:
        """Where sample ``n`` of the microphone reads the speaker path (fractional index)."""
        r = self.room
        delay = np.full(n.shape, r.delay_ms * RATE / 1000.0)
        if r.jump_ms and r.jump_at_s:
            delay[n >= int(r.jump_at_s * RATE)] += r.jump_ms * RATE / 1000.0
        return n * (1.0 + r.drift_ppm * 1e-6) - delay

    def echo_path(self, far: np.ndarray) -> np.ndarray:
        """The echo component of the microphone for a whole played signal."""
        from scipy.signal import fftconvolve

        y = fftconvolve(self.loudspeaker(far), self.speaker_rir)[: len(far)]
        return _read_at(y, self.delay_samples(np.arange(len(far), dtype=np.float64)))

    def noise(self, count: int, offset: int = 0) -> np.ndarray:
        return fan_noise(count, self.room.noise_level, self.room.seed, offset)

    def simulate(self, far: np.ndarray, near: np.ndarray | None = None, *, noise: bool = True) -> Capture:
        """The microphone for a whole call: ``far`` played by the unit, ``near`` spoken in the room."""
        from scipy.signal import fftconvolve

        echo = self.echo_path(far)
        talk = np.zeros(len(far)) if near is None else fftconvolve(_fit(near, len(far)), self.talker_rir)[: len(far)]
        hum = self.noise(len(far)) if noise else np.zeros(len(far))
        return Capture(mic=echo + talk + hum, echo=echo, near=talk, noise=hum, room=self.room)

    def microphone(self, near: np.ndarray | None = None, *, noise: bool = True) -> RoomMicrophone:
        return RoomMicrophone(self, near, noise=noise)


class RoomMicrophone:
    """A streaming microphone in a simulated room: :meth:`read` takes the 10 ms frame the unit
    played (int16 or float) and returns the 10 ms frame captured meanwhile (int16).

    It gives the same samples as :meth:`RoomModel.simulate` on the whole signal (to float
    rounding): the speaker path is convolved block by block (overlap-add) and read at
    the same fractional positions.
    """

    def __init__(self, model: RoomModel, near: np.ndarray | None = None, *, noise: bool = True) -> None:
        from scipy.signal import fftconvolve

        self.model = model
        self._conv = fftconvolve
        taps = len(model.speaker_rir)
        self._y = np.zeros(0)  # speaker path output (before delay/drift), from sample self._y0 on
        self._y0 = 0
        self._tail = np.zeros(taps - 1)  # overlap-add tail of the convolution
        self._near = None if near is None else near.astype(np.float64)
        self._talker_tail = np.zeros(len(model.talker_rir) - 1)
        self._noise = noise
        self._n = 0  # microphone samples produced

    def read(self, played: np.ndarray) -> np.ndarray:
        frame = played.astype(np.float64) / 32768.0 if played.dtype == np.int16 else played.astype(np.float64)
        block = self._conv(self.model.loudspeaker(frame), self.model.speaker_rir)
        block[: len(self._tail)] += self._tail
        self._y = np.concatenate([self._y, block[: len(frame)]])
        self._tail = block[len(frame) :]
        n = np.arange(self._n, self._n + len(frame), dtype=np.float64)
        pos = self.model.delay_samples(n) - self._y0
        out = _read_at(self._y, pos)
        drop = max(0, int(pos[0]) - RATE)  # keep a second behind the oldest position still read
        if drop > RATE:
            self._y, self._y0 = self._y[drop:], self._y0 + drop
        if self._near is not None:
            seg = _fit(self._near[self._n : self._n + len(frame)], len(frame))
            talk = self._conv(seg, self.model.talker_rir)
            talk[: len(self._talker_tail)] += self._talker_tail
            out += talk[: len(frame)]
            self._talker_tail = talk[len(frame) :]
        if self._noise:
            out += self.model.noise(len(frame), self._n)
        self._n += len(frame)
        return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)


def build(room: Room | str) -> RoomModel:
    """A room's model (impulse responses computed once per process and room)."""
    spec = ROOMS[room] if isinstance(room, str) else room
    return RoomModel(spec, *_rirs(spec.dims, spec.rt60, spec.speaker, spec.mic, spec.talker, spec.echo_gain, spec.talker_gain))


def variant(room: str, **changes: object) -> Room:
    """A named room with some fields changed (``variant("small", drift_ppm=50)``)."""
    return replace(ROOMS[room], **changes)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=16)
def _rirs(dims, rt60, speaker, mic, talker, echo_gain, talker_gain) -> tuple[np.ndarray, np.ndarray]:
    import pyroomacoustics as pra

    absorption, order = pra.inverse_sabine(rt60, dims)
    shoebox = pra.ShoeBox(list(dims), fs=RATE, materials=pra.Material(absorption), max_order=order)
    shoebox.add_source(list(speaker))
    shoebox.add_source(list(talker))
    shoebox.add_microphone(list(mic))
    shoebox.compute_rir()
    return _normalise(shoebox.rir[0][0], echo_gain, rt60), _normalise(shoebox.rir[0][1], talker_gain, rt60, keep_lead=True)


def _normalise(rir: np.ndarray, gain: float, rt60: float, *, keep_lead: bool = False) -> np.ndarray:
    """Direct sound at index 0 (or the talker's travel time kept), peak ``gain``, cut 70 dB down."""
    h = np.asarray(rir, dtype=np.float64)
    peak = int(np.argmax(np.abs(h)))
    lead = 40  # pyroomacoustics centres each image on an 81-tap fractional-delay filter
    start = max(0, peak - lead) if keep_lead else peak
    h = h[start:]
    energy = np.cumsum(h[::-1] ** 2)[::-1]
    keep = int(np.searchsorted(-energy, -energy[0] * 1e-7))
    h = h[: max(keep, int(0.05 * RATE))]
    return h * (gain / np.abs(h).max())


def _read_at(y: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``y`` at fractional positions (linear interpolation; zero before 0 and past the end)."""
    base = np.floor(pos)
    frac = pos - base
    i = base.astype(np.int64)
    ok0 = (i >= 0) & (i < len(y))
    ok1 = (i + 1 >= 0) & (i + 1 < len(y))
    a = np.where(ok0, y[np.clip(i, 0, max(len(y) - 1, 0))], 0.0) if len(y) else np.zeros(len(pos))
    b = np.where(ok1, y[np.clip(i + 1, 0, max(len(y) - 1, 0))], 0.0) if len(y) else np.zeros(len(pos))
    return a + frac * (b - a)


def _fit(x: np.ndarray, count: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)[:count]
    return np.pad(x, (0, count - len(x))) if len(x) < count else x


@functools.lru_cache(maxsize=4)
def _fan(level: float, seed: int) -> np.ndarray:
    from scipy.signal import lfilter

    count = 30 * RATE  # 30 s, repeated for longer calls
    rng = np.random.default_rng(seed)
    b, a = [0.049922035, -0.095993537, 0.050612699, -0.004408786], [1, -2.494956002, 2.017265875, -0.522189400]  # a 1/f (pink) noise filter
    pinkish = lfilter(b, a, rng.standard_normal(count))
    t = np.arange(count) / RATE
    blades = sum(np.sin(2 * np.pi * f * t + k) / (k + 1) for k, f in enumerate((100.0, 200.0, 300.0)))  # blade-pass hum
    x = pinkish / np.std(pinkish) + 0.3 * blades / np.std(blades)
    return level * x / np.std(x)


def fan_noise(count: int, level: float, seed: int = 1, offset: int = 0) -> np.ndarray:
    """Fan-like room noise: pink noise plus a blade-pass hum, ``level`` RMS, repeatable by seed."""
    if level <= 0 or count == 0:
        return np.zeros(count)
    buf = _fan(level, seed)
    return buf[np.arange(offset, offset + count) % len(buf)]
