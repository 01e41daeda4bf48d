"""Benchmarks that print figures: ``python -m benchmarks.engine`` / ``.rest`` / ``.memory``."""
