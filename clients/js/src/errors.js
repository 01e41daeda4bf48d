/** Errors the SDK raises or understands. */

/** An HTTP or WebSocket error answer from the server (`status` 0 = no answer: network). */
export class CrewError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, code?: string, field?: string, body?: unknown, cause?: unknown}} [info]
   */
  constructor(message, { status = 0, code = "network", field, body, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "CrewError";
    this.status = status;
    this.code = code;
    if (field !== undefined) this.field = field;
    if (body !== undefined) this.body = body;
  }

  /** Worth retrying: no answer, a 5xx, or 429. */
  get transient() {
    return this.status === 0 || this.status >= 500 || this.status === 429;
  }
}

/**
 * Throw from `execute` when the remote API rate-limits you: the task is released with an error
 * and every task of its workgroup waits `seconds` (`workgroupDelayInSeconds`).
 */
export class RateLimited extends Error {
  /** @param {number} seconds @param {string} [message] */
  constructor(seconds, message) {
    super(message ?? `rate limited for ${seconds}s`);
    this.name = "RateLimited";
    this.seconds = Number(seconds) || 0;
  }
}
