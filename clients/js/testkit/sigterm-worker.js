// A worker process for the SIGTERM test: prints "started <id>" when execute begins, then takes
// SLOW_MS milliseconds. Reads CREW_URL, CHANNEL, SLOW_MS, CREW_POLL.
import { setTimeout as sleep } from "node:timers/promises";
import { Worker, runWorkers } from "../src/index.js";

class Slow extends Worker {
  channel = process.env.CHANNEL;
  concurrency = 2;
  async execute(input, parents, ctx) {
    process.stdout.write(`started ${ctx.task._id}\n`);
    // ctx.signal aborts at the shutdown timeout (or when the lease is lost): honour it
    await sleep(Number(process.env.SLOW_MS ?? 1500), undefined, { signal: ctx.signal });
    return { finished: true };
  }
}

await runWorkers([new Slow()], {
  poll: process.env.CREW_POLL === "1",
  shutdownTimeout: Number(process.env.SHUTDOWN_TIMEOUT ?? 10),
});
process.stdout.write("resolved\n");
