"""Shared test helpers."""

from __future__ import annotations

import numpy as np
import pytest


class RecordingStack:
    """Wraps a stack and records which frames were read."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape = data.shape
        self.reads: list[int] = []

    def __getitem__(self, i: int) -> np.ndarray:
        self.reads.append(int(i))
        return self.data[i]


@pytest.fixture
def recording_stack() -> type[RecordingStack]:
    """The :class:`RecordingStack` class (a stack wrapper that records the frames read)."""
    return RecordingStack
