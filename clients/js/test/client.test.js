import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Client, CrewError, Worker, runWorkers } from "../src/index.js";
import { resolveUrl } from "../src/util.js";
import { delay, startServer } from "../testkit/server.js";

let server;
let client;
before(async () => {
  server = await startServer();
  client = new Client({ url: server.url });
});
after(() => server?.stop());

test("wait resolves once every task is completed or failed", async () => {
  const channel = "wait-ok";
  const group = await client.createGroup("wait");
  await client.addTasks(group._id, [
    { name: "ok", channel, input: { fail: false } },
    { name: "bad", channel, input: { fail: true }, remainingAttempts: 1 },
  ]);
  const early = await client.getGroup(group._id);
  assert.equal(early.counts.ready, 2);
  class Mixed extends Worker {
    channel = channel;
    async execute(input) {
      await delay(300);
      if (input.fail) throw new Error("nope");
      return "fine";
    }
  }
  const ctrl = new AbortController();
  const running = runWorkers([new Mixed()], { url: server.url, poll: true, handleSignals: false, signal: ctrl.signal, logger: null });
  try {
    const started = Date.now();
    const done = await client.wait(group._id, { timeout: 10, interval: 0.05 });
    assert.ok(Date.now() - started >= 250);
    assert.equal(done.counts.completed, 1);
    assert.equal(done.counts.failed, 1);
  } finally {
    ctrl.abort();
    await running;
  }
});

test("wait counts tasks waiting behind a failed parent as done, paused ones as not", async () => {
  const group = await client.createGroup("blocked");
  const [parent] = await client.addTasks(group._id, [
    { name: "p", channel: "blocked", remainingAttempts: 1, _child_id: "p" },
    { name: "c", channel: "blocked-child", _parent_ids: ["p"] },
  ]);
  const lease = await client.http.request("POST", "/api/v1/channel/blocked/acquire", { workerId: "w" });
  assert.equal(lease.task._id, parent._id);
  await client.http.request("POST", `/api/v1/task/${parent._id}/release`, {
    workerId: "w",
    leaseId: lease.task.leaseId,
    error: { message: "x" },
  });
  const done = await client.wait(group._id, { timeout: 2 });
  assert.equal(done.counts.failed, 1);
  assert.equal(done.counts.waiting, 1);
  const paused = await client.createGroup("paused", { isPaused: true });
  await client.addTasks(paused._id, { name: "t", channel: "paused" });
  await assert.rejects(client.wait(paused._id, { timeout: 0.2, interval: 0.05 }), /still running/);
});

test("wait times out with a CrewError", async () => {
  const group = await client.createGroup("never");
  await client.addTasks(group._id, { name: "t", channel: "nobody-listens" });
  await assert.rejects(client.wait(group._id, { timeout: 0.3, interval: 0.05 }), (err) => {
    assert.ok(err instanceof CrewError);
    assert.equal(err.code, "timeout");
    return true;
  });
});

test("pause, resume, retry, reset and errors", async () => {
  const group = await client.createGroup("admin");
  const task = await client.addTasks(group._id, { name: "t", channel: "admin", remainingAttempts: 1 });
  assert.equal((await client.pause(group._id)).isPaused, true);
  assert.equal((await client.getTask(task._id)).status, "paused");
  await client.resume(group._id);
  assert.equal((await client.getTask(task._id)).status, "ready");
  const lease = await client.http.request("POST", "/api/v1/channel/admin/acquire", { workerId: "w" });
  await client.http.request("POST", `/api/v1/task/${task._id}/release`, {
    workerId: "w",
    leaseId: lease.task.leaseId,
    error: { message: "x" },
  });
  assert.equal((await client.getTask(task._id)).status, "failed");
  await client.retry(group._id, { remainingAttempts: 3 });
  assert.equal((await client.getTask(task._id)).remainingAttempts, 3);
  await client.reset(group._id);
  assert.deepEqual((await client.getTask(task._id)).errors, []);
  await assert.rejects(client.getTask("nope"), (err) => {
    assert.ok(err instanceof CrewError);
    assert.equal(err.status, 404);
    assert.equal(err.code, "not_found");
    return true;
  });
  await assert.rejects(client.addTasks(group._id, { channel: "no-name" }), (err) => err.status === 400);
});

test("network errors are CrewError with status 0", async () => {
  const dead = new Client({ url: "http://127.0.0.1:9" });
  await assert.rejects(dead.getGroup("x"), (err) => err instanceof CrewError && err.status === 0 && err.transient);
});

test("url and token come from options or the environment", async () => {
  assert.equal(resolveUrl(undefined, { CREW_URL: "http://a:1/" }), "http://a:1");
  assert.equal(resolveUrl(undefined, { CREW_API_BASE_URL: "http://b:2/api/v1/" }), "http://b:2");
  assert.equal(resolveUrl("http://c:3", { CREW_URL: "http://a:1" }), "http://c:3");
  const seen = [];
  const fake = async (url, init) => {
    seen.push([url, init.headers.authorization]);
    return new Response(JSON.stringify({ _id: "g" }), { status: 200 });
  };
  const saved = process.env.CREW_TOKEN;
  process.env.CREW_TOKEN = "from-env";
  try {
    await new Client({ url: "http://x", fetch: fake }).getGroup("g");
    await new Client({ url: "http://x", token: "opt", fetch: fake }).getGroup("g");
  } finally {
    if (saved === undefined) delete process.env.CREW_TOKEN;
    else process.env.CREW_TOKEN = saved;
  }
  assert.deepEqual(seen, [
    ["http://x/api/v1/task_group/g", "Bearer from-env"],
    ["http://x/api/v1/task_group/g", "Bearer opt"],
  ]);
});
