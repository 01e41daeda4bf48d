import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Client, Worker, runWorkers } from "../src/index.js";
import { delay, eventually, memoryLogger, startProxy, startServer } from "../testkit/server.js";

let server;
let proxy;
let client;
before(async () => {
  server = await startServer();
  proxy = await startProxy(server.url);
  client = new Client({ url: server.url });
});
after(async () => {
  await proxy?.close();
  await server?.stop();
});

/** Start workers against the proxy; returns {logger, stop}. */
function start(workers, options = {}) {
  const ctrl = new AbortController();
  const logger = memoryLogger();
  const running = runWorkers(workers, {
    url: proxy.url,
    handleSignals: false,
    signal: ctrl.signal,
    logger,
    waitSeconds: 2,
    shutdownTimeout: 5,
    ...options,
  });
  return {
    logger,
    events: (name) => logger.lines.filter((l) => l.event === name),
    async stop() {
      ctrl.abort();
      await running;
    },
  };
}

test("push unavailable: long-polls meanwhile, then switches to the socket", async (t) => {
  proxy.blockWs = true;
  t.after(() => (proxy.blockWs = false));
  const channel = "fallback";
  class Echo extends Worker {
    channel = channel;
    async execute(input) {
      return input;
    }
  }
  const group = await client.createGroup("fallback");
  const run = start([new Echo()]);
  try {
    const first = await client.addTasks(group._id, { name: "rest", channel, input: 1 });
    await eventually(async () => (await client.getTask(first._id)).status === "completed");
    assert.equal(run.events("worker.task")[0].via, "rest");
    assert.ok(run.events("worker.ws_down").length >= 1);

    proxy.blockWs = false;
    await eventually(() => run.events("worker.ws_up").length === 1, { timeoutMs: 15_000 });
    await delay(2500); // the long-poll loop finishes its current acquire (waitSeconds 2)
    const second = await client.addTasks(group._id, { name: "ws", channel, input: 2 });
    await eventually(async () => (await client.getTask(second._id)).status === "completed");
    const last = run.events("worker.task").at(-1);
    assert.equal(last.taskId, second._id);
    assert.equal(last.via, "ws");
  } finally {
    await run.stop();
  }
});

test("a server without the WebSocket route means long-poll for good", async (t) => {
  proxy.ws404 = true;
  t.after(() => (proxy.ws404 = false));
  const channel = "no-ws";
  class Echo extends Worker {
    channel = channel;
    execute(input) {
      return input;
    }
  }
  const group = await client.createGroup("no-ws");
  const run = start([new Echo()]);
  try {
    const task = await client.addTasks(group._id, { name: "t", channel, input: "polled" });
    await eventually(async () => (await client.getTask(task._id)).status === "completed");
    assert.equal(run.events("worker.ws_unsupported").length, 1);
    assert.equal(run.events("worker.ws_up").length, 0);
    assert.equal(run.events("worker.task")[0].via, "rest");
  } finally {
    await run.stop();
  }
});

test("a task pushed over a socket that drops is released over REST; the socket comes back", async () => {
  const channel = "dropped";
  let finish;
  const gate = new Promise((resolve) => (finish = resolve));
  class Gated extends Worker {
    channel = channel;
    async execute() {
      await gate;
      return "after the drop";
    }
  }
  const group = await client.createGroup("dropped");
  const run = start([new Gated()]);
  try {
    await eventually(() => run.events("worker.ws_up").length === 1);
    const task = await client.addTasks(group._id, { name: "t", channel });
    await eventually(async () => (await client.getTask(task._id)).status === "leased");
    const upgrades = proxy.upgrades;
    proxy.dropAll();
    await eventually(() => run.events("worker.ws_up").length === 2, { timeoutMs: 15_000 });
    assert.ok(proxy.upgrades > upgrades);
    finish();
    await eventually(async () => (await client.getTask(task._id)).status === "completed");
    const done = await client.getTask(task._id);
    assert.equal(done.output, "after the drop");
    assert.deepEqual(done.errors, []);
    assert.equal(run.events("worker.task")[0].outcome, "ok");
  } finally {
    finish();
    await run.stop();
  }
});

test("a release is retried until the server answers", async (t) => {
  t.after(() => (proxy.refuse = false));
  const channel = "retry-release";
  let finish;
  let started = false;
  const gate = new Promise((resolve) => (finish = resolve));
  class Gated extends Worker {
    channel = channel;
    async execute() {
      started = true;
      await gate;
      return "eventually";
    }
  }
  const group = await client.createGroup("retry");
  const run = start([new Gated()], { poll: true });
  try {
    const task = await client.addTasks(group._id, { name: "t", channel });
    // wait for execute, not for "leased": the acquire's answer may still be on its way, and
    // cutting the network then would strand the lease until it expires (correct, but slow)
    await eventually(() => started);
    proxy.refuse = true;
    proxy.dropAll();
    finish();
    await eventually(() => run.events("worker.release_retry").length >= 2);
    assert.equal((await client.getTask(task._id)).status, "leased");
    proxy.refuse = false;
    await eventually(async () => (await client.getTask(task._id)).status === "completed");
    assert.equal((await client.getTask(task._id)).output, "eventually");
  } finally {
    finish();
    await run.stop();
  }
});

test("prefetched tasks wait for a free slot, their leases kept alive meanwhile", async () => {
  const channel = "prefetch";
  let running = 0;
  let most = 0;
  class Slow extends Worker {
    channel = channel;
    concurrency = 1;
    prefetch = 2;
    leaseSeconds = 0.6;
    async execute(input) {
      most = Math.max(most, ++running);
      await delay(400);
      running--;
      return input;
    }
  }
  const group = await client.createGroup("prefetch");
  const run = start([new Slow()], { url: server.url });
  try {
    await eventually(() => run.events("worker.ws_up").length === 1);
    const tasks = await client.addTasks(
      group._id,
      [0, 1, 2, 3].map((i) => ({ name: `t${i}`, channel, input: [i] })),
    );
    await delay(200);
    const leased = await Promise.all(tasks.map((t) => client.getTask(t._id)));
    assert.equal(leased.filter((t) => t.status === "leased").length, 3); // concurrency + prefetch
    await client.wait(group._id, { interval: 0.05, timeout: 10 });
    const done = await Promise.all(tasks.map((t) => client.getTask(t._id)));
    assert.deepEqual(done.map((t) => t.output[0]), [0, 1, 2, 3]);
    assert.ok(done.every((t) => t.errors.length === 0)); // the third waited 0.8 s > its lease
    assert.equal(most, 1);
  } finally {
    await run.stop();
  }
});

test("releases finishing together travel batched and are all acknowledged", async () => {
  const channel = "batched";
  let open;
  const gate = new Promise((resolve) => (open = resolve));
  class Gated extends Worker {
    channel = channel;
    concurrency = 8;
    async execute(input) {
      await gate;
      return input;
    }
  }
  const group = await client.createGroup("batched");
  const run = start([new Gated()], { url: server.url });
  try {
    await eventually(() => run.events("worker.ws_up").length === 1);
    const tasks = await client.addTasks(
      group._id,
      Array.from({ length: 8 }, (_, i) => ({ name: `t${i}`, channel, input: [i] })),
    );
    await eventually(async () => (await client.getGroup(group._id)).counts.leased === 8);
    open();
    await client.wait(group._id, { interval: 0.05, timeout: 10 });
    const done = await Promise.all(tasks.map((t) => client.getTask(t._id)));
    assert.deepEqual(done.map((t) => t.output[0]), [0, 1, 2, 3, 4, 5, 6, 7]);
    const lines = run.events("worker.task");
    assert.equal(lines.length, 8);
    assert.ok(lines.every((l) => l.via === "ws" && l.outcome === "ok"));
  } finally {
    await run.stop();
  }
});

for (const poll of [false, true]) {
test(`adaptive prefetch hands back what waits behind a long task (${poll ? "REST" : "WebSocket"})`, async () => {
  // two processes hot from short tasks (a large prefetch each), then long and short tasks in
  // turn: dealt one each in turn, every long one would wait in one process
  const channel = `adaptive-${poll}`;
  class Mixed extends Worker {
    channel = channel;
    concurrency = 1;
    long = [];
    done = 0;
    async execute(input) {
      if (input && typeof input.s === "number") {
        await delay(input.s * 1000);
        if (input.s >= 0.2) this.long.push(input.i);
      }
      this.done++;
      return null;
    }
  }
  const a = new Mixed();
  const b = new Mixed();
  const group = await client.createGroup("adaptive");
  const runA = start([a], { url: server.url, workerId: "proc-a", poll });
  const runB = start([b], { url: server.url, workerId: "proc-b", poll });
  try {
    if (!poll) await eventually(() => runA.events("worker.ws_up").length === 1 && runB.events("worker.ws_up").length === 1);
    await client.addTasks(group._id, Array.from({ length: 200 }, (_, i) => ({ name: `q${i}`, channel })));
    await eventually(() => a.done + b.done === 200, { timeoutMs: 10_000 });
    const mixed = [0, 1, 2, 3, 4, 5].map((i) => ({ name: `m${i}`, channel, input: { i, s: i % 2 ? 0.01 : 0.3 } }));
    await client.addTasks(group._id, mixed);
    await eventually(() => a.done + b.done === 206, { timeoutMs: 15_000 });
    assert.deepEqual([...a.long, ...b.long].sort(), [0, 2, 4]);
    assert.ok(a.long.length && b.long.length, `all long tasks in one process: ${a.long} / ${b.long}`);
    const tasks = await client.getGroupTasks(group._id, { limit: 1000 });
    assert.equal(tasks.length, 206);
    assert.ok(tasks.every((t) => t.errors.length === 0)); // a hand-back costs no attempt
  } finally {
    await runA.stop();
    await runB.stop();
  }
});
}
