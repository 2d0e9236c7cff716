"""`map_in_threads`: results in order, a bounded number decoded ahead, errors where they happen."""

import itertools
import time
from collections.abc import Iterator

import pytest

from transferkit.data.threads import AHEAD, map_in_threads


def _slow_square(value: int) -> int:
    time.sleep(0.002 * (value % 3))  # later items often finish first
    return value * value


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_results_come_in_the_order_of_the_items(threads: int) -> None:
    assert list(map_in_threads(_slow_square, range(40), threads)) == [v * v for v in range(40)]


def test_no_more_than_a_few_items_per_thread_are_taken_ahead() -> None:
    taken: list[int] = []

    def counted() -> Iterator[int]:
        for value in itertools.count():
            taken.append(value)
            yield value

    results = map_in_threads(_slow_square, counted(), threads=2)
    first = list(itertools.islice(results, 5))
    assert first == [0, 1, 4, 9, 16]
    assert len(taken) <= 5 + AHEAD * 2  # an endless input is read only as far as needed
    results.close()


def test_an_error_is_raised_at_its_item() -> None:
    def fails_at_three(value: int) -> int:
        if value == 3:
            raise ValueError("three")
        return value

    results = map_in_threads(fails_at_three, range(10), threads=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="three"):
        next(results)
