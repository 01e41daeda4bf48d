/**
 * REST mode (`poll: true`), as the Python SDK's (crew_aio/worker/exchange.py): releases and
 * acquires share requests on `POST /channel/:c/exchange`. A poller long-polls for as many tasks
 * as the worker has room for; a flusher sends the releases queued since its last request, one
 * request in flight at a time, each also asking for the room its releases make and carrying the
 * leases the adaptive prefetch gives back. A server without the route (Crew: 404) gets Crew's
 * protocol: `concurrency` loops of acquire, execute, release.
 */

import { CrewError } from "./errors.js";
import { backoffMs, sleep } from "./util.js";

const BATCH = 500; // releases (or returns) per request; the server takes up to 1,000
// children the releases of one request create together, at most (the server refuses a request
// over its create limit, 100,000 by default); a release with more goes alone
const CHILDREN = 10_000;
const MOST = 1000; // tasks one request may ask for
const NO_EXCHANGE = new Set([404, 405, 501]);

export class ExchangeSession {
  /** @param {import("./runner.js").ChannelRunner} runner */
  constructor(runner) {
    this.runner = runner;
    this.rt = runner.rt;
    this.path = `/api/v1/channel/${encodeURIComponent(runner.channel)}/exchange`;
    this.held = 0; // leases taken and not yet released or handed back
    this.asked = 0; // tasks asked for by requests in flight
    this.outbox = []; // {taskId, body, resolve, reject}
    this.returns = []; // leases given back, not yet sent
    this.flushing = false;
    this.crewOnly = false;
    this.roomWaiters = [];
  }

  room() {
    return this.runner.concurrency + this.runner.prefetch - this.held - this.asked;
  }

  roomChanged() {
    for (const wake of this.roomWaiters.splice(0)) wake();
  }

  waitForRoom() {
    return new Promise((resolve) => {
      this.roomWaiters.push(resolve);
      sleep(1000, this.rt.stopCtrl.signal).then(resolve);
    });
  }

  /** A release of a lease taken here: queued for the next exchange; its entry's answer. */
  release(task, body) {
    if (this.crewOnly) return this.rt.http.request("POST", `/api/v1/task/${encodeURIComponent(task._id)}/release`, body);
    JSON.stringify(body); // a body that is not JSON fails here, alone, not its whole batch
    return new Promise((resolve, reject) => {
      this.outbox.push({ taskId: task._id, body, resolve, reject });
      this.kick();
    });
  }

  kick() {
    if (this.flushing || !(this.outbox.length || this.returns.length)) return;
    this.flushing = true;
    const flushing = this.flush().finally(() => {
      this.flushing = false;
      this.kick(); // queued while the last answer was being read
    });
    this.runner.track(flushing);
  }

  async flush() {
    while (this.outbox.length || this.returns.length) {
      const batch = this.outbox.splice(0, cut(this.outbox));
      const returns = this.returns.splice(0, BATCH);
      // ask for the room these releases make, unless stopping
      const ask = this.rt.stopping ? 0 : Math.max(0, Math.min(MOST, this.room() + batch.length));
      await this.exchange(batch, returns, ask);
    }
  }

  async exchange(batch, returns, ask) {
    const body = {
      workerId: this.runner.workerId,
      count: ask,
      brief: true, // a successful release's entry is {}: the task is never read back
      releases: batch.map(({ taskId, body: fields }) => ({ taskId, ...fields })),
      returns: returns.map(({ task }) => (task.leaseId ? { taskId: task._id, leaseId: task.leaseId } : { taskId: task._id })),
    };
    if (this.runner.worker.leaseSeconds) body.leaseSeconds = this.runner.worker.leaseSeconds;
    this.asked += ask;
    let answer;
    try {
      answer = await this.rt.http.request("POST", this.path, body);
    } catch (err) {
      this.noExchange(err);
      for (const entry of batch) entry.reject(err); // their runners retry, as for /release
      for (const lease of returns) this.rerun(lease); // unconfirmed: it may still be ours
      return;
    } finally {
      this.asked -= ask;
      this.roomChanged();
    }
    const released = answer?.released ?? [];
    batch.forEach((entry, k) => {
      const got = released[k] ?? { error: { status: 502, message: "no answer for this release" } };
      if (got.error) entry.reject(new CrewError(got.error.message ?? "release refused", got.error));
      else entry.resolve(got.task ?? {});
    });
    const confirmed = answer?.returned ?? [];
    returns.forEach((lease, k) => {
      if (confirmed[k]?.task) this.held--;
      else this.rerun(lease);
    });
    this.take(answer?.tasks ?? []);
  }

  noExchange(err) {
    if (err instanceof CrewError && NO_EXCHANGE.has(err.status) && !this.crewOnly) {
      this.rt.log("warn", `no exchange route (${err.status}): Crew's acquire and release`, {
        event: "worker.exchange_unsupported",
      });
      this.crewOnly = true;
      this.roomChanged();
    }
  }

  take(leases) {
    for (const lease of leases) {
      if (!lease?.task) continue;
      this.held++;
      this.start(lease.task, lease.parents ?? []);
    }
  }

  start(task, parents) {
    const running = this.runner.runTask(task, parents, null, this).then((outcome) => {
      if (outcome !== "handed back") {
        this.held--; // a handed-back lease is counted off when its return is confirmed
        this.roomChanged();
      }
    });
    this.runner.track(running);
  }

  /** A lease given back that the server did not confirm runs here after all. */
  rerun(lease) {
    this.start(lease.task, lease.parents);
  }

  /** Adaptive prefetch moved: more room, or leases waiting here given back. */
  prefetchChanged() {
    this.roomChanged();
    const given = this.runner.handBack(this.runner.prefetch);
    if (!given.length) return;
    if (this.crewOnly) {
      for (const lease of given) this.rerun(lease); // Crew has no hand-back
      return;
    }
    this.returns.push(...given);
    this.kick();
  }

  /** The poller: long-poll for tasks while there is room, until stopped. */
  async run() {
    const { rt, runner } = this;
    runner.onPrefetch = () => this.prefetchChanged();
    let failures = 0;
    while (!rt.stopping && !this.crewOnly) {
      const room = this.room();
      if (room <= 0) {
        await this.waitForRoom();
        continue;
      }
      const ask = Math.min(room, MOST);
      const body = { workerId: runner.workerId, count: ask, waitSeconds: rt.waitSeconds };
      if (runner.worker.leaseSeconds) body.leaseSeconds = runner.worker.leaseSeconds;
      this.asked += ask;
      let answer;
      try {
        answer = await rt.http.request("POST", this.path, body, {
          signal: rt.stopCtrl.signal,
          timeoutSeconds: rt.waitSeconds + 30,
        });
        failures = 0;
      } catch (err) {
        this.noExchange(err);
        if (rt.stopping || this.crewOnly) continue;
        rt.log("warn", `acquire ${runner.channel} failed: ${err.message}`, { event: "worker.acquire_failed" });
        await sleep(backoffMs(failures++, { baseMs: 200 }), rt.stopCtrl.signal);
        continue;
      } finally {
        this.asked -= ask;
      }
      this.take(answer?.tasks ?? []);
    }
    if (this.crewOnly && !rt.stopping) await runner.pollLoops(null);
  }
}

/** How many queued releases the next request carries: BATCH at most, and no more than CHILDREN
 * children together unless the first alone has more. */
export function cut(outbox) {
  let children = 0;
  const most = Math.min(outbox.length, BATCH);
  for (let k = 0; k < most; k++) {
    children += outbox[k].body?.children?.length ?? 0;
    if (children > CHILDREN && k) return k;
  }
  return most;
}
