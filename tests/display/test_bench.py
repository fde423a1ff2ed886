"""``wallmesh bench display`` produces its stable names with real figures (values are not judged here)."""

from __future__ import annotations

import pytest

from appliance.bench import display


@pytest.mark.slow
def test_bench_display_quick():
    results = {r.name: r for r in display.run(quick=True)}
    assert set(results) == {"compositor_fps_5x1080p", "compositor_added_ms", "button_to_led_ms"}
    assert results["compositor_fps_5x1080p"].value > 0 and results["compositor_fps_5x1080p"].unit == "fps"
    assert results["compositor_added_ms"].value is not None and results["compositor_added_ms"].value >= 0
    assert results["button_to_led_ms"].value < 1000, "every press reached its LED"
