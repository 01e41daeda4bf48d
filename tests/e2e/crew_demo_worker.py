"""A worker that speaks to the server exactly as Crew's Python demo worker does.

Crew (``orchard-insights/crew``) ships a small Python worker in ``demo/python``. Workers written
from it are what a drop-in replacement must keep running, so this module reproduces its wire
behaviour, not its code:

- plain synchronous ``requests`` calls, one worker per thread, a fixed pause between polls;
- ``POST {base}api/v1/channel/{channel}/acquire`` with ``{"workerId": ...}`` and nothing else
  (no lease id, no long poll), reading ``data["task"]`` (and the task's own ``parents`` key,
  which Crew never sets: parents' data comes back beside the task, not inside it);
- ``POST {base}api/v1/task/{_id}/release`` with ``{"workerId", "output", "children"}`` on success
  or ``{"workerId", "error": str(exc)}`` on failure, plus ``workgroupDelayInSeconds`` when the
  job asked for a pause;
- the status code of either answer is never looked at: a non-2xx is neither raised nor retried.
  Only a failure to connect is retried, by the transport, as the demo's ``Retry`` adapter does.
  A body that is not JSON ends the round like any other exception: wait, then poll again.

Every call and its answer is written to a :class:`Journal` so a test can see what the server
said and in which order things ran; the journal changes nothing the worker sends.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

HTTP_TIMEOUT = 10.0  # the demo sets none; a bound keeps a broken server from hanging a test


@dataclass(frozen=True)
class Call:
    """One request a worker made and what came back (``status`` 0: no answer at all)."""

    worker_id: str
    channel: str
    kind: str  # "acquire" or "release"
    sent: float  # time.monotonic() just before sending
    received: float  # time.monotonic() just after the answer (or the exception)
    request: dict[str, Any]
    status: int
    body: str
    task_id: str | None = None


@dataclass
class Journal:
    """A thread-safe record of every call the workers made and every job they ran."""

    calls: list[Call] = field(default_factory=list)
    runs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (channel, task)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def ran(self, channel: str, task: dict[str, Any]) -> None:
        with self.lock:
            self.runs.append((channel, task))

    def executions(self, task_id: str) -> int:
        with self.lock:
            return sum(1 for _, task in self.runs if task.get("_id") == task_id)

    def snapshot(self) -> list[Call]:
        with self.lock:
            return list(self.calls)

    def refused(self) -> list[Call]:
        """Every answer that was not a 2xx (the workers ignored them, as the demo does)."""
        return [c for c in self.snapshot() if not 200 <= c.status < 300]


@dataclass
class WorkerOutput:
    output: dict[str, Any] = field(default_factory=dict)
    children: list[dict[str, Any]] = field(default_factory=list)


class DemoWorker:
    """Polls one channel, runs :meth:`execute_job`, releases; stops when :meth:`stop_work` is
    called. Subclasses set ``channel`` and implement :meth:`execute_job`."""

    channel = ""

    def __init__(self, base_url: str, journal: Journal, poll_interval: float = 0.05) -> None:
        self.id = str(uuid.uuid4())
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.journal = journal
        self.poll_interval = poll_interval
        self.restart_after_work = True  # look for the next task at once after finishing one
        self.pause_workgroup_seconds = 0
        self.shutting_down = False
        self.task: dict[str, Any] | None = None
        # releases go through a session that retries failed connections (never status codes)
        retry = Retry(total=4, backoff_factor=0.1, status_forcelist=None,
                      respect_retry_after_header=False)  # fmt: skip
        self.http = requests.Session()
        self.http.mount(self.base_url, HTTPAdapter(max_retries=retry))

    def execute_job(self, input: Any, parents: Any) -> WorkerOutput:
        raise NotImplementedError

    def start_work(self) -> None:
        while not self.shutting_down:
            restart = True
            while restart and not self.shutting_down:
                try:
                    restart = self.do_work() and self.restart_after_work
                except Exception:  # the demo logs and carries on; so does this worker
                    restart = False
            time.sleep(self.poll_interval)
        self.http.close()

    def stop_work(self) -> None:
        self.shutting_down = True

    def do_work(self) -> bool:
        """One round: acquire; if a task came, run it and release it. True when it succeeded."""
        url = f"{self.base_url}api/v1/channel/{self.channel}/acquire"
        data = self._post(requests.post, "acquire", url, {"workerId": self.id}, None).json()
        if not isinstance(data, dict) or data.get("task") is None:
            return False
        self.pause_workgroup_seconds = 0
        self.task = task = data["task"]
        assert isinstance(task, dict)
        self.journal.ran(self.channel, task)
        try:
            result = self.execute_job(task.get("input", {}), task.get("parents", []))
            release: dict[str, Any] = {"workerId": self.id, "output": result.output,
                                       "children": result.children}  # fmt: skip
            ok = True
        except Exception as exc:
            release = {"workerId": self.id, "error": str(exc)}
            ok = False
        if self.pause_workgroup_seconds > 0:
            release["workgroupDelayInSeconds"] = self.pause_workgroup_seconds
        task_id = str(task["_id"])
        url = f"{self.base_url}api/v1/task/{task_id}/release"
        self._post(self.http.post, "release", url, release, task_id)  # answer never read
        self.task = None
        return ok

    def _post(
        self, post: Any, kind: str, url: str, body: dict[str, Any], task_id: str | None
    ) -> requests.Response:
        """POST ``body`` and journal the answer, whatever its status."""
        sent = time.monotonic()
        try:
            r: requests.Response = post(url, json=body, timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            self.journal.add(Call(self.id, self.channel, kind, sent, time.monotonic(), body, 0,
                                  repr(exc), task_id))  # fmt: skip
            raise
        self.journal.add(Call(self.id, self.channel, kind, sent, time.monotonic(), body,
                              r.status_code, r.text, task_id))  # fmt: skip
        return r


class WorkerGroup:
    """Each worker in its own thread, as the demo's ``WorkerGroup`` runs them."""

    def __init__(self, workers: Iterable[DemoWorker]) -> None:
        self.workers = list(workers)
        self.threads = [threading.Thread(target=w.start_work, name=f"{w.channel}-{w.id[:8]}",
                                         daemon=True) for w in self.workers]  # fmt: skip

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self, timeout: float = 15.0) -> None:
        for w in self.workers:
            w.stop_work()
        for t in self.threads:
            t.join(timeout)
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"worker threads still running: {alive}"
