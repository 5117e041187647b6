"""The edge's budget of results held in memory: who waits, who is refused, who goes alone."""

import asyncio

from services.edge.result_memory import ReadBudget, ResultMemory


async def test_a_read_waits_for_room_and_goes_as_soon_as_it_is_given_back() -> None:
    memory = ResultMemory(100, wait_s=5)
    first = ReadBudget(1_000, memory)
    assert await first.hold(80)
    second = asyncio.create_task(ReadBudget(1_000, memory).hold(50))
    await asyncio.sleep(0.05)
    assert not second.done()

    first.release()

    assert await asyncio.wait_for(second, 1)
    assert memory.held == 50


async def test_a_read_refused_after_the_wait_holds_nothing() -> None:
    memory = ResultMemory(100, wait_s=0.05)
    assert await memory.take(60)
    budget = ReadBudget(1_000, memory)

    assert not await budget.hold(60)
    assert (memory.held, budget.held, budget.left) == (60, 0, 1_000)


async def test_a_result_larger_than_the_budget_is_read_when_it_is_alone() -> None:
    memory = ResultMemory(100, wait_s=0.05)
    budget = ReadBudget(1_000, memory)

    assert await budget.hold(500)
    assert not await ReadBudget(1_000, memory).hold(1)
    budget.release()
    assert memory.held == 0
