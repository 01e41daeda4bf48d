import { test } from "node:test";
import assert from "node:assert/strict";
import * as crew from "crew-aio"; // self-reference through package.json "exports"
import { CrewError, RateLimited, Result, Worker } from "crew-aio";

test("the public surface is exactly these names", () => {
  assert.deepEqual(Object.keys(crew).sort(), ["Client", "CrewError", "RateLimited", "Result", "Worker", "runWorkers"]);
});

test("Result, RateLimited, Worker and CrewError defaults", async () => {
  assert.deepEqual({ ...new Result() }, {
    output: null,
    children: undefined,
    childrenDelayInSeconds: undefined,
    workgroupDelayInSeconds: undefined,
  });
  const limited = new RateLimited(12);
  assert.equal(limited.name, "RateLimited");
  assert.equal(limited.seconds, 12);
  assert.ok(limited instanceof Error);
  const worker = new Worker();
  assert.equal(worker.concurrency, 1);
  assert.equal(worker.prefetch, null); // adaptive
  await assert.rejects(worker.execute({}, []), /not implemented/);
  assert.equal(new CrewError("x", { status: 503 }).transient, true);
  assert.equal(new CrewError("x", { status: 409 }).transient, false);
});
