// The JavaScript stages of the campaign story: create_ad and notify.
// Run by `python -m examples.campaign` with CREW_URL and MARKETING_API_URL set.
import { RateLimited, Worker, runWorkers } from "../../clients/js/src/index.js";

const API = process.env.MARKETING_API_URL;
if (!API) throw new Error("MARKETING_API_URL is not set");

/** POST JSON to the simulated Marketing API as `token`; a 429 becomes RateLimited. */
async function post(token, path, body) {
  const res = await fetch(API + path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (res.status === 429) {
    const seconds = Number(res.headers.get("retry-after") ?? 1);
    throw new RateLimited(seconds, `${token} rate limited for ${seconds} s`);
  }
  if (!res.ok) throw new Error(`POST ${path} answered ${res.status}: ${data.error ?? ""}`);
  return data;
}

class CreateAd extends Worker {
  channel = "create_ad";
  concurrency = 8;

  async execute(input) {
    const ad = await post(input.token, "/ads", { adsetId: input.adsetId, name: input.name });
    return { adId: ad.id, adsetId: input.adsetId };
  }
}

class Notify extends Worker {
  channel = "notify";

  async execute(input, parents) {
    const qa = parents.find((p) => p.channel === "qa")?.output ?? { checked: 0 };
    const message = `campaign ${input.name} (${input.campaignId}): ${qa.checked} ads passed QA`;
    const sent = await post(input.token, "/notifications", { campaignId: input.campaignId, message });
    return { notificationId: sent.id, message };
  }
}

await runWorkers([new CreateAd(), new Notify()], {
  url: process.env.CREW_URL,
  shutdownTimeout: 5,
});
