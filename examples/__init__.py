"""Runnable examples of crew_aio; see ``examples/README.md``."""
