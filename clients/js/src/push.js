/**
 * WebSocket push for one channel: subscribe with a capacity, run pushed tasks, release and extend
 * over the socket. While the socket is down: reconnect with backoff + jitter and long-poll
 * meanwhile. Leases taken over a socket that drops are released over REST.
 */

import WebSocket from "ws";
import { CrewError } from "./errors.js";
import { backoffMs, deferred, sleep } from "./util.js";

const OPEN_TIMEOUT_MS = 10_000;
const CALL_TIMEOUT_MS = 15_000;
const NO_WEBSOCKET = new Set([404, 405, 501]); // e.g. Crew itself: long-poll for good
const PING_EVERY_MS = 20_000; // a socket silent for two pings is dead (server vanished, no FIN)
const BATCH_FRAMES = 500; // frames per batched message (the server takes up to 1,000)
const BATCH_BYTES = 256 * 1024; // bytes per batched message (a bigger frame goes alone)

export class PushSession {
  /** @param {import("./runner.js").ChannelRunner} runner */
  constructor(runner) {
    this.runner = runner;
    this.rt = runner.rt;
    this.polling = null; // {ctrl, done} while long-polling
  }

  async run() {
    const { rt, runner } = this;
    let failures = 0;
    while (!rt.stopping) {
      let socket;
      try {
        socket = await Socket.open(this.socketOptions());
      } catch (err) {
        this.startPolling();
        if (NO_WEBSOCKET.has(err.status)) {
          rt.log("warn", `no WebSocket at ${rt.http.url} (${err.status}): long-poll only`, { event: "worker.ws_unsupported" });
          await this.polling?.done;
          break;
        }
        const wait = backoffMs(failures++, { baseMs: 500, capMs: 30_000 });
        if (failures === 1 || failures % 10 === 0) {
          rt.log("warn", `ws ${runner.channel} unavailable (${err.message}): long-polling, retry in ${(wait / 1000).toFixed(1)}s`, {
            event: "worker.ws_down",
          });
        }
        await sleep(wait, rt.stopCtrl.signal);
        continue;
      }
      failures = 0;
      rt.log("info", `ws ${runner.channel} subscribed`, { event: "worker.ws_up" });
      runner.onPrefetch = () => this.prefetchChanged(socket);
      await this.stopPolling();
      const onStop = () => this.drain(socket);
      if (rt.stopping) onStop(); // stopped while connecting
      else rt.stopCtrl.signal.addEventListener("abort", onStop, { once: true });
      await socket.closed;
      runner.onPrefetch = null; // the next subscribe carries the capacity
      rt.stopCtrl.signal.removeEventListener("abort", onStop);
      if (!rt.stopping) rt.log("warn", `ws ${runner.channel} closed: reconnecting`, { event: "worker.ws_down" });
    }
    await this.stopPolling();
  }

  /**
   * Graceful stop: unsubscribe (pushes stop once the server answers), run every task pushed
   * before the answer, release them over the socket, close.
   */
  async drain(socket) {
    const { runner } = this;
    try {
      await socket.call("unsubscribe", {});
    } catch (err) {
      this.rt.log("warn", `ws ${runner.channel} drain: ${err.message}`, { event: "worker.ws_failed" });
    }
    while (runner.inflight.size) await Promise.allSettled([...runner.inflight]);
    socket.close();
  }

  /**
   * Adaptive prefetch moved: tell the server the new capacity, and when it shrank below the
   * leases waiting here for a slot, give the newest back (ready again for any process, no
   * attempt counted). A return the server does not confirm runs here after all: an expired
   * lease would cost the task an attempt.
   */
  prefetchChanged(socket) {
    const { runner } = this;
    if (!socket.isOpen()) return;
    socket.call("capacity", { capacity: runner.concurrency + runner.prefetch }).catch(() => {});
    for (const lease of runner.handBack(runner.prefetch)) {
      const { task, parents } = lease;
      const back = { taskId: task._id, workerId: runner.workerId };
      if (task.leaseId) back.leaseId = task.leaseId;
      socket.call("return", back).catch(() => runner.track(runner.runTask(task, parents, null)));
    }
  }

  socketOptions() {
    const { rt, runner } = this;
    const subscribe = {
      type: "subscribe",
      workerId: runner.workerId,
      channels: [runner.channel],
      capacity: runner.concurrency + runner.prefetch,
    };
    if (runner.worker.leaseSeconds) subscribe.leaseSeconds = runner.worker.leaseSeconds;
    return {
      url: `${rt.http.url.replace(/^http/, "ws")}/api/v1/ws`,
      token: rt.http.token,
      WebSocketImpl: WebSocket,
      subscribe,
      onTask: (task, parents, socket) => runner.track(runner.runTask(task, parents, socket)),
      log: rt.log,
    };
  }

  startPolling() {
    if (this.polling || this.rt.stopping) return;
    const ctrl = new AbortController();
    this.polling = { ctrl, done: this.runner.pollLoops(ctrl.signal) };
  }

  /** Let the long-poll loops finish their current acquire (never aborted: it may hold a lease). */
  async stopPolling() {
    const polling = this.polling;
    this.polling = null;
    if (!polling) return;
    polling.ctrl.abort();
    if (this.rt.stopping) await polling.done;
    else polling.done.catch(() => {});
  }
}

/** One subscribed socket: request/answer by `ref`, pushed tasks to `onTask`. */
export class Socket {
  /** Connect and subscribe; resolve once the server answers `subscribed`. */
  static open(options) {
    return new Socket(options).ready;
  }

  constructor({ url, token, WebSocketImpl, subscribe, onTask, log }) {
    this.onTask = onTask;
    this.log = log;
    this.pending = new Map();
    this.nextRef = 0;
    this.outgoing = []; // [text, onSendError] sent together at the end of this turn
    this.subscribed = false;
    this.settled = false;
    this.heard = true;
    this.opened = deferred();
    this.ready = this.opened.promise;
    const closed = deferred();
    this.closed = closed.promise;
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    this.ws = new WebSocketImpl(url, { headers, handshakeTimeout: OPEN_TIMEOUT_MS });
    this.openTimer = setTimeout(() => this.fail(new CrewError("ws subscribe timed out")), OPEN_TIMEOUT_MS);
    this.pinger = setInterval(() => this.ping(), PING_EVERY_MS);
    this.pinger.unref?.();
    this.attach(subscribe, closed.resolve);
  }

  attach(subscribe, onClosed) {
    const { ws } = this;
    const alive = () => (this.heard = true);
    ws.on("pong", alive);
    ws.on("ping", alive);
    ws.on("open", () => ws.send(JSON.stringify(subscribe)));
    ws.on("message", (data) => {
      alive();
      this.onMessage(String(data));
    });
    ws.on("error", (err) => this.fail(new CrewError(`ws: ${err.message}`, { cause: err })));
    ws.on("unexpected-response", (_req, res) => {
      const status = res.statusCode;
      this.fail(new CrewError(`ws: HTTP ${status}`, { status, code: `http_${status}` }));
    });
    ws.on("close", () => {
      clearInterval(this.pinger);
      this.subscribed = false;
      this.fail(new CrewError("ws closed before subscribe"));
      for (const { reject } of this.pending.values()) reject(new CrewError("ws closed"));
      this.pending.clear();
      onClosed();
    });
  }

  /** Subscribing failed: reject `ready` (once) and drop the connection. No-op once subscribed. */
  fail(err) {
    clearTimeout(this.openTimer);
    if (this.settled) return;
    this.settled = true;
    this.opened.resolve(Promise.reject(err));
    this.ws.terminate();
  }

  /** A socket silent for a whole ping interval is dead (the server vanished without a FIN). */
  ping() {
    if (!this.heard) return this.ws.terminate();
    this.heard = false;
    this.ws.ping();
  }

  onMessage(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (this.settled) return this.onFrame(frame);
    if (frame.type === "subscribed") {
      this.subscribed = this.settled = true;
      clearTimeout(this.openTimer);
      this.opened.resolve(this);
    } else if (frame.type === "error") {
      this.fail(new CrewError(frame.message ?? "subscribe refused", frame));
    }
  }

  onFrame(frame) {
    if (frame.type === "task" && frame.task) {
      this.onTask(frame.task, frame.parents ?? [], this);
      return;
    }
    const waiter = frame.ref == null ? undefined : this.pending.get(String(frame.ref));
    if (!waiter) {
      if (frame.type === "error") this.log("warn", `ws error frame: ${frame.message}`, { event: "worker.ws_failed" });
      return;
    }
    this.pending.delete(String(frame.ref));
    if (["ack", "subscribed", "unsubscribed"].includes(frame.type)) return waiter.resolve(frame.task ?? frame);
    const info = { status: frame.status ?? 500, code: frame.code, field: frame.field, body: frame };
    waiter.reject(new CrewError(frame.message ?? "ws error", info));
  }

  isOpen() {
    return this.subscribed && this.ws.readyState === 1;
  }

  /** Send `{type, ref, ...fields}` and wait for its ack (CrewError on error frame; status 0 = no answer). */
  call(type, fields) {
    if (!this.isOpen()) return Promise.reject(new CrewError("ws not open"));
    const ref = `r${++this.nextRef}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new CrewError(`ws ${type} not answered in ${CALL_TIMEOUT_MS / 1000}s`));
      }, CALL_TIMEOUT_MS);
      const done = (fn) => (value) => {
        clearTimeout(timer);
        fn(value);
      };
      const text = JSON.stringify({ type, ref, ...fields }); // throws here on a non-JSON output
      this.pending.set(ref, { resolve: done(resolve), reject: done(reject) });
      this.send(text, (err) => {
        if (this.pending.delete(ref)) done(reject)(new CrewError(`ws send: ${err.message}`));
      });
    });
  }

  /**
   * Queue a frame; the frames of one turn of the event loop leave as one message: alone, or
   * as a JSON array (a batch, answered frame by frame), so many short tasks finishing together
   * cost one write and one wake-up of the server.
   */
  send(text, onError) {
    if (!this.outgoing.length) setImmediate(() => this.flush());
    this.outgoing.push([text, onError]);
  }

  flush() {
    const queued = this.outgoing;
    this.outgoing = [];
    let batch = [];
    let size = 0;
    const sendBatch = () => {
      const texts = batch.map(([text]) => text);
      const errors = batch.map(([, onError]) => onError);
      const payload = texts.length === 1 ? texts[0] : `[${texts.join(",")}]`;
      this.ws.send(payload, (err) => {
        if (err) for (const onError of errors) onError(err);
      });
      batch = [];
      size = 0;
    };
    for (const item of queued) {
      if (batch.length && (batch.length === BATCH_FRAMES || size + item[0].length > BATCH_BYTES)) sendBatch();
      batch.push(item);
      size += item[0].length + 1;
    }
    if (batch.length) sendBatch();
  }

  close() {
    this.ws.close(1000);
  }
}
