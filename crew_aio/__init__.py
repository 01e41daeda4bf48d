"""crew_aio: a durable DAG task server for flaky, rate-limited APIs (Crew v1 compatible)."""

from crew_aio.clock import FakeClock, SystemClock
from crew_aio.errors import CrewError

__version__ = "0.1.0"

__all__ = ["CrewError", "FakeClock", "SystemClock", "__version__"]
