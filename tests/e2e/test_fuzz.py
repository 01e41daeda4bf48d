"""Schemathesis against a real server (a subprocess), from the OpenAPI document it serves:
valid and invalid requests to every operation, zero 5xx. ``python -m tests.fuzz`` runs the same
with a bigger budget and a random seed."""

from __future__ import annotations

import pytest

from tests.fuzz import SERVER_FLAGS, fuzz
from tests.support.server import Server

pytestmark = pytest.mark.e2e

EXAMPLES = 8  # per operation, generation mode and id kind: about 450 requests


def test_fuzzing_finds_no_server_error(server: Server) -> None:
    server.extra = SERVER_FLAGS
    report = fuzz(server.start(), EXAMPLES, seed=20261128)
    print(f"\nfuzz: {report.line()}; statuses {dict(sorted(report.by_status.items()))}")
    assert report.errors == []
    assert report.examples >= 300  # it did run (a schema that loads no operation would pass)
    assert report.by_status.get(200, 0) > 0 and report.by_status.get(400, 0) > 0
    log = server.log.read_text()
    assert "unhandled error" not in log and "Traceback" not in log
    assert server.terminate() == 0
