import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Client } from "../src/index.js";
import { startServer } from "../testkit/server.js";

const SCRIPT = fileURLToPath(new URL("../testkit/sigterm-worker.js", import.meta.url));
const MODES = [["long-poll", "1"], ...(process.env.CREW_JS_SKIP_WS ? [] : [["websocket", "0"]])];

let server;
let client;
before(async () => {
  server = await startServer();
  client = new Client({ url: server.url });
});
after(() => server?.stop());

/** Spawn the worker script; resolve `started` on its first task, `exit` with code and output. */
function spawnWorker(env) {
  const child = spawn(process.execPath, [SCRIPT], {
    env: { ...process.env, CREW_URL: server.url, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const started = new Promise((resolve) => {
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      if (stdout.includes("started ")) resolve();
    });
  });
  const exit = new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal, stdout, stderr: () => stderr }));
  });
  return { child, started, exit: exit.then((r) => ({ ...r, stdout })) };
}

for (const [mode, poll] of MODES) {
  test(`SIGTERM lets the running task finish and release (${mode})`, async () => {
    const channel = `sigterm-${mode}`;
    const group = await client.createGroup("sigterm");
    const task = await client.addTasks(group._id, { name: "t", channel });
    const worker = spawnWorker({ CHANNEL: channel, CREW_POLL: poll, SLOW_MS: "1500" });
    await worker.started;
    const signalled = Date.now();
    worker.child.kill("SIGTERM");
    const { code, stdout, stderr } = await worker.exit;
    const took = Date.now() - signalled;
    assert.equal(code, 0, stderr());
    assert.match(stdout, /resolved/);
    assert.ok(took >= 1000, `exited after ${took} ms, before the task finished`);
    assert.ok(took < 6000, `exited after ${took} ms`);
    assert.match(stderr(), /worker stopping \(SIGTERM\)/);
    assert.match(stderr(), new RegExp(`${channel} ${task._id} ok in \\S+s`));
    const done = await client.getTask(task._id);
    assert.equal(done.status, "completed");
    assert.deepEqual(done.output, { finished: true });
    assert.deepEqual(done.errors, []);
  });
}

test("a task still running at the shutdown timeout is released as an error", async () => {
  const channel = "sigterm-timeout";
  const group = await client.createGroup("sigterm-timeout");
  const task = await client.addTasks(group._id, { name: "t", channel });
  const worker = spawnWorker({ CHANNEL: channel, CREW_POLL: "1", SLOW_MS: "20000", SHUTDOWN_TIMEOUT: "0.5" });
  await worker.started;
  worker.child.kill("SIGTERM");
  const { code, stderr } = await worker.exit;
  assert.equal(code, 0, stderr());
  const released = await client.getTask(task._id);
  assert.equal(released.errors.length, 1);
  assert.equal(released.errors[0].type, "WorkerShutdown");
  assert.equal(released.remainingAttempts, 4);
});
