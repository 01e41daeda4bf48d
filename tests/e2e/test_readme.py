"""The README's curl walkthrough works verbatim against a real server."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.server import Server

README = Path(__file__).parents[2] / "README.md"

pytestmark = pytest.mark.e2e


def walkthrough() -> str:
    text = README.read_text()
    after = text.split("Terminal 2", 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_walkthrough(server: Server) -> None:
    url = server.start()
    script = walkthrough().replace("http://127.0.0.1:3000", url)
    expected = [m.group(1) for m in re.finditer(r"^# (.+)$", script, re.M)]
    expected = [line for part in expected for line in part.split(" / ")]
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert out.stdout.splitlines() == expected
