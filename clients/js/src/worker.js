/** What a user subclasses: Worker (channel, concurrency, execute) and its Result. */

/** The outcome of a task: its output and, optionally, continuation tasks (TaskChild list). */
export class Result {
  /**
   * @param {{output?: unknown, children?: object[], childrenDelayInSeconds?: number,
   *   workgroupDelayInSeconds?: number}} [fields]
   */
  constructor({ output = null, children, childrenDelayInSeconds, workgroupDelayInSeconds } = {}) {
    this.output = output;
    this.children = children;
    this.childrenDelayInSeconds = childrenDelayInSeconds;
    this.workgroupDelayInSeconds = workgroupDelayInSeconds;
  }
}

/**
 * Subclass and set `channel` (required), `concurrency` (tasks in flight, default 1) and
 * optionally `leaseSeconds` (default: the server's) and `prefetch` (tasks leased ahead over the
 * WebSocket, waiting for a free slot with their leases kept by heartbeats; default 0: raise it
 * for many short tasks); implement `async execute(input, parents, ctx)`.
 *
 * `execute` returns a Result, or any other value as the output with no children. Throwing
 * RateLimited releases with an error and delays the workgroup; any other throw releases with
 * `{type: err.name, message: err.message}` (one attempt spent). `ctx` carries `task` and a
 * `signal` that aborts when the lease is lost or the shutdown timeout expires.
 */
export class Worker {
  channel = "";
  concurrency = 1;
  leaseSeconds = undefined;
  prefetch = null; // null: adaptive (see prefetch.js); a number pins it

  // eslint-disable-next-line no-unused-vars
  async execute(input, parents, ctx) {
    throw new Error(`${this.constructor.name}.execute is not implemented`);
  }
}

/** The release fields for what `execute` returned. */
export function releaseFields(value) {
  if (!(value instanceof Result)) return { output: value === undefined ? null : value };
  const fields = { output: value.output === undefined ? null : value.output };
  if (value.children?.length) fields.children = value.children;
  if (value.childrenDelayInSeconds) fields.childrenDelayInSeconds = value.childrenDelayInSeconds;
  if (value.workgroupDelayInSeconds) fields.workgroupDelayInSeconds = value.workgroupDelayInSeconds;
  return fields;
}
