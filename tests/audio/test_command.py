"""``wallmesh audio process`` on files gives exactly what the chain gives in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from appliance.audio import room, speech
from appliance.audio.chain import process_signals


def test_process_command_is_bit_identical_to_the_chain(tmp_path: Path, far_talk: np.ndarray, small_room: room.RoomModel) -> None:
    cap = small_room.simulate(far_talk[: 3 * speech.RATE])
    rate = 16_000  # files at another rate are resampled as the unit captures
    far_file, mic_file, out_file = tmp_path / "far.wav", tmp_path / "mic.wav", tmp_path / "out.wav"
    speech.write_wav(far_file, speech.to_int16(speech.resample(far_talk[: 3 * speech.RATE], speech.RATE, rate)), rate)
    speech.write_wav(mic_file, speech.to_int16(speech.resample(cap.mic, speech.RATE, rate)), rate)

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "audio", "process", "--far", str(far_file), "--mic", str(mic_file),
         "--out", str(out_file), "--delay-ms", "40"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    written, out_rate = speech.read_wav(out_file)
    assert out_rate == speech.RATE

    far = speech.to_int16(speech.resample(speech.read_wav(far_file)[0], rate, speech.RATE))
    mic = speech.to_int16(speech.resample(speech.read_wav(mic_file)[0], rate, speech.RATE))
    expected, _ = process_signals(far, mic, delay_ms=40)
    assert np.array_equal(speech.to_int16(written), expected)
    assert np.std(expected[speech.RATE :]) < 0.1 * np.std(mic[speech.RATE :])  # and it did cancel


def test_process_command_says_plainly_when_a_file_is_bad(tmp_path: Path) -> None:
    bad = tmp_path / "far.wav"
    bad.write_bytes(b"not a wav")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "audio", "process", "--far", str(bad), "--mic", str(bad), "--out", str(tmp_path / "o.wav")],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("wallmesh audio:") and "cannot read it as a wav file" in done.stderr
