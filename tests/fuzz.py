"""Fuzz a running crew-aio with schemathesis, from the OpenAPI document it serves: no 5xx.

Every operation gets valid (positive) and invalid (negative) requests, once with generated ids
and once with ids that exist (a group, a task, a channel made first), so bodies reach the code
behind the 404. Every response goes through schemathesis' ``not_a_server_error`` check.

    python -m tests.fuzz [--examples 200] [--seed N] [--url http://127.0.0.1:3000]

starts a server of its own on a free port unless ``--url`` is given, and prints
``N examples, M 5xx`` (and each 5xx); it exits 1 when there was any. The default test suite runs
the same with a small budget (tests/e2e/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup

__all__ = ["SERVER_FLAGS", "Report", "fuzz", "main"]

MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# long polls end at once: a generated waitSeconds would otherwise hold each request up to 60 s;
# operators the fuzzer creates POST nowhere (their generated URLs name any host)
SERVER_FLAGS = ("--max-wait-seconds", "0.01", "--operator-hosts", "operators.invalid")


@dataclass
class Report:
    examples: int = 0
    errors: list[str] = field(default_factory=list)  # one line per 5xx: request and answer
    by_status: dict[int, int] = field(default_factory=dict)
    unsatisfiable: list[str] = field(default_factory=list)  # nothing to generate in that mode

    def line(self) -> str:
        return f"{self.examples} examples, {len(self.errors)} 5xx"


def _world(url: str, session: requests.Session) -> dict[str, str]:
    """Real ids for the {id} of each kind of path: a group, a task in it, its channel."""
    v1 = f"{url}/api/v1"
    gid = session.post(f"{v1}/task_groups", json={"name": "fuzz"}).json()["_id"]
    tasks = [{"name": f"t{i}", "channel": "c", "key": "k"} for i in range(3)]
    created = session.post(f"{v1}/task_group/{gid}/tasks", json=tasks).json()
    session.post(f"{v1}/channel/c/acquire", json={"workerId": "w"})
    return {"task_group": gid, "task": created[0]["_id"], "channel": "c"}


def _real_id(path: str, ids: dict[str, str]) -> dict[str, str] | None:
    for kind in ("task_group", "task", "channel"):
        if f"/{kind}/{{id}}" in path:
            return {"id": ids[kind]}
    return None


def _strategies(schema: Any, ids: dict[str, str]) -> Iterator[tuple[str, Any]]:
    for result in schema.get_all_operations():
        operation = result.ok()
        real = _real_id(operation.path, ids)
        for mode in MODES:
            yield f"{operation.method.upper()} {operation.path} {mode}", operation.as_strategy(mode)
            if real is not None:
                strategy = operation.as_strategy(mode, path_parameters=real)
                yield f"{operation.method.upper()} {operation.path} {mode} real id", strategy


def fuzz(url: str, examples: int, seed: int | None = 0, headers: dict[str, str] | None = None
         ) -> Report:  # fmt: skip
    """Up to ``examples`` requests per operation, mode and id kind against the server at url."""
    report = Report()
    session = requests.Session()
    session.headers.update(headers or {})
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json", headers=headers or {})
    ids = _world(url, session)
    settings = hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: we record, never fail inside
        suppress_health_check=list(HealthCheck),
    )
    for name, strategy in _strategies(schema, ids):

        @settings
        @given(case=strategy)
        def run(case: Any) -> None:
            try:
                response = case.call(base_url=url, session=session, timeout=10)
            except requests.RequestException as exc:  # no answer at all is as bad as a 5xx
                report.examples += 1
                report.errors.append(f"{case.method} {case.formatted_path} -> {exc!r}")
                return
            report.examples += 1
            status = response.status_code
            report.by_status[status] = report.by_status.get(status, 0) + 1
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except FailureGroup as exc:
                title = exc.exceptions[0].title if exc.exceptions else "failure"
                body = response.text[:300]
                report.errors.append(f"{case.method} {case.formatted_path} -> {status} {body} "
                                     f"| {title}")  # fmt: skip

        if seed is not None:
            run = hypothesis.seed(seed)(run)
        try:
            run()
        except hypothesis.errors.Unsatisfiable:  # e.g. no invalid request for a bare GET
            report.unsatisfiable.append(name)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--examples", type=int, default=200, help="per operation, mode, id kind")
    parser.add_argument("--seed", type=int, default=None, help="fixed seed (default: random)")
    parser.add_argument("--url", default=None, help="a running server (default: start one)")
    args = parser.parse_args(argv)
    if args.url is not None:
        report = fuzz(args.url.rstrip("/"), args.examples, args.seed)
    else:
        from tests.support.server import Server

        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp) / "data", *SERVER_FLAGS)
            try:
                report = fuzz(server.start(), args.examples, args.seed)
            finally:
                server.kill()
    for error in report.errors:
        print(error)
    print("statuses:", dict(sorted(report.by_status.items())))
    print(report.line())
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
