"""A simulated Marketing API: flaky and rate limited per access token, like the real thing.

An in-process aiohttp server on 127.0.0.1 that both the Python and the JavaScript workers call
over HTTP (``Authorization: Bearer <token>``). Every call first passes a per-token sliding
window (``rate`` calls per ``window`` seconds, else ``429`` with ``Retry-After`` in seconds),
then fails with ``503`` with probability ``failure_rate``. The failure draws come from one
``random.Random(seed)``, one draw per admitted call, so a seed fixes which calls fail.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

__all__ = ["MarketingApi"]

Json = dict[str, Any]
Handler = Callable[[str, Json], Awaitable[Json]]


class ApiAnswer(Exception):
    """A non-2xx answer a handler gives (unknown parent object, failed check)."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class MarketingApi:
    """The server and its objects: campaigns, ad sets, ads, QA reports, notifications."""

    def __init__(
        self,
        seed: int,
        *,
        failure_rate: float = 0.1,
        rate: int = 4,
        window: float = 1.0,
        latency: float = 0.01,
    ) -> None:
        self.random = random.Random(seed)
        self.failure_rate = failure_rate
        self.rate = rate
        self.window = window
        self.latency = latency
        self.stats: Counter[str] = Counter()
        self.limited: Counter[str] = Counter()  # 429 answers per token
        self._calls: defaultdict[str, deque[float]] = defaultdict(deque)
        self._ids: Counter[str] = Counter()
        self.campaigns: dict[str, Json] = {}
        self.adsets: dict[str, Json] = {}
        self.ads: dict[str, Json] = {}
        self.notifications: list[Json] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    # lifecycle -------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        routes: dict[str, Handler] = {
            "/campaigns": self._campaign,
            "/adsets": self._adset,
            "/ads": self._ad,
            "/qa": self._qa,
            "/notifications": self._notification,
        }
        for path, handler in routes.items():
            app.router.add_post(path, self._endpoint(handler))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{host}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # the gate every call passes: token, rate limit, random failure ----------------------------

    def _endpoint(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not token:
                return web.json_response({"error": "no access token"}, status=401)
            self.stats["calls"] += 1
            await asyncio.sleep(self.latency)
            wait = self._admit(token)
            if wait > 0:
                self.stats["rate_limited"] += 1
                self.limited[token] += 1
                headers = {"Retry-After": f"{wait:.2f}"}
                body = {"error": "rate limited", "retryAfter": wait}
                return web.json_response(body, status=429, headers=headers)
            if self.random.random() < self.failure_rate:
                self.stats["failed"] += 1
                return web.json_response({"error": "temporarily unavailable"}, status=503)
            try:
                answer = await handler(token, await request.json())
            except ApiAnswer as exc:
                self.stats["refused"] += 1
                return web.json_response({"error": exc.error}, status=exc.status)
            self.stats["ok"] += 1
            return web.json_response(answer)

        return endpoint

    def _admit(self, token: str) -> float:
        """0 when ``token`` may call now (the call is counted), else seconds until it may."""
        now = time.monotonic()
        calls = self._calls[token]
        while calls and calls[0] <= now - self.window:
            calls.popleft()
        if len(calls) < self.rate:
            calls.append(now)
            return 0.0
        return max(0.05, math.ceil((calls[0] + self.window - now) * 100) / 100)

    def _new_id(self, kind: str) -> str:
        self._ids[kind] += 1
        return f"{kind}_{self._ids[kind]}"

    # the objects ------------------------------------------------------------------------------

    async def _campaign(self, token: str, body: Json) -> Json:
        cid = self._new_id("cmp")
        self.campaigns[cid] = {"name": body.get("name"), "token": token}
        return {"id": cid}

    async def _adset(self, token: str, body: Json) -> Json:
        if body.get("campaignId") not in self.campaigns:
            raise ApiAnswer(404, f"no campaign {body.get('campaignId')!r}")
        aid = self._new_id("as")
        self.adsets[aid] = {"campaignId": body["campaignId"], "name": body.get("name")}
        return {"id": aid}

    async def _ad(self, token: str, body: Json) -> Json:
        if body.get("adsetId") not in self.adsets:
            raise ApiAnswer(404, f"no ad set {body.get('adsetId')!r}")
        ad_id = self._new_id("ad")
        self.ads[ad_id] = {"adsetId": body["adsetId"], "name": body.get("name")}
        return {"id": ad_id}

    async def _qa(self, token: str, body: Json) -> Json:
        """Every ad named must exist and belong to an ad set of the campaign."""
        cid = body.get("campaignId")
        ad_ids = list(body.get("adIds") or [])
        wrong = [a for a in ad_ids if self.adsets.get(self.ads.get(a, {}).get("adsetId", ""), {})
                 .get("campaignId") != cid]  # fmt: skip
        if wrong or not ad_ids:
            raise ApiAnswer(422, f"QA failed: {len(wrong)} of {len(ad_ids)} ads not in {cid}")
        return {"ok": True, "checked": len(ad_ids)}

    async def _notification(self, token: str, body: Json) -> Json:
        nid = self._new_id("ntf")
        self.notifications.append({"id": nid, **body})
        return {"id": nid}
