"""Workers the SDK tests run through ``crew-aio worker`` (a separate process)."""

from __future__ import annotations

import asyncio
from typing import Any

from crew_aio.worker import Worker


class SlowWorker(Worker):
    """Takes 2 s: long enough to be caught mid-task by a SIGTERM."""

    channel = "slow"
    concurrency = 2

    async def execute(self, input: Any, parents: list[dict[str, Any]]) -> Any:
        await asyncio.sleep(2.0)
        return {"slept": 2.0, "input": input}
