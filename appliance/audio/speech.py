"""Real speech for the room simulator and the audio bench, spoken by ``espeak-ng``.

espeak-ng is a formant synthesiser: it needs no model download and gives the same
samples for the same text, voice and version, so a test or a bench run is repeatable.
Each utterance is rendered once into ``~/.cache/wallmesh/speech/`` (a wav named by a
hash of what was asked) and read back from there on later runs; the returned signal
is float32 in [-1, 1] at 48 kHz mono, the rate the unit captures and sends.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np

from appliance.errors import WallmeshError

RATE = 48_000

#: Voices used by the bench: a US male, two female variants, a German male.
VOICES = ("en-us", "en+f3", "en-gb+f4", "de")

#: Sentences a meeting might hear; long enough to keep an echo canceller busy.
SENTENCES = {
    "en": (
        "Good morning everyone, thanks for joining the quarterly planning call.",
        "The first item on the agenda is the budget for the new conference rooms.",
        "Could you share the figures from last month before we move on?",
        "We measured the delay on every unit and it stayed well under one hundred milliseconds.",
        "Let us take five minutes and then continue with the hardware roadmap.",
        "I can hear you clearly now, the echo is gone since the update.",
    ),
    "de": (
        "Guten Morgen zusammen, danke dass ihr so kurzfristig dabei seid.",
        "Wir beginnen mit dem Bericht aus dem Werk in Stuttgart.",
        "Die neuen Geräte sind seit Montag in allen Besprechungsräumen installiert.",
        "Bitte schickt mir die Zahlen bis Freitag, dann fasse ich alles zusammen.",
    ),
}


class SpeechUnavailable(WallmeshError, RuntimeError):
    """espeak-ng is not installed or failed to speak."""


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "wallmesh" / "speech"


def speak(text: str, voice: str = "en-us", *, speed: int = 160, cache: Path | None = None) -> np.ndarray:
    """``text`` spoken by ``voice``: float32 samples at 48 kHz, leading/trailing silence kept."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechUnavailable("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = cache or cache_dir()
    key = hashlib.sha256(f"{_version(exe)}|{voice}|{speed}|{text}".encode()).hexdigest()[:20]
    path = folder / f"{key}.wav"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as tmp:
            pass
        try:
            proc = subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", tmp.name, text], capture_output=True, timeout=30, check=False)
            if proc.returncode != 0:
                raise SpeechUnavailable(f"espeak-ng could not speak with voice {voice!r}: {proc.stderr.decode(errors='replace').strip()}")
            os.replace(tmp.name, path)  # atomic: a parallel run never reads half a file
        finally:
            if os.path.exists(tmp.name):
                os.unlink(tmp.name)
    samples, rate = read_wav(path)
    return resample(samples, rate, RATE)


def talk(voice: str, seconds: float, *, first: int = 0, gap: float = 0.35) -> np.ndarray:
    """About ``seconds`` of continuous talk by ``voice`` (sentences with short pauses), 48 kHz."""
    lang = "de" if voice.startswith("de") else "en"
    sentences = SENTENCES[lang]
    parts: list[np.ndarray] = []
    total, i = 0, first
    need = int(seconds * RATE)
    while total < need:
        clip = speak(sentences[i % len(sentences)], voice)
        parts += [clip, np.zeros(int(gap * RATE), np.float32)]
        total += len(clip) + int(gap * RATE)
        i += 1
    return np.concatenate(parts)[:need]


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM wav file as float32 mono in [-1, 1] (channels averaged) and its rate."""
    with wave.open(str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 8388608.0
    else:
        raise ValueError(f"{path}: {8 * width}-bit wav is not supported")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data, rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int = RATE) -> None:
    """Mono 16-bit wav; float input in [-1, 1] is scaled, int16 is written as is."""
    if samples.dtype != np.int16:
        samples = to_int16(samples)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def to_int16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def resample(samples: np.ndarray, rate: int, to: int = RATE) -> np.ndarray:
    """Polyphase resampling (scipy), float32 out; the identity when the rates match."""
    if rate == to:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(to, rate)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


_VERSIONS: dict[str, str] = {}


def _version(exe: str) -> str:
    if exe not in _VERSIONS:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
        _VERSIONS[exe] = out.split("Data at")[0].strip()
    return _VERSIONS[exe]
