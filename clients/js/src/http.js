/** JSON over fetch, with the bearer token; errors become CrewError. */

import { CrewError } from "./errors.js";
import { anySignal, resolveToken, resolveUrl } from "./util.js";

const TIMEOUT_SECONDS = 60; // no answer in this long counts as a network error (retried)

export class Http {
  /** @param {{url?: string, token?: string, fetch?: typeof fetch}} [options] */
  constructor({ url, token, fetch: fetchImpl } = {}) {
    this.url = resolveUrl(url);
    this.token = resolveToken(token);
    this.fetch = fetchImpl ?? globalThis.fetch;
  }

  /**
   * @param {string} method
   * @param {string} path starting with "/"
   * @param {unknown} [body]
   * @param {{signal?: AbortSignal, timeoutSeconds?: number}} [options]
   */
  async request(method, path, body, { signal, timeoutSeconds = TIMEOUT_SECONDS } = {}) {
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const payload = body === undefined ? undefined : JSON.stringify(body); // TypeError: not JSON
    let response;
    let text;
    try {
      const deadline = AbortSignal.timeout(timeoutSeconds * 1000);
      const abort = anySignal([signal, deadline]);
      response = await this.fetch(this.url + path, { method, headers, body: payload, signal: abort });
      text = await response.text();
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new CrewError(`${method} ${path}: ${err?.cause?.message ?? err?.message ?? err}`, {
        cause: err,
      });
    }
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (!response.ok) {
      const info = data && typeof data === "object" ? data : {};
      throw new CrewError(info.message ?? `${method} ${path}: HTTP ${response.status}`, {
        status: response.status,
        code: info.code ?? `http_${response.status}`,
        field: info.field,
        body: data,
      });
    }
    return data;
  }
}
