"""``wallmesh audio process --far FAR.wav --mic MIC.wav --out OUT.wav``: the unit's microphone chain on files.

``FAR.wav`` is what the unit played (the speaker reference), ``MIC.wav`` what its microphone
captured over the same time, sample for sample. Both are mono wav at any rate; they are
resampled to 48 kHz as the unit captures, run through exactly the chain the unit runs
(echo cancellation, noise suppression, gain) and ``OUT.wav`` (48 kHz, 16-bit) is what the
unit would have sent.
"""

from __future__ import annotations

import argparse
import sys
import wave

from appliance.errors import WallmeshError


class AudioFileError(WallmeshError, OSError):
    """A wav file given on the command line cannot be read."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="audio_command", metavar="SUBCOMMAND")
    proc = sub.add_parser("process", help="run the microphone processing chain on wav files", description=__doc__)
    proc.add_argument("--far", required=True, metavar="FAR.wav", help="what the unit's speaker played (mono wav)")
    proc.add_argument("--mic", required=True, metavar="MIC.wav", help="what its microphone captured meanwhile (mono wav)")
    proc.add_argument("--out", required=True, metavar="OUT.wav", help="where to write what the unit would send (48 kHz)")
    proc.add_argument("--delay-ms", type=float, default=0.0, help="device delay from play-out to capture not in the files (default 0)")
    proc.add_argument("--binding", choices=("webrtc", "livekit", "off"), default="webrtc", help="audio processing binding (default webrtc)")
    parser.set_defaults(audio_parser=parser)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "audio_command", None) != "process":
        args.audio_parser.print_help()
        return 2
    import numpy as np

    from appliance.audio.chain import process_signals
    from appliance.audio.speech import RATE, read_wav, resample, to_int16, write_wav
    signals = []
    for path in (args.far, args.mic):
        try:
            samples, rate = read_wav(path)
        except (OSError, EOFError, ValueError, wave.Error) as exc:
            raise AudioFileError(f"{path}: cannot read it as a wav file ({exc})") from exc
        signals.append(to_int16(resample(samples, rate, RATE)))
    far, mic = signals
    if len(far) < len(mic):
        far = np.pad(far, (0, len(mic) - len(far)))
    out, chain = process_signals(far, mic, binding=args.binding, delay_ms=args.delay_ms)
    write_wav(args.out, out, RATE)
    print(
        f"{args.out}: {len(out) / RATE:.2f} s processed by {chain.processor.name} "
        f"({chain.cpu_ms_per_frame:.3f} ms CPU per 10 ms frame)",
        file=sys.stderr,
    )
    return 0
