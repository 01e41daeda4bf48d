"""Helpers shared by the test tiers and the benchmarks.

- :mod:`tests.support.server`: ``crew-aio serve`` as a subprocess on a free port (start, url,
  kill -9, SIGTERM, RSS), and :func:`~tests.support.server.free_port`.
- :mod:`tests.support.wait`: poll until something holds, sync and async, bounded, with a failure
  message that says what never held.
"""
