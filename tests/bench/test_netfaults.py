"""``wallmesh bench faults``'s network figures: stable names, and a reason where not measured.

The scenarios themselves run in ``tests/integration/test_network_faults.py``.
"""

from __future__ import annotations

from appliance.bench import netfaults

NAMES = ["loss5_tier_step_s", "loss15_max_freeze_ms", "partition_rejoin_s", "turn_only_connect_s", "rate_limit_tier_step_s"]


async def test_without_a_lab_each_network_figure_says_why_it_was_not_measured(monkeypatch):
    monkeypatch.setattr(netfaults, "missing", lambda: "network namespaces need root")
    results = await netfaults.measure(quick=True)
    assert [r.name for r in results] == NAMES
    assert [r.unit for r in results] == ["s", "ms", "s", "s", "s"]
    assert all(r.value is None and "network namespaces need root" in r.detail for r in results)

