"""The Python stages of the campaign story: campaign, ad sets, the join, QA.

The ads and the notification are JavaScript workers (``examples/js/workers.mjs``). Every API
call carries the task's access token; a ``429`` becomes :class:`RateLimited`, which cools off
every task of that token's workgroup while the other tokens' tasks go on.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp

from crew_aio.client import Client
from crew_aio.worker import RateLimited, Result, Worker

__all__ = [
    "RETRY",
    "ApiError",
    "CreateAdSet",
    "CreateCampaign",
    "JoinAds",
    "MarketingClient",
    "QualityCheck",
]

Json = dict[str, Any]

# every task of the story: many attempts (each 429 costs one) and a short error delay
RETRY: Final[Json] = {"remainingAttempts": 25, "errorDelayInSeconds": 0.2}


class ApiError(Exception):
    """The Marketing API answered an error other than a rate limit (the task is retried)."""


class MarketingClient:
    """POST JSON to the simulated Marketing API as one access token."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def post(self, token: str, path: str, body: Json) -> Json:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.post(self.url + path, json=body, headers=headers) as resp:
            data: Json = await resp.json()
            if resp.status == 429:
                seconds = float(resp.headers.get("Retry-After", "1"))
                raise RateLimited(seconds, f"{token} rate limited for {seconds:g} s")
            if resp.status >= 400:
                raise ApiError(f"POST {path} answered {resp.status}: {data.get('error')}")
            return data


class ApiWorker(Worker):
    def __init__(self, api: MarketingClient) -> None:
        self.api = api


class CreateCampaign(ApiWorker):
    """Create the campaign; its release creates every ad set and the join, atomically."""

    channel = "create_campaign"

    async def execute(self, input: Any, parents: list[Json]) -> Result:
        campaign = await self.api.post(input["token"], "/campaigns", {"name": input["name"]})
        cid = campaign["id"]
        adsets = [
            {
                **RETRY,
                "_child_id": f"adset-{i}",
                "name": f"adset {spec['name']}",
                "channel": "create_adset",
                "workgroup": spec["token"],
                "input": {"campaignId": cid, **spec},
            }
            for i, spec in enumerate(input["adsets"])
        ]
        join = {
            **RETRY,
            "_parent_ids": [a["_child_id"] for a in adsets],  # waits for every ad set
            "name": f"join ads of {input['name']}",
            "channel": "join_ads",
            "input": {"campaignId": cid, "name": input["name"], "token": input["token"]},
        }
        return Result(output={"campaignId": cid}, children=[*adsets, join])


class CreateAdSet(ApiWorker):
    """Create one ad set; its release creates its ads (continuations, one per ad)."""

    channel = "create_adset"
    concurrency = 4

    async def execute(self, input: Any, parents: list[Json]) -> Result:
        body = {"campaignId": input["campaignId"], "name": input["name"]}
        adset_id = (await self.api.post(input["token"], "/adsets", body))["id"]
        ads = [
            {
                **RETRY,
                "name": f"ad {name}",
                "channel": "create_ad",
                "workgroup": input["token"],
                "input": {"adsetId": adset_id, "name": name, "token": input["token"]},
            }
            for name in input["ads"]
        ]
        return Result(output={"adsetId": adset_id, "ads": len(ads)}, children=ads)


class JoinAds(Worker):
    """Runs once every ad set completed, so every ad exists (an ad set's release creates its
    ads in the same atomic step that completes it). Finds those ads' real task ids and
    creates QA with ``parentIds`` = all of them: a real join on tasks created by
    continuations; then notify after QA."""

    channel = "join_ads"

    def __init__(self, crew: Client) -> None:
        self.crew = crew

    async def execute(self, input: Any, parents: list[Json]) -> Result:
        adset_ids = {p["_id"] for p in parents}
        expected = sum(p["output"]["ads"] for p in parents)
        group_id = (await self.crew.get_task(parents[0]["_id"]))["taskGroupId"]
        ad_ids = [
            t["_id"]
            for t in await self.crew.list_tasks(group_id)
            if t["channel"] == "create_ad" and adset_ids.intersection(t["parentIds"])
        ]
        if len(ad_ids) != expected:  # cannot happen: releases are atomic
            raise RuntimeError(f"found {len(ad_ids)} ads, the ad sets created {expected}")
        token, name = input["token"], input["name"]
        qa = {
            **RETRY,
            "_child_id": "qa",
            "parentIds": ad_ids,  # real ids: QA waits for every ad (and for this task)
            "name": f"qa {name}",
            "channel": "qa",
            "workgroup": token,
            "input": {"campaignId": input["campaignId"], "token": token},
        }
        notify = {
            **RETRY,
            "_parent_ids": ["qa"],
            "name": f"notify {name}",
            "channel": "notify",
            "workgroup": token,
            "input": {"campaignId": input["campaignId"], "name": name, "token": token},
        }
        return Result(output={"ads": len(ad_ids)}, children=[qa, notify])


class QualityCheck(ApiWorker):
    """Runs after every ad: checks all of them with the API in one call."""

    channel = "qa"

    async def execute(self, input: Any, parents: list[Json]) -> Json:
        ad_ids = sorted(p["output"]["adId"] for p in parents if p["channel"] == "create_ad")
        body = {"campaignId": input["campaignId"], "adIds": ad_ids}
        report = await self.api.post(input["token"], "/qa", body)
        return {"checked": report["checked"], "adIds": ad_ids}
