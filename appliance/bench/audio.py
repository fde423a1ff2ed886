"""``wallmesh bench audio``: the microphone chain (echo cancellation, noise suppression, gain) in simulated rooms.

Every room of :data:`appliance.audio.room.ROOMS` is played three 20 s calls, with espeak-ng
voices (a different pair per room), everything the unit plays going through its output stage
(:meth:`~appliance.audio.room.RoomModel.play`: volume and limiter, which is also the echo
reference):

* far-end single talk in a quiet room: ERLE over the call after its first 2 s (so 18 s,
  mostly AEC3's steady state, as in a call), convergence from the far end's first word,
  the residual's level, AECMOS echo;
* double talk with a fan running: the far end talks alone for 8 s (:data:`NEAR_ONSET_S`: twice
  the ~4 s AEC3 spends in its conservative start-up phase, as a call where someone answers
  after a while), then the near-end talker joins, from the start of a sentence, for 24 s
  (:data:`DOUBLE_TALK_S`; the loss depends on which syllables overlap, so several sentences
  of each voice are pooled); the loss is measured over those 24 s; AECMOS other (first 20 s);
* the same talker and fan with the speaker silent: the double-talk loss's reference.

The product's binding gives the stable names; the other binding's figures carry ``_livekit``
(or ``_webrtc``) so the choice stays documented. CPU is process CPU time per 10 ms frame of
the whole chain (reference alignment included), so a binding that computes on threads of
its own is counted too.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from appliance.bench.report import Result

#: Voices (far end, near end) per room.
VOICES = {
    "small": ("en-us", "en+f3"),
    "large": ("de", "en-gb+f4"),
    "clipping": ("en+f3", "en-us"),
    "jump": ("en-gb+f4", "de"),
    "drift": ("en-us", "en-gb+f4"),
}
CALL_S = 20.0  # far-end single talk; AECMOS scores at most 20 s
NEAR_ONSET_S = 8.0  # double talk: the far end alone first, then both ...
DOUBLE_TALK_S = 24.0  # ... for this long (several sentences of each voice: the loss depends on what overlaps)
ERLE_SKIP_S = 2.0
QUIET = 0.0001  # the single-talk calls: microphone self-noise only (-80 dBFS)
LEVEL = 0.1  # speech at -20 dBFS RMS while active


def _norm(x: np.ndarray) -> np.ndarray:
    active = x[np.abs(x) > 1e-3]
    return x * (LEVEL / np.sqrt(np.mean(active**2)))


def measure_room(
    name: str, binding: str, seconds: float = CALL_S, mos: object | None = None, *, onset_s: float = NEAR_ONSET_S, double_s: float = DOUBLE_TALK_S
) -> dict[str, float | None]:
    """One room's figures for one binding (the product's processing configuration)."""
    from appliance.audio import metrics, room, speech
    from appliance.audio.chain import process_signals

    far_voice, near_voice = VOICES[name]
    spec = room.ROOMS[name]
    quiet, noisy = room.build(room.variant(name, noise_level=QUIET)), room.build(spec)
    long = quiet.play(_norm(speech.talk(far_voice, max(seconds, onset_s + double_s))))  # what the unit plays: volume, limiter
    far = long[: int(seconds * speech.RATE)]
    far_dt = long[: int((onset_s + double_s) * speech.RATE)]
    near = np.concatenate([np.zeros(int(onset_s * speech.RATE)), _norm(speech.talk(near_voice, double_s, first=2))])  # starts a sentence
    st, dt, alone = quiet.simulate(far), noisy.simulate(far_dt, near), noisy.simulate(np.zeros_like(far_dt), near)
    far16, far_dt16, silent = speech.to_int16(far), speech.to_int16(far_dt), np.zeros(len(far_dt), np.int16)
    cpu0, frames = time.process_time(), 0
    outs = []
    for f, cap in ((far16, st), (far_dt16, dt), (silent, alone)):
        out, chain = process_signals(f, cap.mic_int16(), binding=binding)
        outs.append(out)
        frames += chain.frames
    cpu = (time.process_time() - cpu0) * 1000 / frames
    o_st, o_dt, o_alone = outs
    skip = int(ERLE_SKIP_S * speech.RATE)
    fig: dict[str, float | None] = {
        "erle": metrics.erle_db(st.echo, o_st, skip_s=ERLE_SKIP_S),
        "echo_dbfs": metrics.level_dbfs(st.echo[skip:]),
        "residual_dbfs": metrics.level_dbfs(o_st[skip:]),
        "converge": metrics.converge_s(st.echo, o_st),
        "dtloss": metrics.doubletalk_loss_db(o_dt, o_alone, start_s=onset_s),
        "talker_to_echo_db": metrics.level_dbfs(dt.near[int(onset_s * speech.RATE) :]) - metrics.level_dbfs(dt.echo[int(onset_s * speech.RATE) :]),
        "cpu": cpu,
        "reconverge": metrics.converge_s(st.echo, o_st, onset_s=spec.jump_at_s) if spec.jump_at_s else None,
    }
    if mos is not None:
        fig["mos_echo"], _ = mos.score(far, st.mic, o_st, "st")  # type: ignore[attr-defined]
        fig["mos_echo_dt"], fig["mos_other"] = mos.score(far_dt, dt.mic, o_dt, "dt")  # type: ignore[attr-defined]  # its first 20 s  # type: ignore[attr-defined]
    return fig


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def _rooms(per_room: dict[str, dict[str, float | None]], key: str) -> str:
    return ", ".join(f"{n} {_show(f.get(key))}" for n, f in per_room.items())


def _show(v: float | None) -> str:
    return "never" if v is None else f"{v:.2f}"


def _levels(per_room: dict[str, dict[str, float | None]]) -> str:
    return ", ".join(f"{n} {_show(f.get('echo_dbfs'))}/{_show(f.get('residual_dbfs'))}" for n, f in per_room.items())


def figures(
    binding: str, rooms: list[str], seconds: float, mos: object | None, suffix: str, mos_problem: str,
    onset_s: float = NEAR_ONSET_S, double_s: float = DOUBLE_TALK_S,
) -> list[Result]:
    from appliance.audio.room import ROOMS

    per_room = {name: measure_room(name, binding, seconds, mos, onset_s=onset_s, double_s=double_s) for name in rooms}
    undistorted = {n: f for n, f in per_room.items() if n != "clipping"}
    s = suffix
    volume = ROOMS["clipping"].volume_db
    clip = per_room.get("clipping", {})
    results = [
        Result(f"aec_erle_db{s}", _median([f["erle"] for f in undistorted.values()]), "dB",
               f"{binding}: far-end single talk, {seconds:.0f} s calls, ERLE over {ERLE_SKIP_S:.0f}-{seconds:.0f} s "
               f"(AEC3's ~4 s start-up phase included), median of {_rooms(undistorted, 'erle')}; "
               f"echo/residual dBFS: {_levels(per_room)}"),
        Result(f"aec_erle_distorted_db{s}", _median([clip.get("erle")]) if clip else None, "dB",
               f"{binding}: clipping room, the unit's volume {volume:+.0f} dB (speech -8 dBFS RMS) held at -1 dBFS by its "
               f"output limiter (also the reference), loudspeaker y = tanh(x) saturating at full scale (1.5 dB compression, "
               f"5.5 % THD at -1 dBFS); ERLE as aec_erle_db; double-talk loss there {_show(clip.get('dtloss'))} dB"),
        Result(f"aec_doubletalk_loss_db{s}", _median([f["dtloss"] for f in undistorted.values()]), "dB",
               f"{binding}: far end alone 0-{onset_s:.0f} s, near-end talker (fan on) joins "
               f"{onset_s:.0f}-{onset_s + double_s:.0f} s; its level in double talk vs alone over that time (0 = untouched), "
               f"median of the undistorted rooms; {_rooms(per_room, 'dtloss')}; talker-to-echo dB at the mic: "
               f"{_rooms(per_room, 'talker_to_echo_db')}"),
        Result(f"aec_converge_s{s}", _median([f["converge"] for f in undistorted.values()]), "s",
               f"{binding}: far-end onset to residual 20 dB below the echo (held 1 s); {_rooms(per_room, 'converge')}"
               + "".join(f"; {n} re-converges {_show(f['reconverge'])} s after its 30 ms delay jump"
                         for n, f in per_room.items() if f.get("reconverge") is not None or n == "jump")),
        Result(f"aec_cpu_ms_per_10ms{s}", _median([f["cpu"] for f in per_room.values()]), "ms",
               f"{binding}: process CPU per 10 ms frame, whole chain at 48 kHz; {_rooms(per_room, 'cpu')}"),
    ]
    if mos is None:
        results += [Result(f"aecmos_echo{s}", None, "MOS", mos_problem), Result(f"aecmos_other{s}", None, "MOS", mos_problem)]
    else:
        results += [
            Result(f"aecmos_echo{s}", _median([f["mos_echo"] for f in per_room.values()]), "MOS",
                   f"{binding}: AECMOS 48 kHz, far-end single talk, median of {_rooms(per_room, 'mos_echo')}; "
                   f"double talk: {_rooms(per_room, 'mos_echo_dt')}"),
            Result(f"aecmos_other{s}", _median([f["mos_other"] for f in per_room.values()]), "MOS",
                   f"{binding}: AECMOS 48 kHz other degradations in double talk; {_rooms(per_room, 'mos_other')}"),
        ]
    return results


def run(quick: bool = False) -> list[Result]:
    from appliance.audio.aecmos import AecMos, MosUnavailable
    from appliance.audio.processing import DEFAULT_BINDING, ProcessingUnavailable
    from appliance.audio.room import ROOMS

    rooms = ["small", "large", "clipping"] if quick else list(ROOMS)
    seconds, onset, double = (12.0, 6.0, 8.0) if quick else (CALL_S, NEAR_ONSET_S, DOUBLE_TALK_S)
    mos: AecMos | None
    try:
        mos, problem = AecMos(), ""
    except MosUnavailable as exc:
        mos, problem = None, str(exc)
    results: list[Result] = []
    for binding in (DEFAULT_BINDING, *[b for b in ("webrtc", "livekit") if b != DEFAULT_BINDING]):
        suffix = "" if binding == DEFAULT_BINDING else f"_{binding}"
        try:
            results += figures(binding, rooms, seconds, mos, suffix, problem, onset, double)
        except ProcessingUnavailable as exc:
            results.append(Result(f"aec_erle_db{suffix}", None, "dB", str(exc)))
    return results
