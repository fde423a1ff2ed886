"""The sender-CPU benchmark's harness: the figure is computed right and a real run delivers."""

from __future__ import annotations

import pytest

from appliance.bench.media_cpu import FPS, Case, measure, summarise


def test_summary_uses_slices_that_kept_up():
    kept = [(0.05, 0.5, 15.0)] * 5 + [(0.09, 0.5, 15.0)]  # 30 fps slices at 0.1 cpu-s/s, one disturbed
    slices = kept + [(0.02, 0.5, 5.0)] * 2  # and two starved ones
    out = summarise(slices)
    assert out["cpu"] == pytest.approx(0.1)
    assert "6/8" in out["method"]
    assert out["cpu_raw"] == pytest.approx(0.38 / 4)


def test_summary_scales_a_path_that_never_keeps_up():
    slices = [(0.2, 0.5, 2.5)] * 8  # 5 fps, 0.4 cpu-s/s
    out = summarise(slices)
    assert out["cpu"] == pytest.approx(0.4 * FPS / 5)
    assert out["sent_fps"] == pytest.approx(5)
    assert "never kept up" in out["method"]


@pytest.mark.slow
def test_a_real_shared_run_sends_every_peer_the_pinned_bitrate():
    outcome, fps = measure(Case("shared", 2, warmup=1.5, seconds=2.0))
    assert "error" not in outcome, outcome
    assert 0 < outcome["cpu_raw"] < 2.0
    assert len(outcome["kbps"]) == 2 and len(set(outcome["kbps"])) == 1  # the same packets to both
    assert 150 < outcome["kbps"][0] < 900
    assert fps > 5
