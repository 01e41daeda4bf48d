import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Client, RateLimited, Result, Worker, runWorkers } from "../src/index.js";
import { delay, eventually, memoryLogger, startServer } from "../testkit/server.js";

const MODES = [
  ["long-poll", { poll: true }],
  ...(process.env.CREW_JS_SKIP_WS ? [] : [["websocket", { poll: false }]]),
];

let server;
let client;
before(async () => {
  server = await startServer();
  client = new Client({ url: server.url });
});
after(() => server?.stop());

/** Run `workers` until `body` resolves; return the log lines. */
async function withWorkers(workers, options, body) {
  const ctrl = new AbortController();
  const logger = memoryLogger();
  const running = runWorkers(workers, {
    url: server.url,
    handleSignals: false,
    signal: ctrl.signal,
    logger,
    shutdownTimeout: 5,
    ...options,
  });
  try {
    await body(logger);
  } finally {
    ctrl.abort();
    await running;
  }
  const via = options.poll ? "rest" : "ws";
  for (const line of logger.lines.filter((l) => l.event === "worker.task")) assert.equal(line.via, via);
  return logger.lines;
}

let unique = 0;
const channelName = (base) => `${base}-${++unique}`;

for (const [mode, options] of MODES) {
  describe(`worker (${mode})`, () => {
    test("a 3-task DAG runs to completion, parents' outputs passed in", async () => {
      const channel = channelName("dag");
      class Step extends Worker {
        channel = channel;
        concurrency = 4;
        async execute(input, parents) {
          return { step: input.step, saw: parents.map((p) => p.output.step).sort() };
        }
      }
      const group = await client.createGroup("dag");
      await client.addTasks(group._id, [
        { name: "a", channel, input: { step: "a" }, _child_id: "a" },
        { name: "b", channel, input: { step: "b" }, _child_id: "b", _parent_ids: ["a"] },
        { name: "c", channel, input: { step: "c" }, _parent_ids: ["a", "b"] },
      ]);
      const lines = await withWorkers([new Step()], options, async () => {
        const done = await client.wait(group._id, { timeout: 10 });
        assert.equal(done.counts.completed, 3);
      });
      const tasks = await client.getGroupTasks(group._id);
      const byName = Object.fromEntries(tasks.map((t) => [t.name, t]));
      assert.deepEqual(byName.c.output, { step: "c", saw: ["a", "b"] });
      assert.deepEqual(byName.b.output, { step: "b", saw: ["a"] });
      const taskLines = lines.filter((l) => l.event === "worker.task");
      assert.equal(taskLines.length, 3);
      for (const line of taskLines) {
        assert.equal(line.channel, channel);
        assert.equal(line.outcome, "ok");
        assert.match(line.message, new RegExp(`^${channel} \\w+ ok in \\d+\\.\\d{3}s$`));
      }
    });

    test("children returned in a Result become descendants", async () => {
      const parent = channelName("parent");
      const child = channelName("child");
      class Parent extends Worker {
        channel = parent;
        async execute(input) {
          return new Result({
            output: { made: input.n },
            children: Array.from({ length: input.n }, (_, i) => ({ name: `c${i}`, channel: child, input: { i } })),
          });
        }
      }
      class Child extends Worker {
        channel = child;
        concurrency = 2;
        execute(input) {
          return [input.i * 10]; // a plain (non-async) return works too (a bare 0 is null, as in Crew)
        }
      }
      const group = await client.createGroup("children");
      const root = await client.addTasks(group._id, { name: "root", channel: parent, input: { n: 2 } });
      await withWorkers([new Parent(), new Child()], options, async () => {
        const done = await client.wait(group._id, { timeout: 10 });
        assert.equal(done.counts.completed, 3);
      });
      const tasks = await client.getGroupTasks(group._id);
      const kids = tasks.filter((t) => t.channel === child);
      assert.deepEqual(kids.map((t) => t.output[0]).sort(), [0, 10]);
      for (const kid of kids) assert.deepEqual(kid.parentIds, [root._id]);
      assert.deepEqual((await client.getTask(root._id)).output, { made: 2 });
    });

    test("a thrown error is an error release that spends an attempt", async () => {
      const channel = channelName("boom");
      class Boom extends Worker {
        channel = channel;
        async execute() {
          throw new TypeError("boom");
        }
      }
      const group = await client.createGroup("errors");
      const task = await client.addTasks(group._id, {
        name: "t",
        channel,
        remainingAttempts: 2,
        errorDelayInSeconds: 0,
      });
      const lines = await withWorkers([new Boom()], options, async () => {
        const done = await client.wait(group._id, { timeout: 10 });
        assert.equal(done.counts.failed, 1);
      });
      const failed = await client.getTask(task._id);
      assert.equal(failed.status, "failed");
      assert.equal(failed.remainingAttempts, 0);
      assert.equal(failed.errors.length, 2);
      assert.equal(failed.errors[0].type, "TypeError");
      assert.equal(failed.errors[0].message, "boom");
      const outcomes = lines.filter((l) => l.event === "worker.task").map((l) => l.outcome);
      assert.deepEqual(outcomes, ["error", "error"]);
      const line = lines.find((l) => l.event === "worker.task");
      assert.match(line.message, new RegExp(`^${channel} ${task._id} error in \\S+s: TypeError: boom$`));
    });

    test("RateLimited delays the whole workgroup", async () => {
      const channel = channelName("limited");
      class Limited extends Worker {
        channel = channel;
        async execute() {
          throw new RateLimited(60);
        }
      }
      const group = await client.createGroup("ratelimit");
      const [task, sibling] = await client.addTasks(group._id, [
        { name: "t", channel, workgroup: `wg-${channel}` },
        { name: "other", channel: `${channel}-other`, workgroup: `wg-${channel}` },
      ]);
      const started = Date.now();
      await withWorkers([new Limited()], options, async () => {
        await eventually(async () => (await client.getTask(task._id)).errors.length === 1);
      });
      const limited = await client.getTask(task._id);
      assert.equal(limited.remainingAttempts, 4);
      assert.equal(limited.errors[0].type, "RateLimited");
      const other = await client.getTask(sibling._id);
      assert.equal(other.status, "delayed");
      assert.ok(Date.parse(other.runAfter) >= started + 55_000, other.runAfter);
      assert.ok(Date.parse(limited.runAfter) >= started + 55_000, limited.runAfter);
    });

    test("a Result the server rejects (bad children) becomes an error release", async () => {
      const channel = channelName("badkids");
      class BadKids extends Worker {
        channel = channel;
        async execute() {
          return new Result({ output: 1, children: [{ name: "k", channel, _parent_ids: ["nope"] }] });
        }
      }
      const group = await client.createGroup("badkids");
      const task = await client.addTasks(group._id, { name: "t", channel, errorDelayInSeconds: 60 });
      await withWorkers([new BadKids()], options, async () => {
        await eventually(async () => (await client.getTask(task._id)).errors.length === 1);
      });
      const released = await client.getTask(task._id);
      assert.equal(released.status, "delayed");
      assert.equal(released.errors[0].type, "InvalidRelease");
      assert.match(released.errors[0].message, /nope/);
      assert.equal((await client.getGroupTasks(group._id)).length, 1);
    });

    test("an output that is not JSON becomes an InvalidRelease error", async () => {
      const channel = channelName("cyclic");
      class Cyclic extends Worker {
        channel = channel;
        async execute() {
          const output = {};
          output.self = output;
          return output;
        }
      }
      const group = await client.createGroup("cyclic");
      const task = await client.addTasks(group._id, { name: "t", channel, errorDelayInSeconds: 60 });
      await withWorkers([new Cyclic()], options, async () => {
        await eventually(async () => (await client.getTask(task._id)).errors.length === 1);
      });
      const released = await client.getTask(task._id);
      assert.equal(released.errors[0].type, "InvalidRelease");
      assert.match(released.errors[0].message, /circular/i);
    });

    test("heartbeats keep a 3 s task leased on a 1 s lease", async () => {
      const channel = channelName("slow");
      class Slow extends Worker {
        channel = channel;
        leaseSeconds = 1;
        async execute() {
          await delay(3000);
          return "slow done";
        }
      }
      const group = await client.createGroup("heartbeat");
      const task = await client.addTasks(group._id, { name: "t", channel });
      await withWorkers([new Slow()], options, async () => {
        const leased = await eventually(async () => {
          const t = await client.getTask(task._id);
          return t.status === "leased" && t;
        });
        assert.ok(Date.parse(leased.leaseExpiresAt) - Date.parse(leased.assignedAt) <= 1500);
        await delay(2000);
        const still = await client.getTask(task._id);
        assert.equal(still.status, "leased");
        assert.equal(still.leaseId, leased.leaseId);
        assert.ok(Date.parse(still.leaseExpiresAt) > Date.parse(leased.leaseExpiresAt));
        await client.wait(group._id, { timeout: 5 });
      });
      const done = await client.getTask(task._id);
      assert.equal(done.status, "completed");
      assert.equal(done.output, "slow done");
      assert.deepEqual(done.errors, []);
    });
  });
}

/**
 * A server of its own, `intercept(path)` consulted on each SDK request (a Response to answer
 * with instead, or nothing), and `count` tasks `{input: i}` run to the end by a poll-mode Echo
 * worker (output = input); the group's tasks.
 */
async function pollRun(name, count, intercept, logger = null) {
  const server = await startServer();
  const realFetch = globalThis.fetch;
  globalThis.fetch = (url, init) => intercept(new URL(url).pathname) ?? realFetch(url, init);
  try {
    const client = new Client({ url: server.url });
    const group = await client.createGroup(name);
    await client.addTasks(group._id, Array.from({ length: count }, (_, i) => ({ name: `t${i}`, channel: name, input: i })));
    class Echo extends Worker {
      channel = name;
      concurrency = 2;
      async execute(input) {
        return input;
      }
    }
    const ctrl = new AbortController();
    const running = runWorkers([new Echo()], { url: server.url, poll: true, handleSignals: false, signal: ctrl.signal, logger, waitSeconds: 1 });
    await client.wait(group._id, { interval: 0.05, timeout: 20 });
    ctrl.abort();
    await running;
    return await client.getGroupTasks(group._id, { limit: 1000 });
  } finally {
    globalThis.fetch = realFetch;
    await server.stop();
  }
}

test("poll mode: releases ride with acquires on exchange, a share of a request each", async () => {
  const seen = [];
  const tasks = await pollRun("exchange", 300, (path) => void seen.push(path));
  assert.ok(tasks.length === 300 && tasks.every((t) => t.status === "completed" && t.output === t.input));
  const exchanges = seen.filter((p) => p.endsWith("/exchange")).length;
  assert.equal(seen.filter((p) => p.endsWith("/release") || p.endsWith("/acquire")).length, 0);
  assert.ok(exchanges > 0 && exchanges < 100, `${exchanges} exchange requests for 300 tasks`);
});

test("poll mode against a server without exchange (Crew): acquire and release", async () => {
  let refused = 0;
  const logger = memoryLogger();
  const tasks = await pollRun(
    "crew-like",
    20,
    (path) => {
      if (!path.endsWith("/exchange")) return undefined;
      refused++;
      return Promise.resolve(new Response('{"message":"not found"}', { status: 404 }));
    },
    logger,
  );
  assert.ok(tasks.length === 20 && tasks.every((t) => t.status === "completed" && t.output === t.input));
  assert.ok(refused >= 1 && logger.lines.some((l) => l.event === "worker.exchange_unsupported"));
});

test("poll mode: one exchange carries at most 10,000 children together (a bigger release alone)", async () => {
  const { cut } = await import("../src/exchange.js");
  const queued = (...sizes) => sizes.map((n) => ({ body: n ? { children: new Array(n) } : { output: 1 } }));
  assert.equal(cut(queued(6000, 6000, 10)), 1);
  assert.equal(cut(queued(4000, 6000, 1)), 2);
  assert.equal(cut(queued(20000, 1)), 1);
  assert.equal(cut(queued(...new Array(600).fill(0))), 500);
  assert.equal(cut(queued(0, 0, 0)), 3);
});
