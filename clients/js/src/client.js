/** Submitting and watching work: task groups, tasks, DAGs. */

import { Http } from "./http.js";
import { CrewError } from "./errors.js";
import { sleep } from "./util.js";

const enc = encodeURIComponent;
const ACTIVE = ["ready", "delayed", "leased", "paused"];

export class Client {
  /**
   * @param {{url?: string, token?: string, fetch?: typeof fetch}} [options]
   *   url: server base URL (default CREW_URL, CREW_API_BASE_URL, http://127.0.0.1:3000);
   *   token: bearer token (default CREW_TOKEN).
   */
  constructor(options = {}) {
    this.http = options.http ?? new Http(options);
  }

  get url() {
    return this.http.url;
  }

  request(method, path, body, options) {
    return this.http.request(method, `/api/v1${path}`, body, options);
  }

  /** @param {string} name @param {{isPaused?: boolean}} [options] */
  createGroup(name, { isPaused = false } = {}) {
    return this.request("POST", "/task_groups", { name, isPaused });
  }

  getGroup(groupId) {
    return this.request("GET", `/task_group/${enc(groupId)}`);
  }

  listGroups({ limit = 50, skip = 0 } = {}) {
    return this.request("GET", `/task_groups?limit=${limit}&skip=${skip}`);
  }

  deleteGroup(groupId) {
    return this.request("DELETE", `/task_group/${enc(groupId)}`);
  }

  /** Tasks of a group (all of them unless limit is given). */
  getGroupTasks(groupId, { limit, skip } = {}) {
    const query = new URLSearchParams();
    if (limit !== undefined) query.set("limit", String(limit));
    if (skip !== undefined) query.set("skip", String(skip));
    const qs = query.size ? `?${query}` : "";
    return this.request("GET", `/task_group/${enc(groupId)}/tasks${qs}`);
  }

  /**
   * One task (an object: returns the Task) or a whole DAG in one atomic call (an array of
   * TaskChild with `_child_id` / `_parent_ids` pseudo-ids: returns the Tasks in order).
   */
  addTasks(groupId, tasks) {
    return this.request("POST", `/task_group/${enc(groupId)}/tasks`, tasks);
  }

  getTask(taskId) {
    return this.request("GET", `/task/${enc(taskId)}`);
  }

  updateTask(taskId, fields) {
    return this.request("PUT", `/task/${enc(taskId)}`, fields);
  }

  deleteTask(taskId) {
    return this.request("DELETE", `/task/${enc(taskId)}`);
  }

  pause(groupId) {
    return this.request("POST", `/task_group/${enc(groupId)}/pause`, {});
  }

  resume(groupId) {
    return this.request("POST", `/task_group/${enc(groupId)}/resume`, {});
  }

  /** Failed tasks of the group get `remainingAttempts` attempts again. */
  retry(groupId, { remainingAttempts = 2 } = {}) {
    return this.request("POST", `/task_group/${enc(groupId)}/retry`, { remainingAttempts });
  }

  reset(groupId) {
    return this.request("POST", `/task_group/${enc(groupId)}/reset`, {});
  }

  retryTask(taskId, { remainingAttempts = 2 } = {}) {
    return this.request("POST", `/task/${enc(taskId)}/retry`, { remainingAttempts });
  }

  resetTask(taskId) {
    return this.request("POST", `/task/${enc(taskId)}/reset`, {});
  }

  channels() {
    return this.request("GET", "/channels");
  }

  /**
   * Resolve with the group once nothing in it can run any more (from its `counts`): every task
   * completed or failed, or waiting behind a failed ancestor. Paused tasks keep it waiting.
   * @param {string} groupId
   * @param {{interval?: number, timeout?: number, signal?: AbortSignal}} [options] seconds
   */
  async wait(groupId, { interval = 0.25, timeout, signal } = {}) {
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout * 1000;
    for (;;) {
      const group = await this.getGroup(groupId);
      if (isGroupDone(group.counts ?? {})) return group;
      if (signal?.aborted) throw signal.reason ?? new Error("aborted");
      if (Date.now() >= deadline) {
        throw new CrewError(`group ${groupId} still running after ${timeout}s`, {
          status: 0,
          code: "timeout",
          body: group,
        });
      }
      await sleep(Math.min(interval * 1000, Math.max(0, deadline - Date.now())), signal);
    }
  }
}

/**
 * Nothing in the group can run any more: every task completed or failed, or waiting behind a
 * failed (or cancelled) ancestor. Paused tasks count as not done: a resume runs them.
 */
export function isGroupDone(counts) {
  if (ACTIVE.some((status) => counts[status])) return false;
  return !counts.waiting || (counts.failed ?? 0) + (counts.cancelled ?? 0) > 0;
}
