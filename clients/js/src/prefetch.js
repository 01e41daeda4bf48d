/**
 * Adaptive prefetch, as the Python SDK's (crew_aio/worker/prefetch.py): lease ahead only while
 * recent executes are short. As many tasks as the slots get through in WAIT_S seconds, at most
 * MAX; none once executes take 20 ms. A number set on the worker pins it.
 */

export const WAIT_S = 0.02;
export const MAX = 128; // as the Python SDK's: W1 gives up ~12 %, a DAG join waits ~5x less
export const ALPHA = 0.2; // weight of the newest execute in the running mean
export const LONG_AFTER_MS = 20; // an execute still running this long counts early

export class Prefetch {
  constructor(concurrency, fixed) {
    this.concurrency = concurrency;
    this.fixed = fixed == null ? null : Math.max(0, Math.floor(fixed));
    this.value = this.fixed ?? 0;
    this.mean = null; // running mean of execute seconds
  }

  get capacity() {
    return this.concurrency + this.value;
  }

  /** Note one execute's duration; true when `value` changed enough to tell the server. */
  executed(seconds) {
    if (this.fixed !== null) return false;
    this.mean = this.mean === null ? seconds : this.mean + ALPHA * (seconds - this.mean);
    const target = this.mean <= 0 ? MAX : Math.min(MAX, Math.floor((WAIT_S * this.concurrency) / this.mean));
    const now = this.value;
    if (target === now) return false;
    if ((now === 0) !== (target === 0) || target >= 2 * now || 2 * target <= now) {
      this.value = target;
      return true;
    }
    return false;
  }
}
