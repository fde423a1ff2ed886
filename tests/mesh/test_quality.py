"""The quality policy: budget by mesh size, loss step-down, clean step-up with hysteresis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.mesh.quality import TIERS, QualityPolicy, ceiling, rtcp_fraction, tier_named


def test_tiers_are_the_designed_ones():
    assert [(t.width, t.height, t.bitrate) for t in TIERS] == [
        (320, 240, 250_000), (640, 480, 500_000), (1280, 720, 1_500_000), (1920, 1080, 3_000_000)]
    assert tier_named("hd").width == 1280
    with pytest.raises(ValueError):
        tier_named("8k")


def test_ceiling_follows_mesh_size_and_budget():
    budget = 9_000_000
    assert ceiling(2, budget).name == "fullhd"  # 1 × 3 M
    assert ceiling(4, budget).name == "fullhd"  # 3 × 3 M = 9 M fits exactly
    assert ceiling(5, budget - 1).name == "hd"
    assert ceiling(5, budget).name == "hd"  # 4 × 1.5 M
    assert ceiling(6, budget).name == "hd"  # 5 × 1.5 M = 7.5 M
    assert ceiling(7, budget).name == "hd"  # 6 × 1.5 M = 9 M fits exactly
    assert ceiling(8, budget).name == "medium"  # 7 × 1.5 M > 9 M
    assert ceiling(6, 1_000_000).name == "low"  # nothing fits: lowest, never nothing
    assert ceiling(2, 50_000_000, max_tier=tier_named("medium")).name == "medium"


@given(st.integers(1, 12), st.integers(100_000, 50_000_000))
def test_ceiling_respects_the_budget_whenever_any_tier_fits(participants, budget):
    tier = ceiling(participants, budget)
    receivers = max(1, participants - 1)
    if receivers * TIERS[0].bitrate <= budget:
        assert receivers * tier.bitrate <= budget
        better = [t for t in TIERS if t.bitrate > tier.bitrate]
        assert not better or receivers * better[0].bitrate > budget


def test_sustained_loss_steps_down_and_clean_time_steps_back_up():
    policy = QualityPolicy(upload_budget=6_000_000, down_after=2, up_after=10)
    t = 0.0
    assert policy.update(4, 0.0, t).name == "hd"  # 3 × 1.5 M fits 6 M
    # a loss blip shorter than down_after changes nothing
    policy.update(4, 0.2, t := t + 1)
    assert policy.update(4, 0.0, t := t + 0.5).name == "hd"
    # sustained loss: one step per down_after
    for _ in range(5):
        policy.update(4, 0.10, t := t + 0.5)
    assert policy.tier.name == "medium"
    for _ in range(4):
        policy.update(4, 0.10, t := t + 0.5)
    assert policy.tier.name == "low"
    for _ in range(20):
        policy.update(4, 0.10, t := t + 0.5)
    assert policy.tier.name == "low"  # floor
    # loss between the thresholds holds the tier (hysteresis)
    for _ in range(40):
        policy.update(4, 0.02, t := t + 0.5)
    assert policy.tier.name == "low"
    # clean for up_after: one step up at a time
    for _ in range(21):
        policy.update(4, 0.0, t := t + 0.5)
    assert policy.tier.name == "medium"
    for _ in range(21):
        policy.update(4, 0.0, t := t + 0.5)
    assert policy.tier.name == "hd"
    for _ in range(40):
        policy.update(4, 0.0, t := t + 0.5)
    assert policy.tier.name == "hd"  # never above what the budget allows


def test_mesh_size_changes_apply_at_once():
    policy = QualityPolicy(upload_budget=6_000_000)
    assert policy.update(2, 0.0, 0).name == "fullhd"
    assert policy.update(6, 0.0, 1).name == "medium"  # 5 × 1.5 M > 6 M
    assert policy.update(3, 0.0, 2).name == "fullhd"  # back up when peers leave: budget-driven


def test_bad_thresholds_are_rejected():
    with pytest.raises(ValueError):
        QualityPolicy(loss_low=0.1, loss_high=0.05)


def test_rtcp_fraction_lost_is_scaled_to_a_fraction(caplog):
    assert rtcp_fraction(None) is None
    assert rtcp_fraction(0) == 0.0
    assert rtcp_fraction(64) == 0.25
    assert rtcp_fraction(255) < 1.0
    policy = QualityPolicy()
    policy.update(3, 13, 0.0)  # an unscaled RTCP value: warned about, never a crash
    assert "rtcp_fraction" in caplog.text


def test_a_noisy_five_percent_link_steps_down_though_single_reports_dip_below_the_threshold():
    # what receiver reports read on a link that drops 5 %: around 4 %, one report in three under 3 %
    reports = [0.045, 0.02, 0.06, 0.035, 0.015, 0.05, 0.04, 0.025, 0.055]
    policy = QualityPolicy(upload_budget=6_000_000, down_after=2, up_after=10)
    t = 0.0
    assert policy.update(4, 0.0, t).name == "hd"
    stepped = None
    for i in range(40):  # four readings a second, each report standing for a second
        t += 0.25
        if policy.update(4, reports[(i // 4) % len(reports)], t).name != "hd":
            stepped = t
            break
    assert stepped is not None and stepped <= 4.0


def test_steady_loss_between_the_thresholds_holds_the_tier():
    policy = QualityPolicy(upload_budget=6_000_000, down_after=2, up_after=10)
    for i in range(200):
        tier = policy.update(4, 0.02, i * 0.25)
    assert tier.name == "hd"  # neither bad enough to step down nor clean enough to count as clean
