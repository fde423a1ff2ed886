"""The unit's state machine: allowed moves, logged transitions, mute reset at call end."""

from __future__ import annotations

import logging

import pytest

from appliance.wall.machine import StateMachine, TransitionError
from appliance.wall.states import TRANSITIONS, UnitState


def test_starts_idle_unmuted_camera_on():
    m = StateMachine()
    assert m.state == UnitState.IDLE
    assert not m.muted and m.camera and not m.in_room


def test_call_life_is_logged(caplog):
    m = StateMachine(name="wall-1")
    with caplog.at_level(logging.INFO, logger="appliance.wall.machine"):
        m.to("joining", "button")
        m.to(UnitState.IN_CALL, "joined")
        m.to(UnitState.RECONNECTING, "server lost")
        m.to(UnitState.IN_CALL, "server back")
        m.to(UnitState.IDLE, "hang-up")
    text = caplog.text
    assert "wall-1: idle -> joining (button)" in text
    assert "in_call -> reconnecting (server lost)" in text
    assert "in_call -> idle (hang-up)" in text


@pytest.mark.parametrize("old", list(UnitState))
def test_only_listed_transitions_are_allowed(old):
    for new in UnitState:
        m = StateMachine()
        m.state = old
        if new == old or new in TRANSITIONS[old]:
            m.to(new, "test")
            assert m.state == new
        else:
            with pytest.raises(TransitionError):
                m.to(new, "test")
            assert m.state == old


def test_idle_cannot_jump_into_a_call():
    with pytest.raises(TransitionError, match="idle to in_call"):
        StateMachine().to(UnitState.IN_CALL)


def test_mute_resets_when_the_call_ends():
    m = StateMachine(mute_resets=True)
    m.to(UnitState.JOINING)
    m.to(UnitState.IN_CALL)
    assert m.set_muted(True)
    m.to(UnitState.RECONNECTING)
    assert m.muted, "a reconnect is not the end of the call"
    m.to(UnitState.IDLE)
    assert not m.muted


def test_mute_kept_when_configured():
    m = StateMachine(mute_resets=False)
    m.to(UnitState.JOINING)
    m.set_muted(True)
    m.to(UnitState.IDLE)
    assert m.muted


def test_error_carries_a_message_and_clears_on_recovery():
    m = StateMachine()
    m.fail("Camera not found — call IT", "camera open failed")
    assert m.state == UnitState.ERROR and m.message.startswith("Camera not found")
    m.to(UnitState.IDLE, "camera back")
    assert m.message == ""


def test_subscribers_see_every_change_and_can_unsubscribe():
    m = StateMachine()
    seen = []
    unsubscribe = m.subscribe(lambda mm: seen.append((mm.state.value, mm.muted, mm.camera)))
    m.to(UnitState.JOINING)
    assert not m.set_muted(False), "no change, no event"
    m.set_muted(True)
    m.set_camera(False)
    unsubscribe()
    m.to(UnitState.IDLE)
    assert seen == [("joining", False, True), ("joining", True, True), ("joining", True, False)]


def test_a_failing_subscriber_does_not_break_the_machine(caplog):
    m = StateMachine()
    m.subscribe(lambda mm: 1 / 0)
    good = []
    m.subscribe(lambda mm: good.append(mm.state))
    m.to(UnitState.JOINING)
    assert m.state == UnitState.JOINING and good == [UnitState.JOINING]
    assert "failed" in caplog.text
