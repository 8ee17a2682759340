"""tiltflow.threads.thread_map: order and errors as a plain loop's."""

from __future__ import annotations

import time

import pytest

from tiltflow.threads import thread_map


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_results_in_item_order(threads: int) -> None:
    def slow_first(i: int) -> int:
        time.sleep(0.02 if i == 0 else 0.0)  # the first item finishes last
        return i * i

    assert thread_map(slow_first, range(7), threads) == [i * i for i in range(7)]
    assert thread_map(slow_first, [], threads) == []


@pytest.mark.parametrize("threads", [1, 2])
def test_the_first_failing_item_raises(threads: int) -> None:
    def fail(i: int) -> int:
        if i in (5, 2):
            time.sleep(0.02 if i == 2 else 0.0)  # item 5 fails first in time
            raise ValueError(f"item {i}")
        return i

    with pytest.raises(ValueError, match="item 2"):
        thread_map(fail, range(8), threads)
