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


async def numbers(shared: SharedIncrements[str], subject: str, count: int) -> list[int]:
    """``count`` callers taking a number at once."""
    taken = await asyncio.gather(*(shared.take(subject, f"item-{n}") for n in range(count)))
    return [number for number, _ in taken]


async def test_callers_at_once_get_distinct_numbers_in_order_from_few_increments() -> None:
    counter = Counter()
    shared = SharedIncrements[str](counter, at_most=100)
    assert await numbers(shared, "c", 20) == list(range(1, 21))
    assert counter.increments == [20]
    # Callers arriving while an increment is under way share the next one.
    first = asyncio.create_task(shared.take("c", "first"))
    await asyncio.sleep(0.001)
    later = await numbers(shared, "c", 5)
    assert [(await first)[0], *later] == list(range(21, 27))
    assert counter.increments == [20, 1, 5]


async def test_each_caller_learns_the_whole_share_in_number_order() -> None:
    shared = SharedIncrements[str](Counter(), at_most=100)
    taken = await asyncio.gather(*(shared.take("c", item) for item in "abc"))
    [share] = {id(share): share for _, share in taken}.values()
    assert (share.first, share.items) == (1, ["a", "b", "c"])
    assert [number for number, _ in taken] == [1, 2, 3]


async def test_a_share_is_never_larger_than_at_most() -> None:
    counter = Counter()
    shared = SharedIncrements[str](counter, at_most=4)
    assert await numbers(shared, "c", 10) == list(range(1, 11))
    assert counter.increments == [4, 4, 2]


async def test_counters_of_other_subjects_are_apart() -> None:
    counters = {"a": Counter(), "b": Counter()}
    shared = SharedIncrements[str](lambda subject, by: counters[subject](subject, by), at_most=100)
    taken = await asyncio.gather(
        shared.take("a", "x"), shared.take("b", "y"), shared.take("a", "z")
    )
    assert [number for number, _ in taken] == [1, 1, 2]


async def test_a_failed_increment_reaches_every_caller_sharing_it_and_the_next_one_works() -> None:
    counter = Counter(fails=True)
    shared = SharedIncrements[str](counter, at_most=100)
    results = await asyncio.gather(
        *(shared.take("c", str(n)) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, TimeoutError) for result in results)
    counter.fails = False
    assert (await shared.take("c", "again"))[0] == 1


async def test_a_caller_that_gives_up_leaves_a_gap_and_stops_nobody() -> None:
    counter = Counter()
    shared = SharedIncrements[str](counter, at_most=100)
    first = asyncio.create_task(shared.take("c", "first"))
    await asyncio.sleep(0)
    leaving = asyncio.create_task(shared.take("c", "leaving"))
    staying = asyncio.create_task(shared.take("c", "staying"))
    await asyncio.sleep(0)
    leaving.cancel()
    first.cancel()  # while its increment is under way: the increment still ends
    with pytest.raises(asyncio.CancelledError):
        await leaving
    number, share = await staying
    assert number == 2
    assert share.items == ["staying"]
    assert counter.value == 2
