"""The pure, synchronous task-graph engine (no asyncio, no I/O, no clock)."""

from crew_aio.engine.core import Engine
from crew_aio.engine.graph import TaskSpec
from crew_aio.engine.state import Change

__all__ = ["Change", "Engine", "TaskSpec"]
