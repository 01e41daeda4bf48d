"""crew-ui 1.0.12 (npm @orchard-insights/crew-ui), served by its own ``crew-ui serve`` on another
port, against a real ``crew-aio serve``, driven in headless Chromium (Debian's ``chromium``
through Playwright with its executable path: no browser download).

What a crew-ui user does: the group list, a group's tasks, a live update when a worker completes
a task (socket.io, no reload), pause and resume, retry, reset, a task's detail and pluck, the
Operators page, and deleting the group. Every API call the page makes must succeed (CORS
included: the UI is on another origin).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import Server, free_port
from tests.support.wait import eventually

UI_DIR = Path(__file__).resolve().parent / "crew_ui"
CREW_UI = UI_DIR / "node_modules" / ".bin" / "crew-ui"
SHOTS = Path("/tmp/crew-ui-shots")  # screenshots of each step, to look at after a run
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
    pytest.importorskip("playwright.async_api", reason="needs playwright (pip, test extra)")
    return path


@pytest.fixture(scope="module")
def crew_ui_bin() -> Path:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("needs node and npm on PATH to run crew-ui")
    if not CREW_UI.exists():
        cmd = [npm, "ci", "--no-audit", "--no-fund"]
        proc = subprocess.run(cmd, cwd=UI_DIR, capture_output=True, text=True, timeout=240)
        if proc.returncode != 0 or not CREW_UI.exists():
            pytest.fail(f"`npm ci` in {UI_DIR} failed:\n{proc.stdout}\n{proc.stderr}")
    return CREW_UI


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, crew_ui_bin: Path) -> Iterator[tuple[str, str]]:
    """(API url, UI url): crew-aio serve, and crew-ui serve pointed at it."""
    SHOTS.mkdir(exist_ok=True)
    server = Server(tmp_path_factory.mktemp("crew-ui") / "data")
    server.start()
    port = free_port()
    log = tmp_path_factory.mktemp("crew-ui-log") / "ui.log"
    with log.open("w") as out:
        ui = subprocess.Popen(
            [str(crew_ui_bin), "serve", "--port", str(port), "--no-browser",
             "--url", server.url + "/"],
            cwd=UI_DIR, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180  # `crew-ui serve` builds the UI with vite first
        while "UI running at" not in log.read_text():
            if ui.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"crew-ui serve did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield server.url, f"http://127.0.0.1:{port}/"
    finally:
        ui.terminate()
        ui.wait(10)
        server.kill()


def call(api: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + "/api/v1" + path, method=method, data=data,
                                 headers={"content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def test_crew_ui_runs_against_crew_aio(chromium: str, stack: tuple[str, str]) -> None:
    from playwright.async_api import async_playwright

    api, ui = stack
    gid = call(api, "POST", "/task_groups", {"name": "campaign 42"})["_id"]
    call(api, "POST", f"/task_group/{gid}/tasks", [
        {"_child_id": 1, "name": "adset", "channel": "ui_c"},
        {"_child_id": 2, "_parent_ids": [1], "name": "ad", "channel": "ui_c"},
    ])  # fmt: skip
    call(api, "POST", "/operators", {"channel": "ui_ops", "url": "http://127.0.0.1:9/execute/x",
                                      "isPaused": True})  # fmt: skip
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("requestfailed", lambda r: problems.append(f"failed {r.url} {r.failure}"))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
                if r.status >= 400 and "/api/" in r.url else None)  # fmt: skip
        try:
            await group_page_updates_live(page, api, ui)
            await group_buttons_act(page, api, gid)
            await pluck_opens_the_copy(page, gid)
            await operators_page_lists(page)
            await delete_removes_the_group(page, api, ui, gid)
        finally:
            await browser.close()
    assert problems == []


async def group_page_updates_live(page: Any, api: str, ui: str) -> None:
    """The group list, a group's tasks, and a worker's completion shown without a reload."""
    from playwright.async_api import expect

    await page.goto(ui)
    await expect(page.get_by_text("campaign 42")).to_be_visible(timeout=15000)
    await page.screenshot(path=SHOTS / "1_groups.png")
    await page.get_by_text("campaign 42").first.click()
    await expect(page.get_by_role("cell", name="adset")).to_be_visible(timeout=15000)
    await expect(page.get_by_role("cell", name="ad", exact=True)).to_be_visible()
    await page.screenshot(path=SHOTS / "2_group.png")
    lease = call(api, "POST", "/channel/ui_c/acquire", {"workerId": "w"})["task"]
    release = {"workerId": "w", "output": {"ok": 1}}
    call(api, "POST", f"/task/{lease['_id']}/release", release)
    await expect(page.get_by_text("Percent Complete: 50.00%")).to_be_visible(timeout=10000)
    await page.screenshot(path=SHOTS / "3_live_update.png")


async def group_buttons_act(page: Any, api: str, gid: str) -> None:
    """Pause, Resume, Retry Failed Tasks and Reset do what the server then reports."""
    from playwright.async_api import expect

    await page.get_by_role("button", name="Pause").click()
    await expect(page.get_by_role("button", name="Resume")).to_be_visible(timeout=10000)
    assert call(api, "GET", f"/task_group/{gid}")["isPaused"] is True
    await page.get_by_role("button", name="Resume").click()
    await expect(page.get_by_role("button", name="Pause")).to_be_visible(timeout=10000)
    assert call(api, "GET", f"/task_group/{gid}")["isPaused"] is False
    await page.get_by_role("button", name="Retry Failed Tasks").click()
    await page.get_by_role("button", name="Retry", exact=True).click()
    await page.get_by_role("button", name="Reset").first.click()
    await page.get_by_role("dialog").get_by_role("button", name="Reset").click()
    await expect(page.get_by_text("Percent Complete: 50.00%")).to_be_hidden(timeout=10000)
    tasks = call(api, "GET", f"/task_group/{gid}/tasks")
    assert [t["isComplete"] for t in tasks] == [False, False]
    await page.screenshot(path=SHOTS / "4_after_reset.png")


async def pluck_opens_the_copy(page: Any, gid: str) -> None:
    """A task's detail, and Pluck: crew-ui opens the copy's new group."""
    from playwright.async_api import expect

    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name="adset"))
    await row.locator("button.p-button-secondary").click()
    await expect(page.get_by_role("dialog")).to_be_visible(timeout=10000)
    await page.screenshot(path=SHOTS / "5_task_detail.png")
    await page.get_by_role("button", name="Pluck").click()
    await page.wait_for_url(re.compile(r"/task_group/(?!" + gid + ")"), timeout=10000)
    await expect(page.get_by_text(re.compile("Pluck Task"))).to_be_visible(timeout=10000)
    await page.screenshot(path=SHOTS / "6_plucked.png")
    await expect(page.get_by_role("dialog")).to_be_hidden(timeout=10000)


async def operators_page_lists(page: Any) -> None:
    from playwright.async_api import expect

    # crew-ui's navbar items (PrimeVue Menubar `to:`) do not navigate with the PrimeVue 3 its
    # ^3.12 range resolves to today, and its static server has no SPA fallback for /operators:
    # go there through its router, as its own link would
    await page.evaluate("""() => {
        history.pushState({}, '', '/operators')
        dispatchEvent(new PopStateEvent('popstate'))
    }""")
    await expect(page.get_by_text("ui_ops")).to_be_visible(timeout=10000)
    await page.screenshot(path=SHOTS / "7_operators.png")


async def delete_removes_the_group(page: Any, api: str, ui: str, gid: str) -> None:
    await page.goto(ui)
    await page.get_by_text("campaign 42").first.click()
    await page.get_by_role("button", name="Delete").first.click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()

    def gone() -> bool:
        return gid not in {g["_id"] for g in call(api, "GET", "/task_groups")}

    await eventually(gone, 10, what="the group was not deleted")
    await page.screenshot(path=SHOTS / "8_deleted.png")
