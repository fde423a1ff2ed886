"""A background loop blocked in a store call must stop when it is cancelled, whatever
pymongo makes of the cancel (the server's stop waits for those loops)."""

from __future__ import annotations

import asyncio

import pytest
from pymongo.errors import AutoReconnect

from appliance.signaling.store import Store


async def _swallows_the_cancel() -> str:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        return "finished anyway"
    return "slept"


async def _turns_the_cancel_into_a_network_error() -> str:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        raise AutoReconnect("connection closed") from None
    return "slept"


@pytest.mark.parametrize("operation", [_swallows_the_cancel, _turns_the_cancel_into_a_network_error])
async def test_a_cancelled_store_call_raises_cancelled(operation) -> None:
    store = Store("mongodb://127.0.0.1:9/?directConnection=true", timeout_s=0.2)
    try:
        task = asyncio.create_task(store._call(operation()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)
        assert task.cancelled()
    finally:
        await store.close()


async def test_an_uncancelled_failure_is_still_store_unavailable() -> None:
    from appliance.errors import StoreUnavailable

    async def fails() -> None:
        raise AutoReconnect("connection refused")

    store = Store("mongodb://127.0.0.1:9/?directConnection=true", timeout_s=0.2)
    try:
        with pytest.raises(StoreUnavailable):
            await store._call(fails())
    finally:
        await store.close()
