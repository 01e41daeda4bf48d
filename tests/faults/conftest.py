"""Every process a fault test started is killed after it, passed or failed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import cleanup


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    yield
    cleanup()
