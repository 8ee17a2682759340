"""Running one function over many items on the step's threads.

numpy, BLAS, pocketfft and scipy.ndimage release the GIL in their loops, so per-frame or
per-batch work scales on threads without copying the (memory-mapped) stack into processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def thread_map(fn: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """``[fn(x) for x in items]``, on up to ``threads`` threads when there are two or more
    items. Results are in item order, and an exception is raised for the first item (in item
    order) that raised one, whatever ``threads``."""
    if threads <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


__all__ = ["thread_map"]
