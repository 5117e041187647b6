"""Callers taking numbers from one counter at once share increments (no NATS: the counter is a
number in memory behind an awaitable increment)."""

import asyncio

import pytest

from services.common.shared_increments import SharedIncrements


class Counter:
    """A counter whose increment takes a moment; records each increment's size."""

    def __init__(self, *, fails: bool = False) -> None:
        self.value = 0
        self.increments: list[int] = []
        self.fails = fails

    async def __call__(self, subject: str, by: int) -> int:
        await asyncio.sleep(0.01)
        if self.fails:
            raise TimeoutError(subject)
        self.increments.append(by)
        self.value += by
        return self.value


async def test_callers_at_once_get_distinct_numbers_in_order_from_few_increments() -> None:
    counter = Counter()
    shared = SharedIncrements(counter)
    numbers = await asyncio.gather(*(shared.take("c") for _ in range(20)))
    assert numbers == list(range(1, 21))
    assert counter.increments == [20]
    # Callers arriving while an increment is under way share the next one.
    first = asyncio.create_task(shared.take("c"))
    await asyncio.sleep(0.001)
    later = await asyncio.gather(*(shared.take("c") for _ in range(5)))
    assert [await first, *later] == list(range(21, 27))
    assert counter.increments == [20, 1, 5]


async def test_counters_of_other_subjects_are_apart() -> None:
    counters = {"a": Counter(), "b": Counter()}
    shared = SharedIncrements(lambda subject, by: counters[subject](subject, by))
    numbers = await asyncio.gather(shared.take("a"), shared.take("b"), shared.take("a"))
    assert list(numbers) == [1, 1, 2]


async def test_a_failed_increment_reaches_every_caller_sharing_it_and_the_next_one_works() -> None:
    counter = Counter(fails=True)
    shared = SharedIncrements(counter)
    results = await asyncio.gather(*(shared.take("c") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(result, TimeoutError) for result in results)
    counter.fails = False
    assert await shared.take("c") == 1


async def test_a_caller_that_gives_up_leaves_a_gap_and_stops_nobody() -> None:
    counter = Counter()
    shared = SharedIncrements(counter)
    first = asyncio.create_task(shared.take("c"))
    await asyncio.sleep(0)
    leaving = asyncio.create_task(shared.take("c"))
    staying = asyncio.create_task(shared.take("c"))
    await asyncio.sleep(0)
    leaving.cancel()
    first.cancel()  # while its increment is under way: the increment still ends
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await staying == 2
    assert counter.value == 2
