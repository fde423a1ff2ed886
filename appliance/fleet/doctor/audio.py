"""``wallmesh doctor audio``: how the room's echo reaches the microphone, and how well it is cancelled.

The unit plays a probe through its configured speaker (``[audio] sink``) while it records
its microphone (``[audio] source``), both opened through
:mod:`appliance.capture.registry` as the daemon opens them: half a second of silence (the
room's noise), a log sweep, then a few seconds of espeak-ng speech (pink noise when
espeak-ng is missing). The microphone recording is run through the unit's processing
chain (:func:`appliance.audio.chain.process_signals`) and three signals, aligned sample for
sample, are analysed by :func:`analyse`, a pure function over arrays:

* **echo delay** — the peak of the phase-transform cross-correlation (GCC-PHAT) of
  speaker and microphone: the direct sound stands out as one sharp peak even in a
  reverberant room; its height over the correlation's background says whether there is
  an echo at all;
* **echo level** — the part of the microphone that is coherent with the speaker signal
  (Welch cross-spectra, after removing the delay), in dB relative to the speaker signal
  and to full scale: noise and talkers in the room do not count;
* **echo reduction** — microphone over processed output energy from one second after the
  probe starts (the canceller's first second is its learning time): ``good`` at 30 dB and
  more, ``poor`` under 18 dB.

``wallmesh doctor audio --record DIR`` writes ``far.wav`` (what was played), ``mic.wav``
(what the microphone heard) and ``out.wav`` (what the unit would send) into ``DIR``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance.fleet.doctor.findings import Finding

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

RATE = 48_000
FRAME = RATE // 100
LEAD_S = 0.5  # silence before the probe: the room's own noise
SWEEP_S = 1.5
TAIL_S = 0.5  # recorded after the probe, for the echo's arrival and reverberation
MAX_DELAY_MS = 500.0

GOOD_DB = 30.0  # echo reduction from which the canceller is doing its job
POOR_DB = 18.0  # below this the far end hears itself
LONG_DELAY_MS = 300.0
FOUND_RATIO = 12.0  # correlation peak over its background from which there is an echo

FIX_POOR = (
    "turn the speaker volume down, move the microphone away from the speaker (or the speaker off the wall it faces); "
    'for a speakerphone with its own echo canceller set [audio] processing = "device"'
)


def probe(seconds: float = 6.0, *, seed: int = 7) -> np.ndarray:
    """The signal played: silence, a log sweep 100 Hz–8 kHz, then speech; float in [-1, 1], 48 kHz."""
    from scipy.signal import chirp

    seconds = max(seconds, LEAD_S + SWEEP_S + 1.0)
    t = np.arange(int(SWEEP_S * RATE)) / RATE
    sweep = 0.25 * chirp(t, 100.0, SWEEP_S, 8000.0, method="logarithmic")
    fade = np.minimum(1.0, np.minimum(t, SWEEP_S - t) / 0.02)
    rest = int((seconds - LEAD_S - SWEEP_S) * RATE)
    try:
        from appliance.audio.speech import talk

        voice = talk("en-us", rest / RATE)
    except Exception as exc:  # noqa: BLE001 - espeak-ng missing or broken: noise does the job too
        log.info("doctor audio: no speech for the probe (%s); using noise", exc)
        rng = np.random.default_rng(seed)
        voice = rng.standard_normal(rest) * ((np.arange(rest) / RATE % 1.0) < 0.7)  # noise in bursts, like talk
    voice = np.asarray(voice, dtype=np.float64)[:rest]
    rms = math.sqrt(float(np.mean(voice**2))) or 1.0
    voice = voice * (10 ** (-24 / 20) / rms)  # about -24 dBFS, a talker's level
    out = np.concatenate([np.zeros(int(LEAD_S * RATE)), sweep * fade, voice])
    return np.clip(out, -1.0, 1.0)


def _f(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64)


def _db(x: float) -> float:
    return 10.0 * math.log10(max(x, 1e-20))


@dataclass(frozen=True)
class EchoAnalysis:
    """What :func:`analyse` found; levels in dB, delay in ms."""

    found: bool
    delay_ms: float | None
    echo_db: float | None  # echo relative to the speaker signal
    echo_dbfs: float | None  # echo at the microphone, relative to full scale
    noise_dbfs: float  # the room before the probe
    reduction_db: float | None  # microphone over processed output, from the probe's second second
    clipped: bool
    peak_ratio: float
    verdict: str  # "good", "fair", "poor" or "none" (no echo)
    summary: str
    fix: str


def gcc_phat(far: np.ndarray, mic: np.ndarray, max_lag: int, band: tuple[float, float] = (150.0, 7000.0)) -> tuple[float, float]:
    """(lag in samples, peak over background) of ``mic`` behind ``far`` by GCC-PHAT, 0..max_lag."""
    n = 1 << math.ceil(math.log2(len(far) + len(mic)))
    cross = np.conj(np.fft.rfft(far, n)) * np.fft.rfft(mic, n)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    mag = np.abs(cross)
    weight = np.where((freqs >= band[0]) & (freqs <= band[1]), 1.0 / np.maximum(mag, mag.max() * 1e-9), 0.0)
    corr = np.fft.irfft(cross * weight, n)[: max_lag + 1]
    a = np.abs(corr)
    k = int(np.argmax(a))
    background = float(np.median(a)) * 1.4826 + 1e-30  # a robust spread of the lags without an echo
    lag = float(k)
    if 0 < k < len(a) - 1:  # parabolic interpolation around the peak
        y0, y1, y2 = a[k - 1], a[k], a[k + 1]
        denom = y0 - 2 * y1 + y2
        if denom:
            lag = k + 0.5 * (y0 - y2) / denom
    return lag, float(a[k]) / background


def coherent_power(far: np.ndarray, mic: np.ndarray, *, nperseg: int = 8192) -> tuple[float, float]:
    """(power of the part of ``mic`` linearly explained by ``far``, power of ``far``); both already aligned."""
    from scipy.signal import csd, welch

    _, pff = welch(far, RATE, nperseg=nperseg)
    _, pfm = csd(far, mic, RATE, nperseg=nperseg)
    df = RATE / nperseg
    ok = pff > pff.max() * 1e-6
    return float(np.sum(np.abs(pfm[ok]) ** 2 / pff[ok]) * df), float(np.sum(pff) * df)


def analyse(far: np.ndarray, mic: np.ndarray, out: np.ndarray | None = None, *, max_delay_ms: float = MAX_DELAY_MS) -> EchoAnalysis:
    """The echo in ``mic`` of ``far`` (played over the same time, sample for sample), and how much
    of it ``out`` (the processed microphone) kept. int16 or float (full scale 1.0), 48 kHz."""
    f, m = _f(far), _f(mic)
    n = min(len(f), len(m))
    f, m = f[:n], m[:n]
    active = np.nonzero(np.abs(f) > 1e-3)[0]
    if len(active) == 0:
        raise ValueError("the speaker signal is silent: nothing to measure an echo of")
    onset, end = int(active[0]), int(active[-1]) + 1
    quiet = m[: onset] if onset >= RATE // 10 else m[: RATE // 10]
    noise_dbfs = _db(float(np.mean(quiet**2)))
    clipped = bool(np.max(np.abs(m)) >= 0.98) if n else False
    lag, ratio = gcc_phat(f, m, int(max_delay_ms * RATE / 1000))
    found = ratio >= FOUND_RATIO
    if not found:
        return EchoAnalysis(False, None, None, None, noise_dbfs, None, clipped, ratio, "none",
                            "no echo found: the microphone did not hear the speaker's probe", "")
    shift = round(lag)
    fa, ma = f[onset:end], m[onset + shift : end + shift]
    k = min(len(fa), len(ma))
    echo_p, far_p = coherent_power(fa[:k], ma[:k])
    echo_db, echo_dbfs = _db(echo_p) - _db(far_p), _db(echo_p)
    delay_ms = lag * 1000 / RATE
    reduction = None
    if out is not None:
        o = _f(out)[:n]
        lo, hi = onset + RATE + shift, min(end + shift, len(o))
        if hi - lo >= RATE // 2:
            reduction = _db(float(np.mean(m[lo:hi] ** 2))) - _db(float(np.mean(o[lo:hi] ** 2)))
    words = f"echo delay {delay_ms:.0f} ms, echo {echo_db:+.0f} dB against the speaker signal ({echo_dbfs:.0f} dBFS at the microphone)"
    fixes: list[str] = []
    if clipped:
        verdict = "poor"
        words += ", and the microphone clips"
        fixes.append("turn the speaker volume down: the microphone clips on the speaker's sound, which no canceller can undo")
    if reduction is None:
        verdict = "poor" if clipped else "fair"
        words += "; not processed"
        fixes.append("the processing chain could not run on the recording: see `wallmesh -v doctor audio`")
    else:
        words += f", reduced by {reduction:.0f} dB"
        if clipped:
            pass  # the verdict for a clipping microphone stands: cancelling cannot mend it
        elif reduction >= GOOD_DB:
            verdict = "good"
        elif reduction >= POOR_DB:
            verdict = "fair"
            fixes.append(FIX_POOR)
        else:
            verdict = "poor"
            fixes.append(FIX_POOR)
    if delay_ms > LONG_DELAY_MS:
        fixes.append(f"the echo comes {delay_ms:.0f} ms late: use a smaller speaker buffer ([audio] buffer_ms) or another audio device")
        if verdict == "good":
            verdict = "fair"
    return EchoAnalysis(True, delay_ms, echo_db, echo_dbfs, noise_dbfs, reduction, clipped, ratio, verdict,
                        f"{words}: {verdict}", "; ".join(fixes))


# -- recording on the unit's devices ---------------------------------------------------------


def _mono(samples: np.ndarray) -> np.ndarray:
    return samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1).astype(np.int16)


async def record(settings: Any, far: np.ndarray, *, sender: int = 0, prefill: int = 2) -> np.ndarray:
    """Play ``far`` (int16, 48 kHz mono) on the configured speaker while recording the
    configured microphone; returns the microphone, aligned with ``far`` frame for frame
    (frame ``k`` is read right after frame ``k`` is handed to the speaker)."""
    from appliance.capture import registry
    from appliance.capture.audioformat import audio_frame, frame_samples

    room = registry.simulated_room(settings, name="doctor")  # a simulated room's speaker and microphone are one room
    sink = registry.open_audio_sink(settings, prefix="audio", room=room)
    source = registry.open_audio_source(settings, sender=sender, prefix="audio", room=room)
    frames = len(far) // FRAME
    mic: list[np.ndarray] = []
    channels = getattr(sink, "channels", 1)

    def frame_of(samples: np.ndarray, pts: int) -> av.AudioFrame:
        return audio_frame(np.repeat(samples[:, None], channels, axis=1) if channels > 1 else samples, pts)

    await sink.start()
    try:
        await source.start()
        try:
            for k in range(prefill):  # a little ahead, so the speaker never runs dry between reads
                sink.write(frame_of(np.zeros(FRAME, np.int16), k * FRAME))
            for k in range(frames):
                sink.write(frame_of(far[k * FRAME : (k + 1) * FRAME], (k + prefill) * FRAME))
                mic.append(_mono(frame_samples(await source.read())))
        finally:
            await source.close()
    finally:
        await sink.close()
    got = np.concatenate(mic) if mic else np.zeros(0, np.int16)
    return np.pad(got, (0, max(0, len(far) - len(got))))[: len(far)]


def processing_binding(settings: Any) -> str:
    """The chain binding the unit runs for ``[audio] processing`` (``device``/``off``: none)."""
    if getattr(settings, "processing", "webrtc") != "webrtc":
        return "off"
    return str(getattr(settings, "binding", "webrtc") or "webrtc")


def check_echo(conf: Any, record_dir: Path, seconds: float = 6.0) -> list[Finding]:
    """Play the probe, record, process, write the three wav files and say what was found."""
    from appliance.audio.chain import process_signals
    from appliance.audio.processing import ProcessingUnavailable
    from appliance.audio.speech import write_wav
    from appliance.errors import DeviceError

    settings = conf.audio
    played = probe(seconds)
    far = np.clip(np.round(np.concatenate([played, np.zeros(int(TAIL_S * RATE))]) * 32767), -32768, 32767).astype(np.int16)
    far = far[: len(far) // FRAME * FRAME]
    try:
        mic = asyncio.run(record(settings, far))
    except DeviceError as exc:
        return [Finding("echo", "fail", f"cannot play and record: {exc}", "check the [audio] devices with `wallmesh doctor`")]
    record_dir.mkdir(parents=True, exist_ok=True)
    write_wav(record_dir / "far.wav", far, RATE)
    write_wav(record_dir / "mic.wav", mic, RATE)
    binding = processing_binding(settings)
    out: np.ndarray | None
    try:
        out, _ = process_signals(far, mic, binding=binding, delay_ms=float(getattr(settings, "device_delay_ms", 0.0)))
        write_wav(record_dir / "out.wav", out, RATE)
    except ProcessingUnavailable as exc:
        log.warning("doctor audio: %s", exc)
        out = None
    a = analyse(far, mic, out)
    where = f"speaker {settings.sink!r}, microphone {settings.source!r}"
    if not a.found:
        if settings.sink == "null" or settings.source == "synthetic":
            return [Finding("echo", "ok", f"{a.summary} ({where}: the speaker plays nothing the microphone could hear, so no echo is expected)")]
        return [Finding("echo", "warn", f"{a.summary} ({where})",
                        "if the probe was audible in the room, the microphone does not hear the room: check its cable and "
                        "[audio] input_device; if it was not, turn the speaker on and its volume up")]
    status = {"good": "ok", "fair": "warn", "poor": "fail"}[a.verdict]
    summary = a.summary
    if binding == "off":
        summary = f"{a.summary} (processing {getattr(settings, 'processing', 'off')!r}: the unit cancels nothing itself)"
    return [Finding("echo", status, summary, a.fix)]
