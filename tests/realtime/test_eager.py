"""start_eagerly: runs a coroutine at once, and carries it on in a task only if it waits."""

from __future__ import annotations

import asyncio

import pytest

from notifier.realtime.eager import start_eagerly


async def test_a_coroutine_that_never_waits_finishes_before_the_call_returns() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("ran")

    assert start_eagerly(quick()) is None
    assert done == ["ran"]


async def test_a_coroutine_that_waits_goes_on_in_a_task_with_results_and_errors() -> None:
    steps: list[str] = []
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    failing: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def slow() -> None:
        steps.append("before")
        steps.append(await gate)
        await asyncio.sleep(0)
        try:
            await failing
        except ValueError as exc:
            steps.append(f"caught {exc}")

    task = start_eagerly(slow())
    assert task is not None and steps == ["before"]
    gate.set_result("after")
    failing.set_exception(ValueError("boom"))
    await task
    assert steps == ["before", "after", "caught boom"]


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    seen: list[str] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def stuck() -> None:
        try:
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = start_eagerly(stuck())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"] and never.cancelled()


async def test_errors_before_the_first_wait_reach_the_caller() -> None:
    async def broken() -> None:
        raise RuntimeError("at once")

    with pytest.raises(RuntimeError, match="at once"):
        start_eagerly(broken())
