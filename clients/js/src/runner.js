/** runWorkers: acquire (long-poll or WebSocket push), execute, heartbeat, release, shut down. */

import { LONG_AFTER_MS, Prefetch } from "./prefetch.js";
import { CrewError, RateLimited } from "./errors.js";
import { Http } from "./http.js";
import { releaseFields } from "./worker.js";
import { anySignal, backoffMs, defaultWorkerId, sleep } from "./util.js";
import { makeLogger } from "./log.js";
import { ExchangeSession } from "./exchange.js";
import { PushSession } from "./push.js";

const enc = encodeURIComponent;

/**
 * Run workers until SIGTERM/SIGINT (or `options.signal` aborts), then stop taking tasks, let
 * running ones finish (at most `shutdownTimeout` seconds), release them and resolve.
 *
 * @param {import("./worker.js").Worker[]} workers
 * @param {{url?: string, token?: string, poll?: boolean, workerId?: string,
 *   waitSeconds?: number, shutdownTimeout?: number, handleSignals?: boolean,
 *   signal?: AbortSignal, logger?: Function | object | null, fetch?: typeof fetch}} [options]
 */
export async function runWorkers(workers, options = {}) {
  await new Runtime(options).run(workers);
}

class Runtime {
  constructor(options) {
    this.options = options;
    this.http = new Http(options);
    this.log = makeLogger(options.logger);
    this.workerId = options.workerId ?? defaultWorkerId();
    this.waitSeconds = options.waitSeconds ?? 30;
    this.shutdownMs = (options.shutdownTimeout ?? 30) * 1000;
    this.stopping = false;
    this.stopCtrl = new AbortController(); // aborts acquires and sleeps on stop
    this.hardCtrl = new AbortController(); // aborts executes still running at the deadline
  }

  async run(workers) {
    if (!workers.length) throw new TypeError("runWorkers needs at least one worker");
    const seen = new Set();
    const runners = workers.map((worker) => {
      if (!worker.channel) throw new TypeError(`${worker.constructor.name} has no channel`);
      if (seen.has(worker.channel)) throw new TypeError(`two workers for channel ${worker.channel}`);
      seen.add(worker.channel);
      return new ChannelRunner(worker, this);
    });
    const onSignal = (name) => {
      if (this.stopping) {
        this.log("warn", `${name} again: abandoning running tasks`, { event: "worker.shutdown_timeout" });
        this.hardCtrl.abort();
      }
      this.stop(name);
    };
    const onTerm = () => onSignal("SIGTERM");
    const onInt = () => onSignal("SIGINT");
    const handle = this.options.handleSignals ?? true;
    if (handle) {
      process.on("SIGTERM", onTerm);
      process.on("SIGINT", onInt);
    }
    const external = this.options.signal;
    const onAbort = () => this.stop("signal");
    if (external?.aborted) this.stop("signal");
    external?.addEventListener("abort", onAbort, { once: true });
    this.log("info", `worker ${this.workerId} started: ${[...seen].join(", ")} on ${this.http.url}`, {
      event: "worker.started",
    });
    try {
      await Promise.all(runners.map((runner) => runner.run()));
    } finally {
      clearTimeout(this.hardTimer);
      external?.removeEventListener("abort", onAbort);
      if (handle) {
        process.off("SIGTERM", onTerm);
        process.off("SIGINT", onInt);
      }
    }
    this.log("info", `worker ${this.workerId} stopped`, { event: "worker.stopped" });
  }

  stop(reason) {
    if (this.stopping) return;
    this.stopping = true;
    this.log("info", `worker stopping (${reason}): no new tasks, finishing running ones`, { event: "worker.stopping" });
    this.stopCtrl.abort();
    this.hardTimer = setTimeout(() => {
      this.log("warn", `tasks still running after ${this.shutdownMs / 1000}s: releasing them as WorkerShutdown`, {
        event: "worker.shutdown_timeout",
      });
      this.hardCtrl.abort();
    }, this.shutdownMs);
    this.hardTimer.unref?.();
  }
}

export class ChannelRunner {
  constructor(worker, rt) {
    this.worker = worker;
    this.rt = rt;
    this.channel = worker.channel;
    this.concurrency = Math.max(1, Math.floor(worker.concurrency ?? 1));
    this.prefetcher = new Prefetch(this.concurrency, worker.prefetch);
    this.onPrefetch = null; // the push session's: tell the server, hand back what waits
    this.workerId = rt.workerId;
    this.inflight = new Set();
    this.waiters = [];
    this.executing = 0; // executes running: at most `concurrency`, prefetched tasks wait
    this.slotQueue = [];
  }

  get prefetch() {
    return this.prefetcher.value;
  }

  /** Resolve true once one of the `concurrency` execute slots is ours; false when the lease
   * was handed back meanwhile (see handBack): it will not run here. */
  takeSlot(lease) {
    if (this.executing < this.concurrency) {
      this.executing++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.slotQueue.push({ resolve, lease }));
  }

  freeSlot() {
    const next = this.slotQueue.shift();
    if (next) next.resolve(true);
    else this.executing--;
  }

  /** Give up the newest leases waiting for a slot beyond `keep`; the caller returns them. */
  handBack(keep) {
    const given = [];
    while (this.slotQueue.length > keep) {
      const { resolve, lease } = this.slotQueue.pop();
      resolve(false);
      given.push(lease);
    }
    return given;
  }

  /** An execute's duration (or one still running at LONG_AFTER_MS) for the prefetch. */
  noteDuration(seconds) {
    if (this.prefetcher.executed(seconds)) this.onPrefetch?.();
  }

  async run() {
    if (this.rt.options.poll) {
      await new ExchangeSession(this).run();
    } else {
      await new PushSession(this).run();
    }
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
  }

  /** `concurrency` acquire → execute → release loops until stop (or `until` aborts). */
  pollLoops(until) {
    const loops = Array.from({ length: this.concurrency }, () => this.pollLoop(until));
    return Promise.all(loops);
  }

  async pollLoop(until) {
    const body = { workerId: this.workerId, waitSeconds: this.rt.waitSeconds };
    if (this.worker.leaseSeconds) body.leaseSeconds = this.worker.leaseSeconds;
    let failures = 0;
    while (!this.rt.stopping && !until?.aborted) {
      if (this.inflight.size >= this.concurrency) {
        await this.slotFreed();
        continue;
      }
      let lease;
      try {
        lease = await this.rt.http.request("POST", `/api/v1/channel/${enc(this.channel)}/acquire`, body, {
          signal: this.rt.stopCtrl.signal,
          timeoutSeconds: this.rt.waitSeconds + 30,
        });
        failures = 0;
      } catch (err) {
        if (this.rt.stopping) break;
        this.rt.log("warn", `acquire ${this.channel} failed: ${err.message}`, { event: "worker.acquire_failed" });
        await sleep(backoffMs(failures++, { baseMs: 200 }), this.rt.stopCtrl.signal);
        continue;
      }
      if (lease?.task) await this.track(this.runTask(lease.task, lease.parents ?? [], null));
    }
  }

  /** Keep `promise` in the in-flight set until it settles. */
  track(running) {
    const promise = running.catch((err) => {
      this.rt.log("error", `${this.channel}: task runner failed: ${err?.stack ?? err}`, { event: "worker.task" });
    });
    this.inflight.add(promise);
    return promise.finally(() => {
      this.inflight.delete(promise);
      const waiters = this.waiters.splice(0);
      for (const wake of waiters) wake();
    });
  }

  /** Resolve when an in-flight task settles, or on stop. */
  slotFreed() {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      sleep(1000, this.rt.stopCtrl.signal).then(resolve);
    });
  }

  /**
   * Wait for a slot, execute one leased task with heartbeats (from receipt: a prefetched task
   * waiting for its slot keeps its lease too), release it, log one line.
   */
  async runTask(task, parents, socket, exchange = null) {
    const started = performance.now();
    const lease = { task, parents, socket, exchange, ctrl: new AbortController() };
    const stopBeat = this.heartbeat(lease);
    let fields;
    let result;
    let failure;
    if (!(await this.takeSlot(lease))) {
      stopBeat(); // handed back: another process runs it
      return "handed back";
    }
    const began = performance.now();
    const early = setTimeout(() => this.noteDuration((performance.now() - began) / 1000), LONG_AFTER_MS);
    try {
      fields = releaseFields(await this.execute(task, parents, lease));
      result = "ok";
    } catch (err) {
      ({ fields, result } = errorFields(err));
      failure = `${fields.error.type}: ${fields.error.message}`;
    } finally {
      clearTimeout(early);
      this.noteDuration((performance.now() - began) / 1000); // before the slot frees: a hand-back
      this.freeSlot(); // then sees every lease still waiting
      stopBeat();
    }
    const delivered = await this.release(lease, fields);
    const outcome = delivered === "released" ? result : `${result}/${delivered}`;
    const duration = Number(((performance.now() - started) / 1000).toFixed(3));
    const line = `${this.channel} ${task._id} ${outcome} in ${duration.toFixed(3)}s`;
    this.rt.log(outcome === "ok" ? "info" : "warn", failure ? `${line}: ${failure}` : line, {
      event: "worker.task",
      channel: this.channel,
      taskId: task._id,
      duration,
      outcome,
      via: socket ? "ws" : "rest",
      ...(failure ? { error: fields.error } : {}),
    });
    return outcome;
  }

  /** Run `execute`; at the shutdown deadline, give up on it (it is released as WorkerShutdown). */
  execute(task, parents, lease) {
    const hard = this.rt.hardCtrl.signal;
    const ctx = { task, workerId: this.workerId, signal: anySignal([lease.ctrl.signal, hard]) };
    const running = Promise.resolve().then(() => this.worker.execute(task.input, parents, ctx));
    return new Promise((resolve, reject) => {
      const onHard = () => reject(new WorkerShutdown());
      if (hard.aborted) return onHard();
      hard.addEventListener("abort", onHard, { once: true });
      running.then(resolve, reject).finally(() => hard.removeEventListener("abort", onHard));
    });
  }

  /** Seconds the lease lasts: the worker's setting, else what the server granted, else 60. */
  leaseLength(task) {
    const granted = (Date.parse(task.leaseExpiresAt) - Date.parse(task.assignedAt)) / 1000;
    return this.worker.leaseSeconds || (granted > 0 ? granted : 60);
  }

  /**
   * Extend the lease every lease/3 until the returned function is called. A refusal (4xx) ends
   * the heartbeat and aborts `ctx.signal`; network errors and 5xx retry sooner, with backoff.
   */
  heartbeat(lease) {
    const { task } = lease;
    const seconds = this.leaseLength(task);
    const periodMs = Math.max(50, (seconds * 1000) / 3);
    let timer;
    let stopped = false;
    let failures = 0;
    const beat = async () => {
      let nextMs = periodMs;
      try {
        await this.extend(lease, seconds);
        failures = 0;
      } catch (err) {
        if (err instanceof CrewError && !err.transient) {
          this.rt.log("warn", `heartbeat of ${task._id} refused: ${err.message}`, {
            event: "worker.heartbeat_failed",
            taskId: task._id,
          });
          lease.ctrl.abort(err);
          return;
        }
        this.rt.log("warn", `heartbeat of ${task._id} failed: ${err.message}`, {
          event: "worker.heartbeat_failed",
          taskId: task._id,
        });
        nextMs = backoffMs(failures++, { baseMs: 100, capMs: periodMs });
      }
      if (!stopped) timer = setTimeout(beat, nextMs);
    };
    timer = setTimeout(beat, periodMs);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  async extend(lease, seconds) {
    const { task, socket } = lease;
    const body = { workerId: this.workerId, leaseId: task.leaseId, leaseSeconds: seconds };
    if (socket?.isOpen()) {
      try {
        return await socket.call("extend", { taskId: task._id, ...body });
      } catch (err) {
        if (!(err instanceof CrewError) || err.status !== 0) throw err;
      }
    }
    return this.rt.http.request("POST", `/api/v1/task/${enc(task._id)}/extend`, body);
  }

  /**
   * Deliver the release until the server answers (a release is idempotent): `released`, `lost`
   * (409: the lease is gone), `rejected` (another 4xx) or `abandoned` (gave up at shutdown). A 400
   * on a success release (invalid children, say) is retried as an InvalidRelease error release.
   */
  async release(lease, fields) {
    const { task } = lease;
    let body = { workerId: this.workerId, leaseId: task.leaseId, ...fields };
    let failures = 0;
    let giveUpAt = Infinity;
    for (;;) {
      try {
        await this.releaseOnce(lease, body);
        return "released";
      } catch (err) {
        const verdict = this.verdict(task, err, body);
        if (verdict === "retry_as_error") {
          body = { workerId: body.workerId, leaseId: body.leaseId, error: invalidRelease(err) };
          continue;
        }
        if (verdict !== "retry") return verdict;
      }
      if (this.rt.stopping && giveUpAt === Infinity) giveUpAt = Date.now() + this.rt.shutdownMs;
      if (Date.now() > giveUpAt) return "abandoned";
      await sleep(backoffMs(failures++, { baseMs: 200 }));
    }
  }

  verdict(task, err, body) {
    const fields = { event: "worker.release_refused", taskId: task._id, status: err.status };
    if (!(err instanceof CrewError)) {
      // not sent at all: the output cannot be serialized as JSON (a cycle, a BigInt, ...)
      this.rt.log("error", `release of ${task._id} cannot be sent (${err.message}): releasing as an error`, fields);
      return body.error === undefined ? "retry_as_error" : "rejected";
    }
    if (err.transient) {
      this.rt.log("warn", `release of ${task._id} failed, retrying: ${err.message}`, {
        ...fields,
        event: "worker.release_retry",
      });
      return "retry";
    }
    if (err.status === 400 && body.error === undefined) {
      this.rt.log("error", `release of ${task._id} refused (${err.message}): releasing as an error`, fields);
      return "retry_as_error";
    }
    if (err.status === 409) {
      this.rt.log("warn", `lease of ${task._id} is gone: ${err.message}`, fields);
      return "lost";
    }
    this.rt.log("error", `release of ${task._id} refused: ${err.message}`, fields);
    return "rejected";
  }

  async releaseOnce(lease, body) {
    const { task, socket, exchange } = lease;
    if (exchange && !exchange.crewOnly) return exchange.release(task, body);
    if (socket?.isOpen()) {
      try {
        return await socket.call("release", { taskId: task._id, brief: true, ...body }); // brief: an ack without the task
      } catch (err) {
        if (!(err instanceof CrewError) || err.status !== 0) throw err;
        lease.socket = null; // the socket dropped: REST from now on
      }
    }
    return this.rt.http.request("POST", `/api/v1/task/${enc(task._id)}/release`, body);
  }
}

/** The error released for a task still running at the shutdown timeout (as in Python). */
class WorkerShutdown extends Error {
  constructor() {
    super("worker stopped before the task ended");
    this.name = "WorkerShutdown";
  }
}

function invalidRelease(err) {
  const error = { type: "InvalidRelease", message: err.message };
  if (err.field !== undefined) error.field = err.field;
  return error;
}

/** Release fields and outcome word (`error` / `rate_limited`) for what `execute` threw. */
function errorFields(err) {
  const fields = { error: { type: err?.name ?? "Error", message: String(err?.message ?? err) } };
  if (err instanceof RateLimited) {
    fields.workgroupDelayInSeconds = err.seconds;
    return { fields, result: "rate_limited" };
  }
  return { fields, result: err instanceof WorkerShutdown ? "cancelled" : "error" };
}
