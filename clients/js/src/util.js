/** Small helpers: configuration from the environment, backoff, abortable sleep. */

import { hostname } from "node:os";
import { randomBytes } from "node:crypto";

/** Base URL: option, else CREW_URL, else Crew's CREW_API_BASE_URL; a trailing /api/v1 is dropped. */
export function resolveUrl(url, env = process.env) {
  const raw = url || env.CREW_URL || env.CREW_API_BASE_URL || "http://127.0.0.1:3000";
  return raw.replace(/\/+$/, "").replace(/\/api\/v1$/, "");
}

/** Bearer token: option, else CREW_TOKEN. */
export function resolveToken(token, env = process.env) {
  return token ?? (env.CREW_TOKEN || undefined);
}

/** Full-jitter exponential backoff in milliseconds. */
export function backoffMs(attempt, { baseMs = 100, capMs = 10_000 } = {}) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.max(10, Math.random() * ceiling);
}

/** Sleep `ms`, waking early (without throwing) when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** A worker id unique to this process: host-pid-random. */
export function defaultWorkerId() {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
}

/** A promise with its resolve function exposed. */
export function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

/** An AbortSignal that aborts when any of `signals` does (AbortSignal.any, Node >= 20.3). */
export function anySignal(signals) {
  const present = signals.filter(Boolean);
  if (typeof AbortSignal.any === "function") return AbortSignal.any(present);
  const ctrl = new AbortController();
  for (const signal of present) {
    if (signal.aborted) return AbortSignal.abort(signal.reason);
    signal.addEventListener("abort", () => ctrl.abort(signal.reason), { once: true });
  }
  return ctrl.signal;
}
