"""How well the chain treats a simulated room: figures computed against the simulator's truth.

Signals are float (full scale 1.0) or int16, 48 kHz, aligned sample for sample with the
microphone. ``echo`` is the echo component the simulator put into the microphone;
``out`` is what the chain sent.
"""

from __future__ import annotations

import numpy as np

from appliance.audio.speech import RATE


def _f(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) / 32768.0 if x.dtype == np.int16 else x.astype(np.float64)


def erle_db(echo: np.ndarray, out: np.ndarray, *, skip_s: float = 2.0) -> float:
    """Echo return loss enhancement in far-end single talk: 10·log10(E[echo²] / E[out²]) from ``skip_s`` on.

    Everything the chain sent counts as residual (residual echo, comfort noise, processed noise)."""
    e, o = _f(echo), _f(out)
    n = min(len(e), len(o))
    s = int(skip_s * RATE)
    return float(10 * np.log10(np.sum(e[s:n] ** 2) / max(np.sum(o[s:n] ** 2), 1e-20)))


def converge_s(echo: np.ndarray, out: np.ndarray, *, onset_s: float = 0.0, target_db: float = 20.0, hold_s: float = 1.0) -> float | None:
    """Far-end onset → the time from which the residual stays ``target_db`` below the echo.

    ERLE is taken over sliding 0.5 s windows (0.1 s apart); the answer is the first window start
    ``t`` (after ``onset_s``) such that every window starting in ``[t, t + hold_s]`` reaches
    ``target_db``, plus the 0.1 s step, minus the onset. None if that never happens."""
    e, o = _f(echo), _f(out)
    n = min(len(e), len(o))
    step, width = RATE // 10, RATE // 2
    starts = np.arange(int(onset_s * RATE), n - width + 1, step)
    ce, co = np.concatenate([[0.0], np.cumsum(e[:n] ** 2)]), np.concatenate([[0.0], np.cumsum(o[:n] ** 2)])
    ee, oo = ce[starts + width] - ce[starts], co[starts + width] - co[starts]
    good = 10 * np.log10(np.maximum(ee, 1e-20) / np.maximum(oo, 1e-20)) >= target_db
    hold = round(hold_s * 10)
    for i in range(len(starts) - hold):
        if good[i : i + hold + 1].all():
            return float(starts[i] / RATE + 0.1 - onset_s)
    return None


def doubletalk_loss_db(out_dt: np.ndarray, out_near: np.ndarray, *, start_s: float, block_s: float = 0.02) -> float:
    """How much weaker the near-end talker comes out when the far end talks at the same time.

    ``out_dt`` is the chain's output for echo + talker + noise, ``out_near`` its output for
    talker + noise with a silent speaker (same chain, fresh state). In every 20 ms block from
    ``start_s`` where the talker is audible (within 30 dB of its loudest), ``out_dt`` is projected
    onto ``out_near``: the projection is the talker's part of ``out_dt`` (residual echo and noise
    do not correlate with it). Loss = 10·log10(Σ talker energy alone / Σ talker energy in double
    talk); 0 dB means the talker is untouched.
    """
    a, b = _f(out_dt), _f(out_near)
    w = int(block_s * RATE)
    s = int(start_s * RATE) // w
    count = min(len(a), len(b)) // w
    a = a[: count * w].reshape(count, w)[s:]
    b = b[: count * w].reshape(count, w)[s:]
    eb = np.sum(b**2, axis=1)
    audible = eb > eb.max() * 1e-3
    g = np.sum(a * b, axis=1)[audible] / eb[audible]
    kept = np.sum(np.clip(g, 0.0, None) ** 2 * eb[audible])
    return float(10 * np.log10(np.sum(eb[audible]) / max(kept, 1e-20)))


def level_dbfs(x: np.ndarray) -> float:
    f = _f(x)
    return float(10 * np.log10(max(np.mean(f**2), 1e-20)))
