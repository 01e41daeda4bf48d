"""The Python worker SDK: subclass :class:`Worker`, run it with :func:`run_workers`.

>>> class Resize(Worker):
...     channel = "resize"
...     concurrency = 4
...     async def execute(self, input, parents):
...         return Result(output={"ok": True})

Imports no server code: only :mod:`crew_aio.client`, aiohttp, orjson and the stdlib.
"""

from crew_aio.worker.api import RateLimited, Result, Worker
from crew_aio.worker.runner import run, run_workers

__all__ = ["RateLimited", "Result", "Worker", "run", "run_workers"]
