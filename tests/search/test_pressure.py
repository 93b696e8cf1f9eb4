"""Searches give way to RPCs: a late event loop shrinks their in-flight windows."""

from __future__ import annotations

import asyncio
import time

from gemfinder.search.pressure import HIGH_S, LOW_S, LoopLag


async def test_a_blocked_loop_shrinks_the_window_and_an_idle_one_grows_it_back():
    lag = LoopLag()
    lag.start()
    try:
        await _shrinks_and_grows(lag)
    finally:
        lag.stop()


async def _shrinks_and_grows(lag: LoopLag) -> None:
    await asyncio.sleep(0.05)
    assert lag.lag < HIGH_S
    for _ in range(3):
        time.sleep(0.06)  # a callback holding the loop for 60 ms
        await asyncio.sleep(0.015)
    assert lag.lag > HIGH_S
    assert lag.window(64, 2048, 4) == 32
    assert lag.window(5, 2048, 4) == 4  # never below the smallest
    deadline = time.monotonic() + 5
    while lag.lag >= LOW_S and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert lag.window(32, 2048, 4) == 64
    assert lag.window(2048, 2048, 4) == 2048  # never above the largest
